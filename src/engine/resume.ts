import type { JournalEntry, StepShape } from '../store/journal.js';
import type { Step } from '../workflow/types.js';
import type { SourceFingerprint } from './sources.js';
import type { StepStatus } from './types.js';

/**
 * What a journal says already happened in a run: completed steps keyed by `stepKey`, and for
 * file loops the row below which every row finished (`progress`, keyed by the loop's stepKey)
 * and the file they read (`sources`, same keys).
 */
export type ResumeState = Map<string, { status: StepStatus; output: unknown; ms: number }> & {
  progress?: Map<string, number>;
  sources?: Map<string, SourceFingerprint>;
};

/** A step's identity in one run: its id and loop position. */
export function stepKey(id: string, item: readonly number[]): string {
  return `${id}@${item.join('.')}`;
}

/**
 * The completed steps of a journal, ready for `RunOptions.resume`. Entries under a file
 * loop's progress mark are left out: those rows are skipped whole, so a resumed million-row
 * loop does not hold a million entries.
 */
export function resumeStateFrom(entries: readonly JournalEntry[]): ResumeState {
  const progress = new Map<string, number>();
  const sources = new Map<string, SourceFingerprint>();
  const loopsOf = new Map<string, string[]>();
  for (const e of entries) {
    if (e.t === 'progress') progress.set(stepKey(e.id, e.item), Math.max(progress.get(stepKey(e.id, e.item)) ?? 0, e.done));
    // The first attempt's file is the one the progress marks count rows of.
    if (e.t === 'source' && !sources.has(stepKey(e.id, e.item))) sources.set(stepKey(e.id, e.item), { path: e.path, size: e.size, mtimeMs: e.mtimeMs, hash: e.hash });
    if (e.t === 'run') {
      const walk = (shape: StepShape[], loops: string[]): void => {
        for (const s of shape) {
          loopsOf.set(s.id, loops);
          if (s.steps) walk(s.steps, [...loops, s.id]);
        }
      };
      walk(e.shape, []);
    }
  }
  const below = (id: string, item: readonly number[]): boolean =>
    (loopsOf.get(id) ?? []).some((loop, depth) => (progress.get(stepKey(loop, item.slice(0, depth))) ?? 0) > (item[depth] ?? Infinity));
  const state: ResumeState = new Map();
  state.progress = progress;
  state.sources = sources;
  for (const e of entries) {
    if (e.t !== 'step') continue;
    const key = stepKey(e.id, e.item);
    if (e.status === 'failed') state.delete(key);
    else if (progress.size === 0 || !below(e.id, e.item)) state.set(key, { status: e.status, output: e.output ?? null, ms: e.ms });
  }
  return state;
}

/** The nesting of step ids, kept in the journal to check a changed workflow on retry. */
export function shapeOf(steps: readonly Step[]): StepShape[] {
  return steps.map((s) => (s.kind === 'loop' ? { id: s.id, steps: shapeOf(s.steps) } : { id: s.id }));
}
