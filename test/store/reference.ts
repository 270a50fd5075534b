// The journal readers as they were before journals were streamed (whole file in memory, one
// record per (step, item)): the oracle that the streaming reader and its folds must equal.
import { readFile } from 'node:fs/promises';
import type { InnerStepSummary, StepSummary } from '../../src/types.js';
import { isJournalEntry, type JournalEntry, type StepShape } from '../../src/store/journal.js';

export async function wholeFileRead(file: string): Promise<{ entries: JournalEntry[]; skipped: number }> {
  const text = await readFile(file, 'utf8');
  const entries: JournalEntry[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      skipped++;
      continue;
    }
    if (isJournalEntry(value)) entries.push(value);
    else skipped++;
  }
  return { entries, skipped };
}

const emptyCalls = () => ({ calls: 0, attempts: 0, failures: {} as Record<string, number>, waitedMs: 0 });

/** The `steps` of the old `summarize`. */
export function summaryStepsOf(entries: JournalEntry[]): Record<string, StepSummary> {
  const start = entries.find((e): e is Extract<JournalEntry, { t: 'run' }> => e.t === 'run')!;
  const top = new Set(start.shape.map((s) => s.id));
  const steps: Record<string, StepSummary> = {};
  const inner = new Map<string, Map<string, InnerStepSummary>>();
  const parentOf = new Map<string, string>();
  const walk = (shape: StepShape[], parent: string | undefined): void => {
    for (const s of shape) {
      if (parent) parentOf.set(s.id, parent);
      if (s.steps) walk(s.steps, s.id);
    }
  };
  walk(start.shape, undefined);
  const latest = new Map<string, Extract<JournalEntry, { t: 'step' }>>();
  for (const e of entries) if (e.t === 'step') latest.set(`${e.id}@${e.item.join('.')}`, e);
  for (const e of latest.values()) {
    if (e.item.length === 0 && top.has(e.id)) {
      steps[e.id] = { status: e.status, output: e.output ?? null, durationMs: e.ms, ...(e.calls ? { calls: e.calls } : {}), ...(e.error ? { error: e.error.message } : {}) };
      continue;
    }
    let loop = parentOf.get(e.id);
    while (loop && parentOf.has(loop) && !top.has(loop)) loop = parentOf.get(loop);
    if (!loop) continue;
    const perLoop = inner.get(loop) ?? new Map<string, InnerStepSummary>();
    inner.set(loop, perLoop);
    const agg = perLoop.get(e.id) ?? { succeeded: 0, failed: 0, skipped: 0, calls: emptyCalls() };
    perLoop.set(e.id, agg);
    agg[e.status]++;
    if (e.calls) {
      agg.calls.calls += e.calls.calls;
      agg.calls.attempts += e.calls.attempts;
      agg.calls.waitedMs += e.calls.waitedMs;
      for (const [k, v] of Object.entries(e.calls.failures)) agg.calls.failures[k] = (agg.calls.failures[k] ?? 0) + v;
    }
  }
  for (const [loop, perLoop] of inner) {
    const s = steps[loop];
    if (s) s.steps = Object.fromEntries(perLoop);
  }
  return steps;
}

/** The old `resumeStateFrom`, as plain data. */
export function resumeOf(entries: JournalEntry[]): { state: Record<string, unknown>; progress: Record<string, number>; sources: Record<string, unknown> } {
  const key = (id: string, item: readonly number[]) => `${id}@${item.join('.')}`;
  const progress = new Map<string, number>();
  const sources = new Map<string, unknown>();
  const loopsOf = new Map<string, string[]>();
  for (const e of entries) {
    if (e.t === 'progress') progress.set(key(e.id, e.item), Math.max(progress.get(key(e.id, e.item)) ?? 0, e.done));
    if (e.t === 'source' && !sources.has(key(e.id, e.item))) sources.set(key(e.id, e.item), { path: e.path, size: e.size, mtimeMs: e.mtimeMs, hash: e.hash });
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
    (loopsOf.get(id) ?? []).some((loop, depth) => (progress.get(key(loop, item.slice(0, depth))) ?? 0) > (item[depth] ?? Infinity));
  const state = new Map<string, unknown>();
  for (const e of entries) {
    if (e.t !== 'step') continue;
    if (e.status === 'failed') state.delete(key(e.id, e.item));
    else if (progress.size === 0 || !below(e.id, e.item)) state.set(key(e.id, e.item), { status: e.status, output: e.output ?? null, ms: e.ms });
  }
  return { state: Object.fromEntries(state), progress: Object.fromEntries(progress), sources: Object.fromEntries(sources) };
}

/** The old `incompatibilities`. */
export function incompatibilitiesOf(entries: JournalEntry[], now: StepShape[]): string[] {
  const start = entries.find((e): e is Extract<JournalEntry, { t: 'run' }> => e.t === 'run')!;
  const place = (shape: StepShape[], parents: string[], into: Map<string, string>): Map<string, string> => {
    for (const s of shape) {
      into.set(s.id, parents.join('/'));
      if (s.steps) place(s.steps, [...parents, s.id], into);
    }
    return into;
  };
  const before = place(start.shape, [], new Map());
  const after = place(now, [], new Map());
  const problems = new Set<string>();
  for (const e of entries) {
    if (e.t !== 'step' || e.status === 'failed') continue;
    const was = before.get(e.id);
    const is = after.get(e.id);
    if (is === undefined) problems.add(`step \`${e.id}\` completed in this run but is no longer in the workflow`);
    else if (was !== undefined && was !== is) problems.add(`step \`${e.id}\` moved from ${was ? `loop \`${was}\`` : 'the top level'} to ${is ? `loop \`${is}\`` : 'the top level'}`);
  }
  return [...problems];
}
