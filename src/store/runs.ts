import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { InnerStepSummary, RunErrorInfo, RunSummary, StepSummary } from '../engine/types.js';
import { readJournal, type JournalEntry, type StepShape } from './journal.js';
import { isLikelyFerry, lockHolder, type LockHolder } from './lock.js';
import { isRunId, JOURNAL_FILE, runDir, runsDir } from './paths.js';

export type RunState = 'succeeded' | 'failed' | 'interrupted' | 'running';

/** One line of `ferry runs`. */
export interface RunListing {
  runId: string;
  workflow: string;
  /** `corrupt`: the journal cannot be read as a run; `problem` says why. */
  status: RunState | 'corrupt';
  startedAt: string;
  durationMs: number | null;
  failedStep: string | null;
  file: string;
  /** What is wrong with the journal (lines that could not be read, or why it is corrupt). */
  problem?: string;
}

export interface LoadedRun {
  runId: string;
  entries: JournalEntry[];
  start: Extract<JournalEntry, { t: 'run' }>;
  end: Extract<JournalEntry, { t: 'end' }> | undefined;
  /** Lines that did not parse (a torn last line after a kill). */
  skipped: number;
  /** Who holds the run's lock now: a live holder, none, or a stale lock left by a dead process. */
  lock: LockHolder | 'none' | 'stale';
}

/** A run folder whose journal cannot be read as a run. */
export interface CorruptRun {
  runId: string;
  corrupt: string;
}

export async function loadRun(stateDir: string, runId: string): Promise<LoadedRun | undefined> {
  const run = await readRun(stateDir, runId);
  return run && 'corrupt' in run ? undefined : run;
}

/**
 * Reads one run; `undefined` when there is no such run folder. A journal that is missing,
 * empty, unreadable or has no `run` entry gives a CorruptRun naming the problem.
 */
export async function readRun(stateDir: string, runId: string): Promise<LoadedRun | CorruptRun | undefined> {
  if (!isRunId(runId)) return undefined;
  const dir = runDir(stateDir, runId);
  let journal: { entries: JournalEntry[]; skipped: number };
  try {
    journal = await readJournal(path.join(dir, JOURNAL_FILE));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      const exists = await stat(dir).then((s) => s.isDirectory(), () => false);
      // A live lock and no journal yet: the run is being created this moment.
      if (!exists || typeof lockHolder(stateDir, runId) === 'object') return undefined;
      return { runId, corrupt: `${JOURNAL_FILE} is missing` };
    }
    return { runId, corrupt: `${JOURNAL_FILE} cannot be read (${code ?? errorMessage(error)})` };
  }
  const start = journal.entries.find((e): e is Extract<JournalEntry, { t: 'run' }> => e.t === 'run');
  if (!start) {
    const problem = journal.entries.length === 0 && journal.skipped === 0 ? `${JOURNAL_FILE} is empty` : `${JOURNAL_FILE} has no readable \`run\` entry (${journal.skipped} unreadable line${journal.skipped === 1 ? '' : 's'})`;
    return { runId, corrupt: problem };
  }
  // Only the end of the latest attempt counts: a retry appends `resume` after an old `end`.
  let end: Extract<JournalEntry, { t: 'end' }> | undefined;
  for (const e of journal.entries) {
    if (e.t === 'end') end = e;
    else if (e.t === 'resume') end = undefined;
  }
  return { runId, entries: journal.entries, start, end, skipped: journal.skipped, lock: end ? 'none' : lockHolder(stateDir, runId) };
}

/**
 * A run without an end is running only while a live process holds its lock: a run whose
 * process died, or whose pid now belongs to another program, is interrupted. A run of this
 * process is never "running" here (the listener knows its own runs).
 */
export function stateOf(run: LoadedRun): RunState {
  if (run.end) return run.end.interrupted ? 'interrupted' : run.end.status;
  if (run.lock === 'stale') return 'interrupted';
  if (run.lock !== 'none') return run.lock.pid === process.pid ? 'interrupted' : 'running';
  // No lock: recorded by the listener and waiting for a slot, or written by an older ferry.
  const last = [...run.entries].reverse().find((e) => e.t === 'run' || e.t === 'resume') as { pid: number } | undefined;
  return last && last.pid !== process.pid && isLikelyFerry(last.pid) ? 'running' : 'interrupted';
}

export async function listRuns(stateDir: string): Promise<RunListing[]> {
  const ids = (await readdir(runsDir(stateDir)).catch(() => [] as string[])).filter(isRunId).sort().reverse();
  const out: RunListing[] = [];
  for (const id of ids) {
    const run = await readRun(stateDir, id);
    if (!run) continue;
    if ('corrupt' in run) {
      out.push({ runId: id, workflow: '?', status: 'corrupt', startedAt: '', durationMs: null, failedStep: null, file: '', problem: run.corrupt });
      continue;
    }
    out.push({
      runId: id,
      workflow: run.start.workflow,
      status: stateOf(run),
      startedAt: run.start.startedAt,
      durationMs: run.end ? Date.parse(run.end.at) - Date.parse(run.start.startedAt) : null,
      failedStep: run.end?.error?.step ?? null,
      file: run.start.file,
      ...(run.skipped > 0 ? { problem: `${run.skipped} unreadable journal line${run.skipped === 1 ? '' : 's'}` } : {}),
    });
  }
  return out;
}

const emptyCalls = () => ({ calls: 0, attempts: 0, failures: {} as Record<string, number>, waitedMs: 0 });

/** Rebuilds the run summary (DESIGN.md §5) from a journal, with per-step attempts and errors. */
export function summarize(run: LoadedRun): RunSummary & { state: RunState } {
  const top = new Set(run.start.shape.map((s) => s.id));
  const steps: Record<string, StepSummary> = {};
  const inner = new Map<string, Map<string, InnerStepSummary>>();
  const parentOf = new Map<string, string>();
  const walk = (shape: StepShape[], parent: string | undefined): void => {
    for (const s of shape) {
      if (parent) parentOf.set(s.id, parent);
      if (s.steps) walk(s.steps, s.id);
    }
  };
  walk(run.start.shape, undefined);
  // The latest entry per (step, item) wins: a retried item's success replaces its failure.
  const latest = new Map<string, Extract<JournalEntry, { t: 'step' }>>();
  for (const e of run.entries) if (e.t === 'step') latest.set(`${e.id}@${e.item.join('.')}`, e);
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
  const error: RunErrorInfo | null = run.end?.error ?? null;
  const state = stateOf(run);
  return {
    runId: run.runId,
    workflow: run.start.workflow,
    status: run.end?.status ?? 'failed',
    error: error ?? (state === 'interrupted' ? { step: '(run)', item: null, message: 'the run was killed before it finished; resume it with ferry retry' } : null),
    steps,
    startedAt: run.start.startedAt,
    durationMs: run.end ? Date.parse(run.end.at) - Date.parse(run.start.startedAt) : 0,
    state,
  };
}

/**
 * Checks that a workflow as it is now can resume a run: every step that completed must still
 * exist inside the same loops. Returns the problems, empty when compatible.
 */
export function incompatibilities(run: LoadedRun, now: StepShape[]): string[] {
  const place = (shape: StepShape[], parents: string[], into: Map<string, string>): Map<string, string> => {
    for (const s of shape) {
      into.set(s.id, parents.join('/'));
      if (s.steps) place(s.steps, [...parents, s.id], into);
    }
    return into;
  };
  const before = place(run.start.shape, [], new Map());
  const after = place(now, [], new Map());
  const problems = new Set<string>();
  for (const e of run.entries) {
    if (e.t !== 'step' || e.status === 'failed') continue;
    const was = before.get(e.id);
    const is = after.get(e.id);
    if (is === undefined) problems.add(`step \`${e.id}\` completed in this run but is no longer in the workflow`);
    else if (was !== undefined && was !== is) problems.add(`step \`${e.id}\` moved from ${was ? `loop \`${was}\`` : 'the top level'} to ${is ? `loop \`${is}\`` : 'the top level'}`);
  }
  return [...problems];
}
