import { closeSync, fchmodSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Redactor } from '../engine/redact.js';
import type { CallSummary, RunErrorInfo, StepStatus, TriggerData } from '../engine/types.js';
import { errorMessage, FerryError } from '../errors.js';
import { JOURNAL_FILE, runDir, WORKFLOW_COPY } from './paths.js';
import { stateDirError } from './state-dir.js';

/** Layout of the run's steps: the journal checks a changed workflow against it. */
export interface StepShape {
  id: string;
  steps?: StepShape[];
}

/** One line of `journal.jsonl`. `v` versions the format. */
export type JournalEntry =
  | {
      t: 'run';
      v: 1;
      runId: string;
      workflow: string;
      file: string;
      startedAt: string;
      pid: number;
      /** `sandbox` for a `--sandbox` run, which `ferry retry` resumes in the sandbox again; absent (older journals) means live. */
      mode?: RunMode;
      inputs: Record<string, unknown>;
      trigger: TriggerData;
      shape: StepShape[];
    }
  | { t: 'resume'; at: string; pid: number }
  | { t: 'step'; id: string; item: number[]; status: StepStatus; output?: unknown; error?: RunErrorInfo; calls?: CallSummary; ms: number }
  /** A file loop's low-water mark: every row below `done` finished. */
  | { t: 'progress'; id: string; item: number[]; done: number }
  /**
   * The file a file loop read, written when it first opened it: `ferry retry` refuses to
   * resume when the file changed (engine/sources.ts says how it is compared).
   */
  | { t: 'source'; id: string; item: number[]; path: string; size: number; mtimeMs: number; hash: string }
  | { t: 'end'; status: 'succeeded' | 'failed'; at: string; ms: number; error: RunErrorInfo | null; interrupted?: string };

/** Where a run's provider calls go: the real providers, or the built-in emulators. */
export type RunMode = 'live' | 'sandbox';

export type StepEntry = Extract<JournalEntry, { t: 'step' }>;

/** Where the engine writes what happened; narrow so another store (Redis, Temporal) can stand in. */
export interface RunJournal {
  /** Appends one entry. It is durable once `flush()` ran, which the runtime does before every provider call. */
  append(entry: JournalEntry): void;
  /**
   * Writes pending entries; throws when they cannot be written, and then the call about to
   * leave does not go out. The runtime calls it on the journals of its running runs before
   * each provider call. A journal that writes at once needs none.
   */
  flush?(): void;
  close(): void;
}

export interface FileJournalOptions {
  /**
   * Called once when a write fails (a full disk). The journal takes no more entries after it,
   * so the run must stop: nothing it does from then on would be recorded.
   */
  onFailure?: (error: FerryError) => void;
}

/**
 * An append-only JSONL file. Entries are buffered and written with one write(2) per flush:
 * before the next provider call (the runtime calls `flush()`), when 64 KB are pending, on the next
 * turn of the event loop, and on close. Once written, lines survive SIGKILL of this process.
 * Secrets are redacted here, the one place records are written: in each entry's values,
 * never in the JSON text (a secret `true` must not turn into `"ok":[redacted]`).
 *
 * The file never holds a torn line that a later entry is glued onto: a write that fails half
 * way is cut back, and a file whose last line was torn by a kill gets a fresh line first.
 */
export class FileJournal implements RunJournal {
  readonly #fd: number;
  readonly #redactor: Redactor | undefined;
  readonly #onFailure: ((error: FerryError) => void) | undefined;
  readonly path: string;
  #pending = '';
  #scheduled = false;
  /** Bytes on disk that end with a whole entry: where a failed write is cut back to. */
  #size: number;
  /** The file does not end with a newline (torn by a kill): the next write starts a new line. */
  #newline: boolean;
  #failure: FerryError | undefined;

  constructor(file: string, redactor?: Redactor, options: FileJournalOptions = {}) {
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      this.#fd = openSync(file, 'a+', 0o600);
    } catch (error) {
      throw stateDirError(error, stateDirOf(file));
    }
    try {
      // Journals written by an older ferry, or by the listener, become owner-only too.
      fchmodSync(this.#fd, 0o600);
    } catch {
      // not ours to change
    }
    this.path = file;
    this.#redactor = redactor;
    this.#onFailure = options.onFailure;
    this.#size = fstatSync(this.#fd).size;
    this.#newline = false;
    if (this.#size > 0) {
      const last = Buffer.alloc(1);
      readSync(this.#fd, last, 0, 1, this.#size - 1);
      this.#newline = last[0] !== 0x0a;
    }
  }

  /** Creates the run folder with the journal and a copy of the workflow file it started from. */
  static create(stateDir: string, runId: string, workflowSource: string, redactor?: Redactor, options: FileJournalOptions = {}): FileJournal {
    const dir = runDir(stateDir, runId);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileSync(path.join(dir, WORKFLOW_COPY), workflowSource, { mode: 0o600 });
    } catch (error) {
      throw stateDirError(error, stateDir);
    }
    return new FileJournal(path.join(dir, JOURNAL_FILE), redactor, options);
  }

  /** The write error that stopped this journal, if one did. */
  get failure(): FerryError | undefined {
    return this.#failure;
  }

  append(entry: JournalEntry): void {
    if (this.#failure) return;
    // Without secrets this is a plain stringify; with them, the entry is walked only when its text holds one.
    this.#pending += `${this.#redactor ? this.#redactor.redactJson(entry) : JSON.stringify(entry)}\n`;
    if (this.#pending.length >= 64 * 1024) this.#flushQuietly();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flushQuietly());
    }
  }

  /** Writes what is pending; throws (and reports through `onFailure`) when it cannot. */
  flush(): void {
    this.#scheduled = false;
    // A failed journal throws on every flush: no call of its runtime goes out while a run's
    // record of it cannot be written.
    if (this.#failure) throw this.#failure;
    if (this.#pending === '') return;
    const text = this.#pending;
    this.#pending = '';
    const bytes = Buffer.from(this.#newline ? `\n${text}` : text);
    let written = 0;
    try {
      // write(2) may write part of the buffer (a disk filling up): go on until all is written.
      while (written < bytes.length) written += writeSync(this.#fd, bytes, written);
      this.#size += bytes.length;
      this.#newline = false;
    } catch (error) {
      if (written > 0) {
        try {
          ftruncateSync(this.#fd, this.#size);
        } catch {
          this.#newline = true;
        }
      }
      this.#failure = journalWriteError(error, this.path);
      this.#onFailure?.(this.#failure);
      throw this.#failure;
    }
  }

  #flushQuietly(): void {
    try {
      this.flush();
    } catch {
      // Reported through onFailure; the runtime's flush before the next provider call throws it too.
    }
  }

  /** Forces the file to disk (power loss); used at run boundaries, not per entry. */
  sync(): void {
    fsyncSync(this.#fd);
  }

  /**
   * Writes what is pending and closes. No fsync: a tail lost to power loss is re-run on
   * retry with the same idempotency keys, so providers dedupe it; `sync()` is there for the
   * places that must be on disk before answering (the listener's 202). A write that fails
   * here is kept in `failure`, not thrown.
   */
  close(): void {
    try {
      this.#flushQuietly();
    } finally {
      closeSync(this.#fd);
    }
  }
}

/** `<state-dir>/runs/<id>/journal.jsonl` -> `<state-dir>`. */
function stateDirOf(journalFile: string): string {
  return path.resolve(journalFile, '../../..');
}

function journalWriteError(error: unknown, file: string): FerryError {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FerryError('FERRY_DISK_FULL', `the journal ${file} could not be written: the disk holding the state dir ${stateDirOf(file)} is full (${code}); the run stopped before its next call. Free some space there, then resume the run`, { cause: error });
  }
  return new FerryError('FERRY_JOURNAL_WRITE', `the journal ${file} could not be written (${code ?? errorMessage(error)}); the run stopped before its next call`, { cause: error });
}

/** A journal that keeps nothing: for embedding and for measuring the journal's cost. */
export const noJournal: RunJournal = { append: () => undefined, close: () => undefined };

/**
 * Reads a journal. A line that does not parse or is not a journal entry — the torn last line
 * of a killed process, or damage — is skipped and counted, never fatal.
 */
export async function readJournal(file: string): Promise<{ entries: JournalEntry[]; skipped: number }> {
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
    if (isEntry(value)) entries.push(value);
    else skipped++;
  }
  return { entries, skipped };
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The fields readers rely on, per entry type: a line that parses but lacks them is damage, not an entry. */
function isEntry(value: unknown): value is JournalEntry {
  if (!isObject(value)) return false;
  switch (value.t) {
    case 'run':
      return isString(value.runId) && isString(value.workflow) && isString(value.file) && isString(value.startedAt) && typeof value.pid === 'number' && isObject(value.inputs) && isObject(value.trigger) && Array.isArray(value.shape);
    case 'resume':
      return isString(value.at) && typeof value.pid === 'number';
    case 'step':
      return isString(value.id) && Array.isArray(value.item) && isString(value.status) && typeof value.ms === 'number';
    case 'progress':
      return isString(value.id) && Array.isArray(value.item) && typeof value.done === 'number';
    case 'source':
      return isString(value.id) && Array.isArray(value.item) && isString(value.path) && typeof value.size === 'number' && typeof value.mtimeMs === 'number' && isString(value.hash);
    case 'end':
      return isString(value.status) && isString(value.at) && (value.error === null || isObject(value.error));
    default:
      return false;
  }
}
