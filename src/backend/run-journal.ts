import type { Redis } from 'ioredis';
import { errorMessage, FerryError } from '../errors.js';
import type { Redactor } from '../redact.js';
import { type JournalEntry, type RunJournal } from '../store/journal.js';
import { addJournalEntries, journalLine } from '../store/journal-line.js';
import { endRecord, isRecord, resumeRecord, startRecord, type RunRecord } from '../store/record.js';
import { luaScript, type Backend } from './connection.js';

/** The keys of one run (backend.md): journal LIST, record STRING, workflow HASH, owner lease STRING. */
export interface RunKeys {
  journal: string;
  record: string;
  workflow: string;
  owner: string;
}

export function runKeys(backend: Backend, runId: string): RunKeys {
  return { journal: backend.key('run', runId, 'journal'), record: backend.key('run', runId, 'record'), workflow: backend.key('run', runId, 'workflow'), owner: backend.key('run', runId, 'owner') };
}

/** Pending text at which a journal writes without waiting for `flush()`: it bounds a chunk's size. */
const FLUSH_BYTES = 64 * 1024;

/**
 * The record as JSON without its closing brace, ready for `"journalBytes":<n>}`: the scripts
 * append the journal's length after their RPUSH, so the record always names the chunk it
 * follows. In a Redis run, `journalBytes` is the journal's number of chunks (LLEN), not bytes.
 */
export function recordHead(record: RunRecord, redactor: Redactor | undefined): string {
  const { journalBytes: _, ...rest } = record;
  const text = redactor ? redactor.redactJson(rest) : JSON.stringify(rest);
  return `${text.slice(0, -1)},"journalBytes":`;
}

/**
 * Appends one chunk and writes the record after it, atomically. `expected` (the length this
 * journal last saw, -1 before it knows) guards against a second writer: a chunk someone else
 * appended meanwhile is a conflict (-1), a journal shorter than we left it lost data (-2: a
 * Redis restarted without persistence), while our own chunk found already there is a command
 * ioredis sent again after a reconnection, not a new write.
 * KEYS: journal, record, runs. ARGV: chunk, record head or '', expected, score or '', runId.
 * Exported for its test only.
 */
export const APPEND = `#!lua
local n = redis.call('LLEN', KEYS[1])
local expected = tonumber(ARGV[3])
if expected >= 0 and n ~= expected then
  if n == expected + 1 and redis.call('LINDEX', KEYS[1], -1) == ARGV[1] then return n end
  if n < expected then return -2 end
  return -1
end
n = redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2] .. n .. '}') end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5]) end
return n
`;

type RecordEntry = Extract<JournalEntry, { t: 'run' | 'resume' | 'end' | 'step' }>;

const appendScript = luaScript(APPEND);

export interface RedisJournalOptions {
  /** Secrets to redact: each chunk once, value by value, as FileJournal does. */
  redactor?: Redactor;
  /**
   * Called once when Redis refuses a write (out of memory, a second writer). The journal takes
   * no more entries after it, and every `flush()` rejects with the error: the run must stop.
   * Redis being away is no failure: the write waits for it.
   */
  onFailure?: (error: FerryError) => void;
  /**
   * The run is in Redis already (an attempt that resumes it, or a worker running a queued
   * run): the first write refuses a run whose journal is not there. @default false
   */
  resume?: boolean;
}

/**
 * A run's journal in Redis: a LIST of chunks, each the JSON lines of one write. `append`
 * buffers; `flush()` sends what is buffered as one chunk, with the run's record brought up to
 * date in the same script, and resolves once Redis has both. Flushes that come while a write
 * is on its way share the next write (group commit), so a chunk holds every entry appended
 * meanwhile. Like FileJournal it also writes on its own: on the next turn of the event loop
 * and when 64 KB are pending.
 *
 * The record (see record.ts) follows every chunk: started at the `run` entry, carried on at
 * `resume`, ended at `end`, with the top-level steps as they end. Its `journalBytes` counts
 * the journal's chunks.
 */
export class RedisJournal implements RunJournal {
  readonly #redis: Redis;
  readonly #keys: RunKeys;
  readonly #runsKey: string;
  readonly #options: RedisJournalOptions;
  #pending = '';
  #ops: RecordEntry[] = [];
  #scheduled = false;
  /** The journal's length after our last write; undefined until the first write read it. */
  #length: number | undefined;
  #record: RunRecord | undefined;
  #inflight: Promise<void> | undefined;
  /** The write after the one in flight, shared by every flush() that comes meanwhile. */
  #next: Promise<void> | undefined;
  #failure: FerryError | undefined;
  #closed = false;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;

  constructor(
    backend: Backend,
    readonly runId: string,
    options: RedisJournalOptions = {},
  ) {
    this.#redis = backend.redis;
    this.#keys = runKeys(backend, runId);
    this.#runsKey = backend.key('runs');
    this.#options = options;
    this.#done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** The error that stopped this journal, if one did. */
  get failure(): FerryError | undefined {
    return this.#failure;
  }

  append(entry: JournalEntry): void {
    if (this.#failure || this.#closed) return;
    // The file journal's line format: fields at their defaults left out, and secrets redacted
    // in the values that come from outside ferry (never in a position or a time).
    this.#pending += journalLine(entry, this.#options.redactor);
    if (entry.t === 'run' || entry.t === 'resume' || entry.t === 'end' || (entry.t === 'step' && entry.item.length === 0)) this.#ops.push(entry);
    if (this.#pending.length >= FLUSH_BYTES) this.#flushQuietly();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#flushQuietly();
      });
    }
  }

  /**
   * Resolves once every entry appended before the call is in Redis; rejects with the failure
   * when Redis refused a write (then the call about to leave must not go out).
   */
  flush(): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#next) return this.#next;
    if (this.#inflight) {
      if (this.#pending === '') return this.#inflight;
      const after = (): Promise<void> => {
        this.#next = undefined;
        return this.flush();
      };
      this.#next = this.#inflight.then(after, after);
      return this.#next;
    }
    if (this.#pending === '') return Promise.resolve();
    const write: Promise<void> = this.#write().finally(() => {
      if (this.#inflight === write) this.#inflight = undefined;
    });
    this.#inflight = write;
    return write;
  }

  /** Writes what is left and takes no more entries; `closed()` resolves once that is in Redis. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.flush().then(this.#resolveDone, this.#resolveDone);
  }

  /** Resolves when the journal is closed and its last write ended (see `failure` for how). */
  closed(): Promise<void> {
    return this.#done;
  }

  #flushQuietly(): void {
    // A failure is reported through onFailure; the runtime's flush before the next call rejects with it.
    this.flush().catch(() => undefined);
  }

  async #write(): Promise<void> {
    // Taken at once: what is appended while this write is on its way goes into the next one.
    const text = this.#pending;
    const ops = this.#ops;
    this.#pending = '';
    this.#ops = [];
    const { redactor } = this.#options;
    try {
      if (this.#length === undefined) await this.#open();
      let start: Extract<JournalEntry, { t: 'run' }> | undefined;
      for (const op of ops) {
        if (op.t === 'run') start = op;
        this.#record = nextRecord(this.#record, op);
      }
      const head = this.#record ? recordHead(this.#record, redactor) : '';
      const score = start ? String(Date.parse(start.startedAt) || Date.now()) : '';
      const n = Number(await appendScript(this.#redis, [this.#keys.journal, this.#keys.record, this.#runsKey], [text, head, String(this.#length ?? -1), score, this.runId]));
      if (n === -1) throw new FerryError('FERRY_JOURNAL_WRITE', `the journal of run ${this.runId} in Redis grew under this process: another process took the run over; this one stopped before its next call`);
      if (n < 0) {
        throw new FerryError('FERRY_JOURNAL_WRITE', `the journal of run ${this.runId} in Redis lost entries it had (Redis restarted without its data?); the run stopped before its next call. Run Redis with persistence (appendonly yes), see docs/SCALING.md`);
      }
      this.#length = n;
      if (this.#record) this.#record.journalBytes = n;
    } catch (error) {
      throw this.#fail(error);
    }
  }

  /** Reads where the journal stands and the record to carry on, before the first write. */
  async #open(): Promise<void> {
    const [[, length], [, record]] = (await this.#redis.multi().llen(this.#keys.journal).get(this.#keys.record).exec()) as [[unknown, number], [unknown, string | null]];
    if (this.#options.resume && length === 0) {
      throw new FerryError('FERRY_JOURNAL_WRITE', `run ${this.runId} is not in the backend (its journal is empty), so it cannot be resumed there; start it again with ferry run`);
    }
    this.#length = length;
    if (record !== null) {
      const parsed = parseRecord(record, this.runId);
      if (parsed) this.#record = parsed;
    }
  }

  #fail(error: unknown): FerryError {
    if (!this.#failure) {
      this.#failure =
        error instanceof FerryError
          ? error
          : new FerryError('FERRY_JOURNAL_WRITE', `the journal of run ${this.runId} could not be written to Redis (${errorMessage(error)}); the run stopped before its next call. Make room in Redis (maxmemory, with maxmemory-policy noeviction), then ferry retry ${this.runId}`, { cause: error });
      this.#options.onFailure?.(this.#failure);
    }
    return this.#failure;
  }
}

/** The record after one of the entries it follows; undefined while there is none to carry on. */
function nextRecord(record: RunRecord | undefined, entry: RecordEntry): RunRecord | undefined {
  switch (entry.t) {
    case 'run':
      return startRecord(entry, 0);
    case 'resume':
      return record && resumeRecord(record, entry.pid, record.journalBytes);
    case 'end':
      return record && endRecord(record, entry, record.journalBytes);
    case 'step':
      if (record) record.steps[entry.id] = entry.status;
      return record;
  }
}

export function parseRecord(text: string, runId: string): RunRecord | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return isRecord(value) && value.runId === runId ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Chunks read at a time: a page holds at most 64 chunks of about 64 KB each. */
const PAGE_CHUNKS = 64;

/**
 * A run's journal read back from Redis a page of chunks at a time, never the whole list at
 * once. Lines that do not parse as entries are counted in `skipped`, as JournalReader does.
 */
export class ChunkReader {
  skipped = 0;
  /** Chunks read so far: the journal's length once the stream ended (its `journalBytes`). */
  chunks = 0;

  constructor(
    readonly redis: Redis,
    readonly key: string,
    readonly pageChunks = PAGE_CHUNKS,
  ) {}

  async *batches(): AsyncGenerator<JournalEntry[]> {
    for (let from = 0; ; from += this.pageChunks) {
      const page = await this.redis.lrange(this.key, from, from + this.pageChunks - 1);
      for (const chunk of page) {
        this.chunks++;
        const batch: JournalEntry[] = [];
        for (const line of chunk.split('\n')) {
          if (line === '') continue;
          let value: unknown;
          try {
            value = JSON.parse(line);
          } catch {
            this.skipped++;
            continue;
          }
          if (!addJournalEntries(value, batch)) this.skipped++;
        }
        if (batch.length > 0) yield batch;
      }
      if (page.length < this.pageChunks) return;
    }
  }
}
