import { statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { RunErrorInfo, RunSummary, StepSummary } from '../types.js';
import { RunFold } from './fold.js';
import { JournalReader, loopsOf, type JournalEntry, type StepShape } from './journal.js';
import { isLikelyFerry, lockHolder, type LockHolder } from './lock.js';
import { isRunId, JOURNAL_FILE, runDir, runsDir } from './paths.js';
import { endRecord, readRunRecord, startRecord, writeRunRecordQuietly, type RunRecord } from './record.js';

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
  start: Extract<JournalEntry, { t: 'run' }>;
  end: Extract<JournalEntry, { t: 'end' }> | undefined;
  /** Lines that did not parse (a torn last line after a kill). */
  skipped: number;
  /** Who holds the run's lock now: a live holder, none, or a stale lock left by a dead process. */
  lock: LockHolder | 'none' | 'stale';
  /** The journal folded into steps and per-loop counts (see RunFold). */
  fold: RunFold;
  /** The journal's size as it was read. */
  journalBytes: number;
}

/** A run folder whose journal cannot be read as a run. */
export interface CorruptRun {
  runId: string;
  corrupt: string;
}

/** Called with every entry of the journal, in order, while a run is read (e.g. to fold its resume state). */
export type EntryVisitor = (entry: JournalEntry) => void;

export async function loadRun(stateDir: string, runId: string, visit?: EntryVisitor): Promise<LoadedRun | undefined> {
  const run = await readRun(stateDir, runId, visit);
  return run && 'corrupt' in run ? undefined : run;
}

/**
 * Reads one run, streaming its journal; `undefined` when there is no such run folder. A
 * journal that is missing, empty, unreadable or has no `run` entry gives a CorruptRun naming
 * the problem. `visit` sees every entry once, but only of a journal that is a run.
 */
export async function readRun(stateDir: string, runId: string, visit?: EntryVisitor): Promise<LoadedRun | CorruptRun | undefined> {
  if (!isRunId(runId)) return undefined;
  const dir = runDir(stateDir, runId);
  let read: Awaited<ReturnType<typeof foldJournal>>;
  try {
    read = await foldJournal(path.join(dir, JOURNAL_FILE), visit);
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
  const { fold, entries, skipped, bytes } = read;
  if (!fold) {
    return { runId, corrupt: corruptProblem(JOURNAL_FILE, entries, skipped) };
  }
  // Only the end of the latest attempt counts: a retry appends `resume` after an old `end`.
  const end = fold.end;
  return { runId, start: fold.start, end, skipped, lock: end ? 'none' : lockHolder(stateDir, runId), fold, journalBytes: bytes };
}

/**
 * One pass over a journal whose first entry is its `run` entry (every journal ferry writes);
 * a damaged one whose `run` entry comes later is read twice, so that every entry is folded
 * against the run's steps.
 */
async function foldJournal(file: string, visit: EntryVisitor | undefined): Promise<{ fold: RunFold | undefined; entries: number; skipped: number; bytes: number }> {
  let reader = new JournalReader(file);
  const { fold, entries } = await foldEntries(() => (reader = new JournalReader(file)).batches(), visit);
  return { fold, entries, skipped: reader.skipped, bytes: reader.bytes };
}

/**
 * Folds a journal given as batches of entries, whatever holds it (a file, Redis): `batches`
 * is called once, or twice for a damaged journal whose `run` entry is not its first.
 * `entries` counts the entries of the first pass.
 */
export async function foldEntries(batches: () => AsyncIterable<JournalEntry[]>, visit: EntryVisitor | undefined): Promise<{ fold: RunFold | undefined; entries: number }> {
  let fold: RunFold | undefined;
  let start: Extract<JournalEntry, { t: 'run' }> | undefined;
  let entries = 0;
  scan: for await (const batch of batches()) {
    for (const e of batch) {
      if (entries++ === 0 && e.t === 'run') fold = new RunFold(e);
      if (fold) {
        fold.add(e);
        visit?.(e);
      } else if (e.t === 'run') {
        start = e;
        break scan;
      }
    }
  }
  if (start) {
    fold = new RunFold(start);
    for await (const batch of batches()) {
      for (const e of batch) {
        fold.add(e);
        visit?.(e);
      }
    }
  }
  return { fold, entries };
}

/** Why a journal that folded into no run is corrupt. */
export function corruptProblem(name: string, entries: number, skipped: number): string {
  return entries === 0 && skipped === 0 ? `${name} is empty` : `${name} has no readable \`run\` entry (${skipped} unreadable line${skipped === 1 ? '' : 's'})`;
}

/**
 * A run without an end is running only while a live process holds its lock: a run whose
 * process died, or whose pid now belongs to another program, is interrupted. A run of this
 * process is never "running" here (the listener knows its own runs).
 */
export function stateOf(run: LoadedRun): RunState {
  if (run.end) return run.end.interrupted ? 'interrupted' : run.end.status;
  return unfinished(run.lock, run.fold.pid);
}

/** The state of a run that has no end, from its lock and the pid of its latest attempt. */
export function unfinished(lock: LoadedRun['lock'], pid: number): RunState {
  if (lock === 'stale') return 'interrupted';
  // A backend lease lives in Redis: it exists, so its holder runs the run, unless that is us.
  if (lock !== 'none' && lock.lease) return lock.pid === process.pid && lock.host === hostname() ? 'interrupted' : 'running';
  // Our own lock (`ferry retry` locks before it reads): the run is still another live
  // process's when that one recorded or resumed it last and holds it without a lock (the
  // listener keeps accepted runs queued, unlocked, until a slot is free).
  if (lock !== 'none') return lock.pid !== process.pid ? 'running' : pid !== process.pid && isLikelyFerry(pid) ? 'running' : 'interrupted';
  // No lock: recorded by the listener and waiting for a slot, or written by an older ferry.
  return pid !== process.pid && isLikelyFerry(pid) ? 'running' : 'interrupted';
}

/** The record (`run.json`) that says what the journal says, for a run read from its journal. */
export function recordOf(run: LoadedRun): RunRecord {
  const record = startRecord(run.start, run.journalBytes);
  record.pid = run.fold.pid;
  record.skipped = run.skipped;
  for (const [id, e] of run.fold.top) record.steps[id] = e.status;
  return run.end ? endRecord(record, run.end, run.journalBytes) : record;
}

/**
 * A run's record when it is up to date with its journal, with the run's state. A record of
 * a run whose live runner holds the lock is up to date by definition (its journal grows);
 * any other record must have been written at the journal's current size.
 */
export function currentRecord(stateDir: string, runId: string): { record: RunRecord; state: RunState } | undefined {
  const record = readRunRecord(stateDir, runId);
  if (!record) return undefined;
  let size: number;
  try {
    size = statSync(path.join(runDir(stateDir, runId), JOURNAL_FILE)).size;
  } catch {
    return undefined;
  }
  if (record.status !== 'running') return size === record.journalBytes ? { record, state: record.status } : undefined;
  const lock = lockHolder(stateDir, runId);
  if (typeof lock === 'object' && lock.pid !== process.pid) return { record, state: 'running' };
  return size === record.journalBytes ? { record, state: unfinished(lock, record.pid) } : undefined;
}

/** Which runs `ferry runs` lists; every filter is answered from the runs' records. */
export interface RunFilter {
  status?: RunListing['status'];
  workflow?: string;
  /** At most this many, newest first. */
  limit?: number;
}

/**
 * Lists runs, newest first, from their records (`run.json`): no journal is read for a run
 * whose record is up to date. A run without one (written by an older ferry, or whose record
 * fell behind) is read from its journal, and its record is written for next time.
 */
export async function listRuns(stateDir: string, filter: RunFilter = {}): Promise<RunListing[]> {
  const ids = (await readdir(runsDir(stateDir)).catch(() => [] as string[])).filter(isRunId).sort().reverse();
  const out: RunListing[] = [];
  for (const id of ids) {
    if (filter.limit !== undefined && out.length >= filter.limit) break;
    const listing = listingOf(stateDir, id) ?? (await listingFromJournal(stateDir, id));
    if (!listing) continue;
    if (filter.status !== undefined && listing.status !== filter.status) continue;
    if (filter.workflow !== undefined && listing.workflow !== filter.workflow) continue;
    out.push(listing);
  }
  return out;
}

function listingOf(stateDir: string, runId: string): RunListing | undefined {
  const current = currentRecord(stateDir, runId);
  return current && recordListing(current.record, current.state);
}

/** The `ferry runs` line of a run whose record is up to date, in state `state`. */
export function recordListing(record: RunRecord, state: RunState): RunListing {
  return {
    runId: record.runId,
    workflow: record.workflow,
    status: state,
    startedAt: record.startedAt,
    durationMs: record.durationMs,
    failedStep: record.error?.step ?? null,
    file: record.file,
    ...problemOf(record.skipped),
  };
}

async function listingFromJournal(stateDir: string, runId: string): Promise<RunListing | undefined> {
  const run = await readRun(stateDir, runId);
  if (!run) return undefined;
  // A live runner keeps its own record; anyone else may write the one that was missing.
  if (!('corrupt' in run) && typeof run.lock !== 'object') writeRunRecordQuietly(stateDir, recordOf(run));
  return runListing(run);
}

/** The `ferry runs` line of a run read from its journal. */
export function runListing(run: LoadedRun | CorruptRun): RunListing {
  if ('corrupt' in run) return { runId: run.runId, workflow: '?', status: 'corrupt', startedAt: '', durationMs: null, failedStep: null, file: '', problem: run.corrupt };
  return {
    runId: run.runId,
    workflow: run.start.workflow,
    status: stateOf(run),
    startedAt: run.start.startedAt,
    durationMs: run.end ? Date.parse(run.end.at) - Date.parse(run.start.startedAt) : null,
    failedStep: run.end?.error?.step ?? null,
    file: run.start.file,
    ...problemOf(run.skipped),
  };
}

const problemOf = (skipped: number): { problem?: string } => (skipped > 0 ? { problem: `${skipped} unreadable journal line${skipped === 1 ? '' : 's'}` } : {});

/** Rebuilds the run summary (DESIGN.md §5) from a journal, with per-step attempts and errors. */
export function summarize(run: LoadedRun): RunSummary & { state: RunState } {
  const steps: Record<string, StepSummary> = {};
  for (const e of run.fold.top.values()) {
    steps[e.id] = { status: e.status, output: e.output ?? null, durationMs: e.ms, ...(e.calls ? { calls: e.calls } : {}), ...(e.error ? { error: e.error.message } : {}) };
  }
  for (const [loop, perLoop] of run.fold.inner) {
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
    ...(run.fold.failedItems.size > 0 ? { failed_items: run.fold.failedItems.size } : {}),
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
  const place = (shape: StepShape[]): Map<string, string> => new Map([...loopsOf(shape)].map(([id, loops]) => [id, loops.join('/')]));
  const before = place(run.start.shape);
  const after = place(now);
  const problems: string[] = [];
  for (const id of run.fold.completed) {
    const was = before.get(id);
    const is = after.get(id);
    if (is === undefined) problems.push(`step \`${id}\` completed in this run but is no longer in the workflow`);
    else if (was !== undefined && was !== is) problems.push(`step \`${id}\` moved from ${was ? `loop \`${was}\`` : 'the top level'} to ${is ? `loop \`${is}\`` : 'the top level'}`);
  }
  return problems;
}
