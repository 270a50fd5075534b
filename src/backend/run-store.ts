import { createHash } from 'node:crypto';
import { UsageError } from '../errors.js';
import type { Redactor } from '../redact.js';
import type { JournalEntry } from '../store/journal.js';
import type { LockHolder } from '../store/lock.js';
import { isRunId } from '../store/paths.js';
import { startRecord, type RunHook } from '../store/record.js';
import { corruptProblem, foldEntries, recordListing, runListing, unfinished, type CorruptRun, type EntryVisitor, type LoadedRun, type RunFilter, type RunListing } from '../store/runs.js';
import { luaScript, type Backend } from './connection.js';
import { ChunkReader, parseRecord, recordHead, RedisJournal, runKeys, type RedisJournalOptions } from './run-journal.js';

export { ChunkReader, RedisJournal, type RedisJournalOptions } from './run-journal.js';

type RunEntry = Extract<JournalEntry, { t: 'run' }>;

/** The workflow a run runs: its file name and the YAML text (workers compile it). */
export interface RunWorkflow {
  file: string;
  source: string;
}

/** Who runs a run: one process of the pool. `id` tells two leases of one process apart. */
export interface LeaseOwner {
  pid: number;
  host: string;
  id: string;
}

/** A lease as Redis holds it: its owner and when it was taken (ISO time). */
export interface LeaseHolder extends LeaseOwner {
  at: string;
}

/** The lease this process holds on a run; it renews itself until released or lost. */
export interface RunLease {
  readonly holder: LeaseHolder;
  /** Aborts when a renewal finds the lease gone or someone else's: stop running the run. */
  readonly lost: AbortSignal;
  /** Gives the lease up if it is still ours; safe to call twice. */
  release(): Promise<void>;
}

/** Run ids listed, and their records read (MGET), at a time. */
const LIST_PAGE = 100;

/**
 * Creates a run, failing when it exists: first chunk, record, workflow and run list at once.
 * KEYS: journal, record, workflow, runs. ARGV: chunk, record head, file, source, score, runId.
 */
const CREATE = `#!lua
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local n = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2] .. n .. '}')
redis.call('HSET', KEYS[3], 'file', ARGV[3], 'source', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
return 1
`;

// No shebang: PEXPIRE and DEL are allowed when Redis is out of memory, so a lease still renews then.
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;
const renewScript = luaScript(RENEW);

/**
 * Runs kept in Redis (DESIGN.md §7, keys in backend.md): journal, record, workflow, run list
 * and owner lease, read back as the same LoadedRun / RunListing the state dir gives, so
 * `summarize`, `stateOf`, `recordOf` and `incompatibilities` work on either.
 */
export class RedisRunStore {
  constructor(readonly backend: Backend) {}

  /**
   * Records a new run: its `run` entry as the journal's first chunk, its record, its workflow
   * and its place in the run list, in one script. False when the run exists already.
   * Resolves once Redis has it (waiting through an outage).
   */
  async create(runId: string, workflow: RunWorkflow, start: RunEntry, redactor?: Redactor, hook?: RunHook): Promise<boolean> {
    if (!isRunId(runId)) throw new UsageError(`\`${runId}\` is not a run id (26 characters, as ferry makes them)`, 'FERRY_USAGE');
    const keys = runKeys(this.backend, runId);
    const line = `${JSON.stringify(start)}\n`;
    const chunk = redactor ? redactor.redactJsonLines(line) : line;
    const record = startRecord(hook ? { ...start, hook } as RunEntry : start, 0);
    const score = String(Date.parse(start.startedAt) || Date.now());
    const created = await this.backend.redis.eval(CREATE, 4, keys.journal, keys.record, keys.workflow, this.backend.key('runs'), chunk, recordHead(record, redactor), workflow.file, workflow.source, score, runId);
    return created === 1;
  }

  /** The run's journal, to append to (see RedisJournal). */
  journal(runId: string, options: RedisJournalOptions = {}): RedisJournal {
    return new RedisJournal(this.backend, runId, options);
  }

  /** Every entry of the run's journal, in order, read a page of chunks at a time. */
  async *entries(runId: string): AsyncGenerator<JournalEntry> {
    for await (const batch of new ChunkReader(this.backend.redis, runKeys(this.backend, runId).journal).batches()) yield* batch;
  }

  async exists(runId: string): Promise<boolean> {
    return (await this.backend.redis.exists(runKeys(this.backend, runId).journal)) === 1;
  }

  async load(runId: string, visit?: EntryVisitor): Promise<LoadedRun | undefined> {
    const run = await this.read(runId, visit);
    return run && 'corrupt' in run ? undefined : run;
  }

  /**
   * Reads one run like `readRun` reads a run folder: undefined when Redis holds nothing of it,
   * a CorruptRun when its journal is not a run. While it has no end, `lock` is its owner lease:
   * the holder while the lease exists, else 'stale' (its process died: a takeover is due).
   */
  async read(runId: string, visit?: EntryVisitor): Promise<LoadedRun | CorruptRun | undefined> {
    if (!isRunId(runId)) return undefined;
    const keys = runKeys(this.backend, runId);
    let reader = new ChunkReader(this.backend.redis, keys.journal);
    const { fold, entries } = await foldEntries(() => (reader = new ChunkReader(this.backend.redis, keys.journal)).batches(), visit);
    if (!fold) {
      if (reader.chunks === 0 && (await this.backend.redis.exists(keys.record, keys.workflow)) === 0) return undefined;
      return { runId, corrupt: corruptProblem(`the journal ${keys.journal}`, entries, reader.skipped) };
    }
    const end = fold.end;
    const lock = end ? 'none' : ((await this.#holder(runId)) ?? 'stale');
    return { runId, start: fold.start, end, skipped: reader.skipped, lock, fold, journalBytes: reader.chunks };
  }

  /**
   * Lists runs newest first, like `listRuns`, from their records: a page of ids from the run
   * list, then their records and leases in one MGET. A run without a readable record is read
   * from its journal.
   */
  async list(filter: RunFilter = {}): Promise<RunListing[]> {
    const { redis } = this.backend;
    const out: RunListing[] = [];
    if (filter.limit !== undefined && filter.limit <= 0) return out;
    for (let from = 0; ; from += LIST_PAGE) {
      const ids = await redis.zrevrange(this.backend.key('runs'), from, from + LIST_PAGE - 1);
      if (ids.length === 0) break;
      const values = await redis.mget(ids.flatMap((id) => [runKeys(this.backend, id).record, runKeys(this.backend, id).owner]));
      for (const [i, id] of ids.entries()) {
        const text = values[2 * i];
        const record = text ? parseRecord(text, id) : undefined;
        let listing: RunListing | undefined;
        if (record) {
          const owner = values[2 * i + 1];
          const holder = owner ? lockOf(parseHolder(owner)) : 'stale';
          listing = recordListing(record, record.status === 'running' ? unfinished(holder, record.pid) : record.status);
        } else {
          const run = await this.read(id);
          listing = run && runListing(run);
        }
        if (!listing) continue;
        if (filter.status !== undefined && listing.status !== filter.status) continue;
        if (filter.workflow !== undefined && listing.workflow !== filter.workflow) continue;
        out.push(listing);
        if (filter.limit !== undefined && out.length >= filter.limit) return out;
      }
      if (ids.length < LIST_PAGE) break;
    }
    return out;
  }

  async workflow(runId: string): Promise<RunWorkflow | undefined> {
    const found = await this.backend.redis.hgetall(runKeys(this.backend, runId).workflow);
    return typeof found.file === 'string' && typeof found.source === 'string' ? { file: found.file, source: found.source } : undefined;
  }

  /** Replaces the workflow a run runs (`ferry retry` takes the file as it is on disk now). */
  async setWorkflow(runId: string, workflow: RunWorkflow): Promise<void> {
    await this.backend.redis.hset(runKeys(this.backend, runId).workflow, { file: workflow.file, source: workflow.source });
  }

  /**
   * Takes the run's owner lease for `ttlMs` (SET NX PX), or returns who holds it. A taken
   * lease renews itself every ttl/3; when its process dies it expires within `ttlMs`, and
   * another process may take the run over.
   */
  async lease(runId: string, owner: LeaseOwner, ttlMs: number): Promise<RunLease | LeaseHolder> {
    if (!Number.isInteger(ttlMs) || ttlMs < 3) throw new TypeError(`Expected \`ttlMs\` to be an integer of 3 or more, got \`${ttlMs}\``);
    const key = runKeys(this.backend, runId).owner;
    const holder: LeaseHolder = { pid: owner.pid, host: owner.host, id: owner.id, at: new Date().toISOString() };
    const text = JSON.stringify(holder);
    for (;;) {
      if ((await this.backend.redis.set(key, text, 'PX', ttlMs, 'NX')) === 'OK') return new Lease(this.backend, key, holder, text, ttlMs);
      const current = await this.backend.redis.get(key);
      // Gone between the two commands (expired or released): try to take it again.
      if (current !== null) return parseHolder(current);
    }
  }

  /** The live holder of the run's lease, if any. */
  async leaseHolder(runId: string): Promise<LeaseHolder | undefined> {
    const current = await this.backend.redis.get(runKeys(this.backend, runId).owner);
    return current === null ? undefined : parseHolder(current);
  }

  async #holder(runId: string): Promise<LockHolder | undefined> {
    const holder = await this.leaseHolder(runId);
    return holder && lockOf(holder);
  }

  /**
   * Claims a delivery key (a webhook delivery id, a schedule tick) for `runId` for
   * `ttlSeconds`, or returns the run that claimed it first. The key is hashed: what a
   * sender chose never becomes a Redis key.
   */
  async dedupe(key: string, runId: string, ttlSeconds: number): Promise<string> {
    const redisKey = this.backend.key('delivery', createHash('sha256').update(key).digest('hex'));
    const before = await this.backend.redis.call('SET', redisKey, runId, 'NX', 'EX', String(Math.max(1, Math.ceil(ttlSeconds))), 'GET');
    return typeof before === 'string' ? before : runId;
  }

  /** The run a workflow's schedule started last (`ferry:schedule:<workflow>:last`), if any. */
  async lastScheduled(workflow: string): Promise<string | undefined> {
    return (await this.backend.redis.get(this.backend.key('schedule', workflow, 'last'))) ?? undefined;
  }

  /** Names `runId` as the workflow's latest scheduled run: the pool skips ticks while it runs. */
  async setLastScheduled(workflow: string, runId: string): Promise<void> {
    await this.backend.redis.set(this.backend.key('schedule', workflow, 'last'), runId);
  }

  /** Gives up a claim `dedupe` made for `runId` (its run could not be recorded); another run's claim stays. */
  async forget(key: string, runId: string): Promise<void> {
    const redisKey = this.backend.key('delivery', createHash('sha256').update(key).digest('hex'));
    await this.backend.redis.eval(DELETE_IF, 1, redisKey, runId);
  }
}

/** Deletes KEYS[1] only when it holds ARGV[1]. */
const DELETE_IF = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

function parseHolder(text: string): LeaseHolder {
  try {
    const v = JSON.parse(text) as Partial<LeaseHolder> | null;
    if (v && typeof v.pid === 'number' && typeof v.host === 'string' && typeof v.id === 'string') return { pid: v.pid, host: v.host, id: v.id, at: typeof v.at === 'string' ? v.at : '' };
  } catch {
    // falls through: a lease someone wrote by hand is still a lease
  }
  return { pid: 0, host: '?', id: text.slice(0, 64), at: '' };
}

/** A lease as the run's lock (`stateOf` says running while it exists). */
function lockOf(holder: LeaseHolder): LockHolder {
  return { pid: holder.pid, host: holder.host, startedAt: holder.at, token: holder.id, lease: true };
}

class Lease implements RunLease {
  readonly #controller = new AbortController();
  readonly #backend: Backend;
  readonly #key: string;
  readonly #value: string;
  readonly #ttlMs: number;
  #timer: NodeJS.Timeout | undefined;
  #released = false;

  constructor(
    backend: Backend,
    key: string,
    readonly holder: LeaseHolder,
    value: string,
    ttlMs: number,
  ) {
    this.#backend = backend;
    this.#key = key;
    this.#value = value;
    this.#ttlMs = ttlMs;
    this.#schedule();
  }

  get lost(): AbortSignal {
    return this.#controller.signal;
  }

  // One renewal at a time, the next timed from the end of the last: a renewal waiting
  // through an outage does not pile up more behind it.
  #schedule(): void {
    this.#timer = setTimeout(() => void this.#renew(), Math.max(1, Math.floor(this.#ttlMs / 3)));
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    if (this.#released) return;
    let kept: unknown;
    try {
      kept = await renewScript(this.#backend.redis, [this.#key], [this.#value, String(this.#ttlMs)]);
    } catch {
      // A refused command (not an outage, which waits): try again at the next turn.
      kept = 1;
    }
    if (this.#released) return;
    if (kept === 1) this.#schedule();
    else this.#controller.abort(new UsageError(`the lease on ${this.#key} was lost: it expired or another process holds it`, 'FERRY_RUN_BUSY'));
  }

  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    clearTimeout(this.#timer);
    await this.#backend.redis.eval(RELEASE, 1, this.#key, this.#value);
  }
}
