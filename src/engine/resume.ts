import { loopsOf, type ItemEntry, type JournalEntry, type StepShape } from '../store/journal.js';
import type { Step } from '../workflow/types.js';
import type { SourceFingerprint } from './sources.js';
import type { StepStatus } from '../types.js';

/**
 * What a journal says already happened in a run: completed steps keyed by `stepKey`, and for
 * file loops the row below which every row finished (`progress`, keyed by the loop's stepKey)
 * and the file they read (`sources`, same keys), and the loop items set aside by
 * `on_error: continue` that are failed now (`failed`, keyed by the loop's id and the item's
 * position: `stepKey(loop, [...outer, index])`).
 */
export type ResumeState = Map<string, { status: StepStatus; output: unknown; ms: number }> & {
  progress?: Map<string, number>;
  sources?: Map<string, SourceFingerprint>;
  failed?: Map<string, ItemEntry>;
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
export function resumeStateFrom(entries: Iterable<JournalEntry>): ResumeState {
  const fold = new ResumeFold();
  for (const e of entries) fold.add(e);
  return fold.result();
}

/**
 * `resumeStateFrom` one entry at a time, for a journal read as a stream. Completed entries
 * wait in the state until a progress mark passes them; whenever the state has doubled since
 * the last look, the ones under the marks are dropped, so a file loop's state stays near the
 * rows in flight instead of growing with the journal. (Marks only rise, so an entry under a
 * mark now is under the final one too.)
 */
export class ResumeFold {
  readonly #progress = new Map<string, number>();
  readonly #sources = new Map<string, SourceFingerprint>();
  readonly #loopsOf = new Map<string, string[]>();
  readonly #state: ResumeState = new Map();
  /** Items set aside and not passed since: few, kept whole (failed.jsonl is written from them). */
  readonly #failed = new Map<string, ItemEntry>();
  #pruneAt = 10_000;

  add(e: JournalEntry): void {
    switch (e.t) {
      case 'step': {
        const key = stepKey(e.id, e.item);
        if (e.status === 'failed') this.#state.delete(key);
        else {
          this.#state.set(key, { status: e.status, output: e.output ?? null, ms: e.ms });
          if (this.#state.size >= this.#pruneAt) this.#prune();
        }
        break;
      }
      case 'progress': {
        const key = stepKey(e.id, e.item);
        this.#progress.set(key, Math.max(this.#progress.get(key) ?? 0, e.done));
        break;
      }
      case 'source': {
        // The first attempt's file is the one the progress marks count rows of.
        const key = stepKey(e.id, e.item);
        if (!this.#sources.has(key)) this.#sources.set(key, { path: e.path, size: e.size, mtimeMs: e.mtimeMs, hash: e.hash });
        break;
      }
      case 'item': {
        const key = stepKey(e.id, e.item);
        if (e.status === 'failed') this.#failed.set(key, e);
        else this.#failed.delete(key);
        break;
      }
      case 'run':
        loopsOf(e.shape, [], this.#loopsOf);
        break;
      default:
    }
  }

  result(): ResumeState {
    this.#prune();
    const state = this.#state;
    state.progress = this.#progress;
    state.sources = this.#sources;
    state.failed = this.#failed;
    return state;
  }

  #prune(): void {
    if (this.#progress.size > 0) {
      for (const key of this.#state.keys()) {
        const at = key.lastIndexOf('@');
        const tail = key.slice(at + 1);
        if (this.#below(key.slice(0, at), tail === '' ? [] : tail.split('.').map(Number))) this.#state.delete(key);
      }
    }
    this.#pruneAt = Math.max(10_000, this.#state.size * 2);
  }

  #below(id: string, item: readonly number[]): boolean {
    // A set-aside item is under the mark but runs again on `ferry retry`: its completed steps stay.
    return (this.#loopsOf.get(id) ?? []).some((loop, depth) => (this.#progress.get(stepKey(loop, item.slice(0, depth))) ?? 0) > (item[depth] ?? Infinity) && !this.#failed.has(stepKey(loop, item.slice(0, depth + 1))));
  }
}

/** The nesting of step ids, kept in the journal to check a changed workflow on retry. */
export function shapeOf(steps: readonly Step[]): StepShape[] {
  return steps.map((s) => (s.kind === 'loop' ? { id: s.id, steps: shapeOf(s.steps) } : { id: s.id }));
}
