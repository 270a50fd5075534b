import { closeSync, createReadStream, fchmodSync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Redactor } from '../redact.js';
import type { CallSummary, RunErrorInfo, StepStatus, TriggerData } from '../types.js';
import { errorMessage, FerryError } from '../errors.js';
import { FailedFile } from './failed.js';
import { addJournalEntries, bareLine, isBare, journalLine, MAX_BARE_RUN, type BareRun } from './journal-line.js';
import { JOURNAL_FILE, runDir, WORKFLOW_COPY } from './paths.js';
import { endRecord, readRunRecord, resumeRecord, startRecord, writeRunRecordQuietly, type RunRecord } from './record.js';
import { stateDirError } from './state-dir.js';

/** Layout of the run's steps: the journal checks a changed workflow against it. */
export interface StepShape {
  id: string;
  steps?: StepShape[];
}

/** Each step's enclosing loops, outermost first (empty at the top level). */
export function loopsOf(shape: readonly StepShape[], loops: string[] = [], into = new Map<string, string[]>()): Map<string, string[]> {
  for (const s of shape) {
    into.set(s.id, loops);
    if (s.steps) loopsOf(s.steps, [...loops, s.id], into);
  }
  return into;
}

/** One entry of `journal.jsonl`; journal-line.ts says how it is written as a line (defaults left out). `v` versions the format. */
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
  /**
   * A loop item (`id` is the loop, `item` its position) set aside by `on_error: continue`
   * (`failed`, with the step, the item, its file line and the error), or sent again by
   * `ferry retry` and passed (`succeeded`). The run's `failed.jsonl` is made from these.
   */
  | ItemEntry
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

export interface ItemEntry {
  t: 'item';
  id: string;
  item: number[];
  status: 'failed' | 'succeeded';
  step?: string;
  value?: unknown;
  file?: string;
  line?: number;
  error?: RunErrorInfo;
}

/** Where the engine writes what happened; narrow so another store (Redis, Temporal) can stand in. */
export interface RunJournal {
  /** Appends one entry. It is durable once `flush()` ran, which the runtime does before every provider call. */
  append(entry: JournalEntry): void;
  /**
   * Writes pending entries; throws when they cannot be written, and then the call about to
   * leave does not go out. The runtime calls it on the journals of its running runs before
   * each provider call and waits for a promise it returns: a journal that writes elsewhere
   * (Redis) resolves once the entries are stored there. A journal that writes at once needs none.
   */
  flush?(): void | Promise<void>;
  close(): void;
}

export interface FileJournalOptions {
  /**
   * Called once when a write fails (a full disk). The journal takes no more entries after it,
   * so the run must stop: nothing it does from then on would be recorded.
   */
  onFailure?: (error: FerryError) => void;
  /**
   * The run's record as its earlier attempts left it, for a journal that resumes a run: the
   * record is carried on at the `resume` entry. @default `run.json` of the run folder, when
   * it is up to date with the journal
   */
  record?: RunRecord;
  /** The run folder was made owner-only by this process (the listener): no mkdir, no chmod. */
  made?: boolean;
  /**
   * Creates the journal (it must not exist yet) with this text as its first line, written with
   * the first entries: a run the listener recorded in its accepted log, whose folder it made just now.
   */
  first?: string;
}

/**
 * The record of a `run` or `resume` entry waits this long, until the journal is this large, or
 * until the run's first provider call, before it is written: a run that ends sooner (a listener's
 * delivery that only logs or branches) writes one record, at its end, created in place. Until
 * then a reader finds no up-to-date record and reads the journal, which is short.
 */
const RECORD_AFTER_MS = 1000;
const RECORD_AFTER_BYTES = 64 * 1024;

/**
 * An append-only JSONL file. Entries are encoded into one reused 64 KB buffer and written with
 * one write(2) per flush: before the next provider call (the runtime calls `flush()`), when the
 * buffer is full, on the next turn of the event loop, and on close: a million entries allocate
 * nothing but their JSON text. Once written, lines survive SIGKILL of this process.
 * Secrets are redacted here, the one place records are written: in each entry's values,
 * never in the JSON text (a secret `true` must not turn into `"ok":[redacted]`), and only in
 * the values that come from outside the engine (journal-line.ts says which).
 *
 * The file never holds a torn line that a later entry is glued onto: a write that fails half
 * way is cut back, and a file whose last line was torn by a kill gets a fresh line first.
 *
 * It also keeps the run's record (`run.json`, see record.ts) in step: written at the `end`
 * entry, and for the `run` and `resume` entries before the first provider call after them, at
 * the first write a second after them, or once the journal passes 64 KiB; each time after the
 * journal is written up to that entry.
 */
export class FileJournal implements RunJournal {
  readonly #fd: number;
  readonly #redactor: Redactor | undefined;
  readonly #onFailure: ((error: FerryError) => void) | undefined;
  readonly path: string;
  /** Entries not written yet, as UTF-8; made at the first entry and reused from flush to flush. */
  #buffer: Buffer | undefined;
  /** The journal filled a buffer once: it gets full-size ones from then on. */
  #filled = false;
  /** Bytes of `#buffer` that hold entries. */
  #used = 0;
  /** Bare step entries at consecutive positions, not yet in the buffer: they become one line. */
  #bare: BareRun | undefined;
  #scheduled = false;
  /** Bytes on disk that end with a whole entry: where a failed write is cut back to. */
  #size: number;
  /** The file does not end with a newline (torn by a kill): the next write starts a new line. */
  #newline: boolean;
  #failure: FerryError | undefined;
  /** The run's record as last written; undefined until the `run` or `resume` entry (or without a base). */
  #record: RunRecord | undefined;
  readonly #baseRecord: RunRecord | undefined;
  #recordWritten = false;
  /** When the record of a `run`/`resume` entry, not yet written, is due (Date.now() ms). */
  #recordDue: number | undefined;
  #openedSize: number;
  /** failed.jsonl, written after the journal lines it comes from. */
  readonly #failed: FailedFile;

  constructor(file: string, redactor?: Redactor, options: FileJournalOptions = {}) {
    try {
      if (!options.made) mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      this.#fd = openSync(file, options.first === undefined ? 'a+' : 'wx', 0o600);
    } catch (error) {
      throw stateDirError(error, stateDirOf(file));
    }
    try {
      // Journals written by an older ferry become owner-only too.
      if (!options.made) fchmodSync(this.#fd, 0o600);
    } catch {
      // not ours to change
    }
    this.path = file;
    this.#redactor = redactor;
    this.#onFailure = options.onFailure;
    this.#size = fstatSync(this.#fd).size;
    this.#openedSize = this.#size;
    this.#baseRecord = options.record;
    this.#failed = new FailedFile(file, redactor);
    this.#newline = false;
    if (this.#size > 0) {
      const last = Buffer.alloc(1);
      readSync(this.#fd, last, 0, 1, this.#size - 1);
      this.#newline = last[0] !== 0x0a;
    }
    if (options.first !== undefined) {
      this.#put(options.first);
      this.#openedSize = Buffer.byteLength(options.first);
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
    if (entry.t === 'step' && isBare(entry)) {
      if (!this.#extendBare(entry)) {
        this.#closeBare();
        this.#bare = { id: entry.id, item: entry.item, count: 1 };
      }
    } else {
      this.#closeBare();
      this.#put(journalLine(entry, this.#redactor));
    }
    if (entry.t === 'step') {
      if (entry.item.length === 0 && this.#record) this.#record.steps[entry.id] = entry.status;
    } else if (entry.t === 'item') {
      this.#failed.add(entry);
    } else if (entry.t === 'run' || entry.t === 'resume' || entry.t === 'end') {
      this.#keepRecord(entry);
      return;
    }
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flushQuietly());
    }
  }

  /** Whether `entry` is the next position of the pending bare run, which then covers it. */
  #extendBare(entry: StepEntry): boolean {
    const bare = this.#bare;
    if (bare === undefined || bare.id !== entry.id || bare.count === MAX_BARE_RUN || bare.item.length !== entry.item.length) return false;
    const last = entry.item.length - 1;
    for (let i = 0; i < last; i++) if (bare.item[i] !== entry.item[i]) return false;
    if (entry.item[last] !== (bare.item[last] ?? 0) + bare.count) return false;
    bare.count++;
    return true;
  }

  #closeBare(): void {
    const bare = this.#bare;
    if (bare === undefined) return;
    // Cleared first: a full buffer flushes inside #put, and that flush closes the bare run too.
    this.#bare = undefined;
    this.#put(bareLine(bare));
  }

  /** Copies one line (with its newline) into the buffer, writing what it holds first when the line might not fit. */
  #put(line: string): void {
    // A UTF-16 code unit takes at most 3 bytes of UTF-8.
    const room = line.length * 3;
    if (this.#buffer && this.#used + room > this.#buffer.length) {
      this.#flushQuietly();
      this.#filled = true;
    }
    if (this.#failure) return;
    // The first buffer is small (most journals of a listener's runs are a few lines); once one
    // filled up, full-size ones follow. A line larger than the buffer gets a buffer of its own,
    // dropped once written.
    const size = this.#filled ? BUFFER_BYTES : FIRST_BUFFER_BYTES;
    if (!this.#buffer || room > this.#buffer.length - this.#used || this.#buffer.length < size) this.#buffer = Buffer.allocUnsafe(Math.max(room, size));
    this.#used += this.#buffer.write(line, this.#used);
  }

  /** Writes the journal up to `entry`, then (at once for `end`, see RECORD_AFTER_MS) the record that says what `entry` changed. */
  #keepRecord(entry: Extract<JournalEntry, { t: 'run' | 'resume' | 'end' }>): void {
    this.#flushQuietly();
    if (this.#failure) return;
    if (entry.t === 'run') this.#record = startRecord(entry, this.#size);
    else if (entry.t === 'resume') {
      const base = this.#baseRecord ?? this.#currentRecord();
      this.#record = base && resumeRecord(base, entry.pid, this.#size);
    } else if (this.#record) this.#record = endRecord(this.#record, entry, this.#size);
    if (!this.#record) return;
    if (entry.t === 'end' || this.#size > RECORD_AFTER_BYTES) this.#writeRecord();
    else this.#recordDue = Date.now() + RECORD_AFTER_MS;
  }

  #writeRecord(): void {
    if (!this.#record) return;
    this.#recordDue = undefined;
    // The first record this journal writes is usually the run's first: created in place.
    writeRunRecordQuietly(stateDirOf(this.path), this.#record, this.#redactor, !this.#recordWritten);
    this.#recordWritten = true;
  }

  /** `run.json` as this journal found it, if it was up to date with the journal then. */
  #currentRecord(): RunRecord | undefined {
    const record = readRunRecord(stateDirOf(this.path), path.basename(path.dirname(this.path)));
    return record?.journalBytes === this.#openedSize ? record : undefined;
  }

  /**
   * Writes what is pending; throws (and reports through `onFailure`) when it cannot. The runtime
   * calls it before each provider call, so a record still due is written too: a run that waits
   * on a provider is listed from its record.
   */
  flush(): void {
    this.#write();
    if (this.#recordDue !== undefined) this.#writeRecord();
  }

  #write(): void {
    this.#scheduled = false;
    // A failed journal throws on every flush: no call of its runtime goes out while a run's
    // record of it cannot be written.
    if (this.#failure) throw this.#failure;
    this.#closeBare();
    const buffer = this.#buffer;
    const length = this.#used;
    if (buffer === undefined || length === 0) return;
    this.#used = 0;
    if (buffer.length > BUFFER_BYTES) this.#buffer = undefined;
    let written = 0;
    try {
      if (this.#newline) {
        writeSync(this.#fd, '\n');
        this.#size += 1;
        this.#newline = false;
      }
      // write(2) may write part of the bytes (a disk filling up): go on until all is written.
      while (written < length) written += writeSync(this.#fd, buffer, written, length - written);
      this.#size += length;
      this.#failed.write();
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

  /** Writes what is pending, and a record that is due by now. */
  #flushQuietly(): void {
    try {
      this.#write();
    } catch {
      // Reported through onFailure; the runtime's flush before the next provider call throws it too.
      return;
    }
    if (this.#recordDue !== undefined && (this.#size > RECORD_AFTER_BYTES || Date.now() >= this.#recordDue)) this.#writeRecord();
  }

  /**
   * Writes failed.jsonl anew with these items: a run taken up again starts from what its
   * journal says is failed now (a crash may have cut the file short; a retry sends them again).
   */
  resetFailed(entries: Iterable<ItemEntry>): void {
    try {
      this.#failed.reset(entries);
    } catch {
      // failed.jsonl is a view of the journal; `ferry show` reads the journal itself.
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
      // A record still due, or entries after `end` (none today), would leave the record behind the journal.
      if (this.#record && !this.#failure && (this.#recordDue !== undefined || this.#record.journalBytes !== this.#size)) {
        this.#record = { ...this.#record, journalBytes: this.#size };
        this.#writeRecord();
      }
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
 * Reads a journal into memory. A line that does not parse or is not a journal entry — the torn
 * last line of a killed process, or damage — is skipped and counted, never fatal. For journals
 * of any size, `JournalReader` streams the same entries.
 */
export async function readJournal(file: string): Promise<{ entries: JournalEntry[]; skipped: number }> {
  const reader = new JournalReader(file);
  const entries: JournalEntry[] = [];
  for await (const batch of reader.batches()) for (const entry of batch) entries.push(entry);
  return { entries, skipped: reader.skipped };
}

/** The write buffer of a journal: entries wait in it until a flush, at most this many bytes. */
const BUFFER_BYTES = 64 * 1024;
/** Under half of Buffer.poolSize: taken from Node's shared pool, not allocated on its own. */
const FIRST_BUFFER_BYTES = 4000;

/** Bytes read from the file at a time: what the reader holds besides the line being parsed. */
const CHUNK_BYTES = 256 * 1024;

/**
 * A journal as a stream of entries, read line by line, so a million-item run never sits in
 * memory: only one chunk of the file and the line being parsed do. Lines are told apart the
 * way `readJournal` always did: split at `\n`, empty lines ignored, anything that is not a
 * valid entry counted in `skipped`.
 */
export class JournalReader implements AsyncIterable<JournalEntry> {
  /** Lines that were not entries, so far. */
  skipped = 0;
  /** Bytes read so far: the journal's size once the stream ended. */
  bytes = 0;

  readonly #chunkBytes: number;

  /** @param options.chunkBytes bytes read at a time (@default 256 KiB) */
  constructor(
    readonly file: string,
    options: { chunkBytes?: number } = {},
  ) {
    this.#chunkBytes = options.chunkBytes ?? CHUNK_BYTES;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<JournalEntry> {
    for await (const batch of this.batches()) yield* batch;
  }

  /** The entries of each chunk of the file, for folds that want a plain loop per entry. */
  async *batches(): AsyncGenerator<JournalEntry[]> {
    let carry: Buffer[] = [];
    for await (const chunk of createReadStream(this.file, { highWaterMark: this.#chunkBytes }) as AsyncIterable<Buffer>) {
      this.bytes += chunk.length;
      const batch: JournalEntry[] = [];
      let from = 0;
      for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, from)) {
        const line = carry.length === 0 ? chunk.toString('utf8', from, nl) : Buffer.concat([...carry, chunk.subarray(from, nl)]).toString('utf8');
        carry = [];
        this.#parse(line, batch);
        from = nl + 1;
      }
      if (from < chunk.length) carry.push(chunk.subarray(from));
      if (batch.length > 0) yield batch;
    }
    const last: JournalEntry[] = [];
    if (carry.length > 0) this.#parse(Buffer.concat(carry).toString('utf8'), last);
    if (last.length > 0) yield last;
  }

  #parse(line: string, into: JournalEntry[]): void {
    if (line === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.skipped++;
      return;
    }
    if (!addJournalEntries(value, into)) this.skipped++;
  }
}

export { isJournalEntry } from './journal-line.js';
