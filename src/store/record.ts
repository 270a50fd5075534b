import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Redactor } from '../redact.js';
import type { RunErrorInfo, StepStatus } from '../types.js';
import type { JournalEntry, RunMode } from './journal.js';
import { runDir } from './paths.js';

export const RECORD_FILE = 'run.json';

/** How a run stands by its record; `running` is checked against the run's lock when read. */
export type RecordStatus = 'running' | 'succeeded' | 'failed' | 'interrupted';

/**
 * The delivery a listener run came in on: path, delivery id and replay keys (see server/runs.ts);
 * for a run a schedule started, path `schedule` and the tick.
 */
export interface RunHook {
  path: string;
  delivery: string | null;
  replays?: { key: string; until: number }[];
  /** The tick (ISO time) of a scheduled run. */
  schedule?: string;
}

/**
 * `<run-dir>/run.json`: what `ferry runs` and the listener's start need to know of a run,
 * without reading its journal. Written when the run starts, resumes and ends (by the
 * `FileJournal`, or the listener that records a delivery). The journal stays the truth: a
 * record whose `journalBytes` is not the journal's size is out of date and the journal is
 * read instead.
 */
export interface RunRecord {
  v: 1;
  runId: string;
  workflow: string;
  /** The workflow file the run started from. */
  file: string;
  mode: RunMode;
  startedAt: string;
  /** The end of the latest attempt; null while it runs. */
  endedAt: string | null;
  status: RecordStatus;
  /** From the start of the run to the end of its latest attempt. */
  durationMs: number | null;
  /** How each top-level step ended (in the latest attempt that ran it). */
  steps: Record<string, StepStatus>;
  error: RunErrorInfo | null;
  /** The process of the latest attempt. */
  pid: number;
  host: string;
  hook?: RunHook;
  /** Journal lines that could not be read (a torn line after a kill), as far as the writer knew. */
  skipped: number;
  /** The journal's size when this record was written. */
  journalBytes: number;
}

type RunEntry = Extract<JournalEntry, { t: 'run' }>;
type EndEntry = Extract<JournalEntry, { t: 'end' }>;

/** The record of a run that just started (its `run` entry is the journal's first line). */
export function startRecord(start: RunEntry, journalBytes: number): RunRecord {
  const hook = (start as RunEntry & { hook?: RunHook }).hook;
  return {
    v: 1,
    runId: start.runId,
    workflow: start.workflow,
    file: start.file,
    mode: start.mode ?? 'live',
    startedAt: start.startedAt,
    endedAt: null,
    status: 'running',
    durationMs: null,
    steps: {},
    error: null,
    pid: start.pid,
    host: hostname(),
    ...(hook ? { hook } : {}),
    skipped: 0,
    journalBytes,
  };
}

/** The record once the latest attempt ended with `end`. */
export function endRecord(record: RunRecord, end: EndEntry, journalBytes: number): RunRecord {
  return {
    ...record,
    endedAt: end.at,
    status: end.interrupted ? 'interrupted' : end.status,
    durationMs: Date.parse(end.at) - Date.parse(record.startedAt),
    error: end.error,
    journalBytes,
  };
}

/** The record of a run attempt that starts again (`resume` entry) in process `pid`. */
export function resumeRecord(record: RunRecord, pid: number, journalBytes: number): RunRecord {
  return { ...record, endedAt: null, status: 'running', durationMs: null, steps: { ...record.steps }, error: null, pid, host: hostname(), journalBytes };
}

/**
 * Writes `<run-dir>/run.json` owner-only and atomically (aside, then renamed over), so a
 * reader sees the old record or the new one, never half of one. Secrets in it (an error
 * message quoting a value) are redacted like the journal's.
 */
export function writeRunRecord(stateDir: string, record: RunRecord, redactor?: Redactor): void {
  const { file, tmp, text } = recordWrite(stateDir, record, redactor);
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    renameSync(tmp, file);
  } catch (error) {
    unlinkQuietly(tmp);
    throw error;
  }
}

/**
 * writeRunRecord for the first record a journal writes, which usually does not exist yet: it
 * is then created in place, with no file aside to rename. A reader that finds it half written
 * takes it for missing and reads the journal, as it does any record it cannot read. A record
 * that exists is replaced atomically, as writeRunRecord does.
 */
export function createRunRecord(stateDir: string, record: RunRecord, redactor?: Redactor): void {
  const file = path.join(runDir(stateDir, record.runId), RECORD_FILE);
  const text = recordText(record, redactor);
  try {
    writeFileSync(file, text, { flag: 'wx', mode: 0o600 });
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      // Created but not written whole (a full disk): no torn record stays behind.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') unlinkQuietly(file);
      throw error;
    }
  }
  writeRunRecord(stateDir, record, redactor);
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // never written
  }
}

/** writeRunRecord without blocking the event loop: the listener writes one beside each delivery it records. */
export async function writeRunRecordAsync(stateDir: string, record: RunRecord, redactor?: Redactor): Promise<void> {
  const { file, text } = recordWrite(stateDir, record, redactor);
  await replaceFile(file, text);
}

/**
 * Writes `text` to `file` owner-only and atomically, without blocking the event loop: aside,
 * then renamed over it, so a reader sees the old file or the new one, never half of one.
 */
export async function replaceFile(file: string, text: string): Promise<void> {
  const tmp = asideOf(file);
  try {
    await writeFile(tmp, text, { mode: 0o600 });
    await rename(tmp, file);
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
}

/** A name beside `file`, this process's and no other's, to write it aside. */
function asideOf(file: string): string {
  return `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
}

/** Where a record goes, the file it is written to aside first, and its redacted text. */
function recordWrite(stateDir: string, record: RunRecord, redactor: Redactor | undefined): { file: string; tmp: string; text: string } {
  const file = path.join(runDir(stateDir, record.runId), RECORD_FILE);
  return { file, tmp: asideOf(file), text: recordText(record, redactor) };
}

function recordText(record: RunRecord, redactor: Redactor | undefined): string {
  return redactor ? redactor.redactJson(record) : JSON.stringify(record);
}

/**
 * Like writeRunRecord (createRunRecord when `create`), for writers that go on without it: a
 * failure leaves the journal to be read next time.
 */
export function writeRunRecordQuietly(stateDir: string, record: RunRecord, redactor?: Redactor, create = false): void {
  try {
    if (create) createRunRecord(stateDir, record, redactor);
    else writeRunRecord(stateDir, record, redactor);
  } catch {
    // A read-only state dir, a full disk: the record is an index, the journal still says it all.
  }
}

/** The run's record, or undefined when it has none or it cannot be read. */
export function readRunRecord(stateDir: string, runId: string): RunRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path.join(runDir(stateDir, runId), RECORD_FILE), 'utf8'));
  } catch {
    return undefined;
  }
  return isRecord(value) && value.runId === runId ? value : undefined;
}

const STATUSES = new Set(['running', 'succeeded', 'failed', 'interrupted']);

/** A value that has the fields of a RunRecord (read back from a file or from Redis). */
export function isRecord(value: unknown): value is RunRecord {
  if (value === null || typeof value !== 'object') return false;
  const r = value as Record<string, unknown>;
  return (
    r.v === 1 &&
    typeof r.runId === 'string' &&
    typeof r.workflow === 'string' &&
    typeof r.file === 'string' &&
    typeof r.startedAt === 'string' &&
    typeof r.status === 'string' &&
    STATUSES.has(r.status) &&
    typeof r.pid === 'number' &&
    typeof r.journalBytes === 'number' &&
    typeof r.skipped === 'number' &&
    (r.error === null || typeof r.error === 'object') &&
    r.steps !== null &&
    typeof r.steps === 'object'
  );
}
