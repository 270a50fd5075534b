import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Dispatcher } from 'undici';
import { FerryError, ProviderError } from '../errors.js';
import { scopeKey, type Account, type QueueLimits } from '../engine/queue.js';
import { parseRetryAfter } from '../providers/http.js';
import { Redactor } from '../redact.js';
import { basicForms, callRequest, exchange, fromJob, jobError, queuedDispatcher, redactResult, startHandler, toJob, type CallJob, type CallResult, type CallWaiter } from './call-http.js';
import { NON_BINDING, PAUSED, PAUSE_SCRIPT, rateWindow, sameLimits, strictestOf } from './account-limits.js';
import type { Backend } from './connection.js';
import { SecretStripper, fillSecrets } from './secrets.js';

/** An account's call queue as the registry (`ferry:accounts`) names it. */
export interface PoolAccount {
  /** `ferry-call-<16 hex of sha256(scopeKey(account))>` */
  queue: string;
  provider: string;
  /** Base URL or region: shown, never a credential. */
  label: string;
}

export interface CallPoolOptions {
  /** This process's environment: the worker side fills the secrets of the calls it sends from it. */
  env: Record<string, string | undefined>;
  /** The dispatcher that really sends (an undici Agent); the pool does not close it. */
  local: Dispatcher;
  /** Calls of one account this process sends at once, at most. @default 32 */
  concurrency?: number;
  /** How long a worker's hold on a call lasts without renewal: a dead worker's calls run again after about this. @default 5000 */
  lockDurationMs?: number;
  /** How often the run side asks Redis for calls whose end it has not heard of (a lost event). @default 3000 */
  checkIntervalMs?: number;
  /**
   * How long this process counts as waiting for its calls after it last said so (it says so
   * every third of this): a worker sends no call whose process is gone (killed, its run taken
   * over by another process, which sends the item itself). Shorter than the workers'
   * `lockDurationMs`, so that the calls a killed process was sending itself, which BullMQ runs
   * again once their hold ends, find it gone. @default 3000
   */
  aliveMs?: number;
  /** The longest pause a Retry-After sets for the whole pool. @default 900000 (15 min, the default `max_wait`) */
  maxPauseMs?: number;
}

/** The queue of an account's calls. */
export function callQueueName(account: Account): string {
  return queueOf(scopeKey(account));
}

/** The queue of the account whose limit scope is `scope` (scopeKey): what a pause of that scope pauses. */
export function queueOf(scope: string): string {
  return `ferry-call-${createHash('sha256').update(scope).digest('hex').slice(0, 16)}`;
}

const DAY_MS = 24 * 3600 * 1000;
const JOB_AGE_S = 60;
/** BullMQ's event stream of a call queue: answers travel by reply lists, so nobody reads it; kept short. */
const EVENTS_MAX_LEN = 100;
/** A process's reply list outlives a dead process by this much, then Redis drops it. */
const REPLY_TTL_MS = 3600_000;
/** Replies taken from the list at once after a blocking wait. */
const REPLIES_AT_ONCE = 1000;

interface Waiting extends CallWaiter {
  since: number;
  checking: boolean;
}

/** The run side of one account in this process: its queue and the calls waited for. */
interface RunSide {
  queue: Queue<CallJob, CallResult>;
  waiting: Map<string, Waiting>;
  adds: { id: string; data: CallJob }[];
  provider: string;
}

interface Registration {
  account: PoolAccount;
  limits: Map<string, QueueLimits>;
  writtenAt: number;
}

/**
 * Provider calls as BullMQ jobs (DESIGN.md §7), one queue per provider account, with the
 * account's concurrency, rate and Retry-After pauses held across every process of the pool.
 * The run side queues each request without its secrets and waits for its answer; the worker
 * side (`work()`) sends the calls of every registered account with its own secrets.
 */
export class CallPool {
  readonly #backend: Backend;
  readonly #env: Record<string, string | undefined>;
  readonly #local: Dispatcher;
  readonly #concurrency: number;
  readonly #lockDurationMs: number;
  readonly #checkIntervalMs: number;
  readonly #maxPauseMs: number;
  readonly #aliveMs: number;
  readonly #queues = new Map<string, Queue<CallJob, CallResult>>();
  readonly #runSides = new Map<string, Promise<RunSide>>();
  readonly #registrations = new Map<string, Registration>();
  readonly #workers = new Map<string, Worker<CallJob, CallResult>>();
  #subscriber: ReturnType<Backend['connection']> | undefined;
  /**
   * Where workers push the answers of this process's calls: one list per process, read by one
   * blocking connection. A process reads its own answers only, however many processes and
   * accounts the pool has.
   */
  readonly #replyKey: string;
  #replies: ReturnType<Backend['connection']> | undefined;
  /** The run side each waited-for call belongs to, by job id. */
  readonly #sideOf = new Map<string, RunSide>();
  /** Answers this process's workers will push, by reply list: one pipeline per tick for all of them. */
  readonly #outbox = new Map<string, string[]>();
  #timers: NodeJS.Timeout[] = [];
  #closed = false;
  /** This process said it waits for its calls (the first time: see `aliveMs`). */
  #alive: Promise<void> | undefined;

  constructor(backend: Backend, options: CallPoolOptions) {
    this.#backend = backend;
    this.#env = options.env;
    this.#local = options.local;
    this.#concurrency = positive('concurrency', options.concurrency ?? 32);
    this.#lockDurationMs = positive('lockDurationMs', options.lockDurationMs ?? 5000);
    this.#checkIntervalMs = positive('checkIntervalMs', options.checkIntervalMs ?? 3000);
    this.#maxPauseMs = positive('maxPauseMs', options.maxPauseMs ?? 900_000);
    this.#aliveMs = positive('aliveMs', options.aliveMs ?? 3000);
    this.#replyKey = backend.key('reply', randomUUID());
  }

  get #accountsKey(): string {
    return this.#backend.key('accounts');
  }

  #queue(name: string): Queue<CallJob, CallResult> {
    let queue = this.#queues.get(name);
    if (!queue) {
      queue = new Queue<CallJob, CallResult>(name, {
        ...this.#backend.bullmq,
        streams: { events: { maxLen: EVENTS_MAX_LEN } },
        // One job is one attempt: the engine decides about retries (engine/retry.ts).
        defaultJobOptions: { attempts: 1, removeOnComplete: { age: JOB_AGE_S }, removeOnFail: { age: JOB_AGE_S }, stackTraceLimit: 0 },
      });
      queue.on('error', () => undefined);
      this.#queues.set(name, queue);
    }
    return queue;
  }

  /**
   * The run side: a Dispatcher that queues each request on the account's queue and feeds the
   * job's answer to the handler. Registers the account and this workflow's limits first (the
   * stricter of all workflows naming the account holds for all).
   */
  async dispatcher(account: Account, limits: QueueLimits, workflow: string, secrets: Record<string, string>): Promise<Dispatcher> {
    if (this.#closed) throw new FerryError('FERRY_ABORTED', 'the call pool is closed');
    const name = callQueueName(account);
    const side = await this.#runSide(name, account.provider);
    await this.#register({ queue: name, provider: account.provider, label: account.baseUrl ?? '' }, limits, workflow);
    const stripper = new SecretStripper(secrets);
    const redactor = new Redactor();
    for (const value of Object.values(secrets)) redactor.add(value);
    const local = this.#local;
    return queuedDispatcher((opts, handler) => {
      const request = callRequest(opts);
      const stripped = request && !SecretStripper.holdsMarker(request) ? stripper.strip(request) : undefined;
      const data = stripped && stripper.left(stripped.request).length === 0 ? { ...toJob(account.provider, stripped.request, stripped.names, opts), reply: this.#replyKey } : undefined;
      // Something of a secret would be left in Redis (an encoding ferry cannot take out): this
      // process sends it itself, outside the pool's limits, rather than queue it.
      const text = data === undefined ? '' : JSON.stringify(data);
      if (data === undefined || redactor.redact(text) !== text) return local.dispatch(opts, handler);
      this.#enqueue(side, data, handler);
      return true;
    });
  }

  #enqueue(side: RunSide, data: CallJob, handler: Dispatcher.DispatchHandler): void {
    // The id is ours, known before the job exists: its finished event cannot come unheard.
    const id = randomUUID();
    const entry = { id, data };
    const waiter = startHandler(handler, () => {
      side.waiting.delete(id);
      this.#sideOf.delete(id);
      const at = side.adds.indexOf(entry);
      if (at >= 0) side.adds.splice(at, 1);
      // Not sent yet: taken back. Already taken by a worker: it runs, and nobody reads its answer.
      else void side.queue.remove(id).catch(() => undefined);
    });
    side.waiting.set(id, { ...waiter, since: Date.now(), checking: false });
    this.#sideOf.set(id, side);
    side.adds.push(entry);
    // The calls of one tick go to Redis in one addBulk.
    if (side.adds.length === 1) setImmediate(() => this.#flush(side));
  }

  #flush(side: RunSide): void {
    const adds = side.adds.splice(0);
    if (adds.length === 0) return;
    side.queue.addBulk(adds.map(({ id, data }) => ({ name: 'call', data, opts: { jobId: id } }))).catch((error: unknown) => {
      for (const { id } of adds) this.#settle(side, id, { error: error instanceof Error ? error : new Error(String(error)) });
    });
  }

  #settle(side: RunSide, id: string, outcome: { result: CallResult } | { error: Error }): void {
    const waiter = side.waiting.get(id);
    if (!waiter) return;
    side.waiting.delete(id);
    this.#sideOf.delete(id);
    if ('result' in outcome) waiter.answer(outcome.result);
    else waiter.fail(outcome.error);
  }

  #runSide(name: string, provider: string): Promise<RunSide> {
    let side = this.#runSides.get(name);
    if (!side) {
      if (this.#runSides.size === 0) {
        this.#every(this.#checkIntervalMs, () => this.#check());
        this.#every(Math.max(1, Math.floor(this.#aliveMs / 3)), () => this.#sayAlive());
      }
      // Said before the first call is queued: a worker may take it at once.
      this.#alive ??= this.#sayAlive().catch(() => undefined);
      this.#readReplies();
      const queue = this.#queue(name);
      side = this.#alive.then(() => ({ queue, waiting: new Map(), adds: [], provider }));
      this.#runSides.set(name, side);
    }
    return side;
  }

  /**
   * Reads this process's reply list until the pool closes: a blocking pop for the first
   * answer, then the rest that waited with it in one LPOP. Each answer settles its call.
   */
  #readReplies(): void {
    if (this.#replies) return;
    const reader = this.#backend.connection();
    this.#replies = reader;
    void (async () => {
      while (!this.#closed) {
        let first: [string, string] | null;
        try {
          first = await reader.blpop(this.#replyKey, 1);
        } catch {
          if (this.#closed) return;
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        if (first === null) continue;
        const more = (await reader.lpop(this.#replyKey, REPLIES_AT_ONCE).catch(() => null)) ?? [];
        for (const text of [first[1], ...more]) this.#reply(text);
      }
    })();
  }

  #reply(text: string): void {
    let reply: { id: string; result?: CallResult; failed?: string };
    try {
      reply = JSON.parse(text) as typeof reply;
    } catch {
      return;
    }
    const side = this.#sideOf.get(reply.id);
    if (!side) return;
    if (reply.result !== undefined) this.#settle(side, reply.id, { result: reply.result });
    else this.#settle(side, reply.id, { error: jobError(side.provider, reply.failed ?? 'the call failed') });
  }

  /**
   * Asks Redis for the state of calls waited for longer than the check interval: an event lost
   * in a Redis outage (or a job Redis lost) never leaves a call hanging. Also writes the
   * registrations again when Redis lost them, and every hour (the limits expire after a day).
   */
  async #check(): Promise<void> {
    const now = Date.now();
    for (const pending of this.#runSides.values()) {
      const side = await pending;
      for (const [id, waiter] of side.waiting) {
        if (waiter.checking || now - waiter.since < this.#checkIntervalMs || side.adds.some((a) => a.id === id)) continue;
        waiter.checking = true;
        // A check that fails (Redis away) is tried again at the next interval.
        void this.#checkJob(side, id)
          .catch(() => undefined)
          .finally(() => {
            waiter.checking = false;
          });
      }
    }
    for (const registration of this.#registrations.values()) {
      const { queue } = registration.account;
      const known = await this.#backend.redis.hexists(this.#accountsKey, queue);
      if (known === 0 || now - registration.writtenAt > 3600_000) await this.#apply(registration);
    }
  }

  /** Tells the workers this process still waits for the calls it queued (see `aliveMs`). */
  async #sayAlive(): Promise<void> {
    await this.#backend.redis.set(aliveKeyOf(this.#replyKey), '1', 'PX', this.#aliveMs);
  }

  async #checkJob(side: RunSide, id: string): Promise<void> {
    const state = await side.queue.getJobState(id);
    if (state === 'completed' || state === 'failed') {
      const job = await side.queue.getJob(id);
      if (!job) return;
      if (state === 'completed') this.#settle(side, id, { result: job.returnvalue as CallResult });
      else this.#settle(side, id, { error: jobError(side.provider, job.failedReason) });
    } else if (state === 'unknown') {
      const lost = Object.assign(new Error(`the queued call is gone from the backend (Redis lost it): it is sent again if the workflow's retry allows`), { code: 'FERRY_BACKEND_CALL_LOST' });
      this.#settle(side, id, { error: lost });
    }
  }

  async #register(account: PoolAccount, limits: QueueLimits, workflow: string): Promise<void> {
    let registration = this.#registrations.get(account.queue);
    if (!registration) {
      registration = { account, limits: new Map(), writtenAt: 0 };
      this.#registrations.set(account.queue, registration);
    }
    registration.limits.set(workflow, limits);
    await this.#apply(registration);
  }

  /**
   * Writes this process's limits of an account, then applies the strictest of every
   * workflow's: read, apply, read again until what was applied is what is stored (two
   * processes registering at once both end on the strictest).
   */
  async #apply(registration: Registration): Promise<void> {
    const { redis } = this.#backend;
    const { account } = registration;
    const key = this.#backend.key('account', account.queue, 'limits');
    const write = redis.multi();
    for (const [workflow, limits] of registration.limits) write.hset(key, workflow, JSON.stringify(limits));
    await write.pexpire(key, DAY_MS).exec();
    registration.writtenAt = Date.now();
    const queue = this.#queue(account.queue);
    let applied: QueueLimits | undefined;
    for (;;) {
      const strictest = strictestOf(Object.values(await redis.hgetall(key)));
      if (applied && sameLimits(applied, strictest)) break;
      const window = rateWindow(strictest.rate);
      await queue.setGlobalConcurrency(strictest.concurrency);
      await queue.setGlobalRateLimit(window.max, window.duration);
      await redis.hset(this.#accountsKey, account.queue, JSON.stringify({ provider: account.provider, label: account.label, limits: strictest }));
      applied = strictest;
    }
    await redis.publish(this.#accountsKey, account.queue);
  }

  /** Pauses the account in every process for `ms`, unless a longer pause runs: a shorter one never shortens it. */
  async pause(account: Account | string, ms: number): Promise<void> {
    if (!(ms > 0)) return;
    const queue = this.#queue(typeof account === 'string' ? account : callQueueName(account));
    await this.#backend.redis.eval(PAUSE_SCRIPT, 2, queue.keys.limiter as string, queue.keys.meta as string, String(Math.ceil(ms)), PAUSED, String(NON_BINDING));
  }

  /**
   * The worker side: from now on this process sends the calls of every registered account,
   * and of accounts registered later (told on the registration channel, and read again every 5 s).
   */
  async work(): Promise<void> {
    if (this.#subscriber || this.#closed) return;
    const subscriber = this.#backend.connection();
    this.#subscriber = subscriber;
    subscriber.on('message', (_channel: string, queue: string) => this.#startWorker(queue));
    await subscriber.subscribe(this.#accountsKey);
    const refresh = async (): Promise<void> => {
      for (const queue of await this.#backend.redis.hkeys(this.#accountsKey)) this.#startWorker(queue);
    };
    await refresh();
    this.#every(5000, refresh);
  }

  #startWorker(queue: string): void {
    if (this.#closed || this.#workers.has(queue) || !/^ferry-call-[0-9a-f]{16}$/.test(queue)) return;
    const worker = new Worker<CallJob, CallResult>(queue, (job) => this.#process(job), {
      ...this.#backend.bullmq,
      concurrency: this.#concurrency,
      lockDuration: this.#lockDurationMs,
      stalledInterval: this.#lockDurationMs,
      maxStalledCount: 1,
      // After a failed Redis command (a dropped connection), try again in a second, not BullMQ's 15.
      runRetryDelay: 1000,
      name: `${hostname()}:${process.pid}`,
    });
    worker.on('error', () => undefined);
    this.#workers.set(queue, worker);
  }

  async #process(job: Job<CallJob, CallResult>): Promise<CallResult> {
    // A call whose process is gone is not sent: nobody waits for its answer, and the process
    // that takes its run over sends the item itself (the same idempotency key; a plain
    // http.request would go twice). Such a call is left by a killed process, run again here.
    const reply = job.data.reply;
    if (reply !== undefined && (await this.#backend.redis.exists(aliveKeyOf(reply))) === 0) {
      throw new UnrecoverableError('FERRY_BACKEND_CALL_ABANDONED the process that queued this call is gone: not sent');
    }
    try {
      const result = await this.#send(job);
      this.#replyTo(job, { id: job.id, result });
      return result;
    } catch (error) {
      this.#replyTo(job, { id: job.id, failed: error instanceof Error ? error.message : String(error) });
      throw error;
    }
  }

  /**
   * Pushes the answer to the queuing process's reply list, with the others of this tick in one
   * pipeline. Not waited for: the job keeps the answer too, and the queuing process's state
   * check finds it there when a push is lost.
   */
  #replyTo(job: Job<CallJob, CallResult>, reply: { id: string | undefined; result?: CallResult; failed?: string }): void {
    const key = job.data.reply;
    if (key === undefined || reply.id === undefined) return;
    const queued = this.#outbox.get(key);
    if (queued) {
      queued.push(JSON.stringify(reply));
      return;
    }
    this.#outbox.set(key, [JSON.stringify(reply)]);
    if (this.#outbox.size > 1) return;
    setImmediate(() => {
      const pipeline = this.#backend.redis.pipeline();
      for (const [list, replies] of this.#outbox) pipeline.rpush(list, ...replies).pexpire(list, REPLY_TTL_MS);
      this.#outbox.clear();
      pipeline.exec().catch(() => undefined);
    });
  }

  async #send(job: Job<CallJob, CallResult>): Promise<CallResult> {
    const data = job.data;
    let request;
    try {
      request = fillSecrets(fromJob(data), this.#env);
    } catch (error) {
      // Failed, not retried in the queue: the code first, so the run side can tell it.
      if (error instanceof FerryError) throw new UnrecoverableError(`${error.code} ${error.message}`);
      throw error;
    }
    const result = await exchange(this.#local, request, data);
    if ('status' in result && result.status === 429) {
      const value = result.headers['retry-after'];
      const waitMs = parseRetryAfter(Array.isArray(value) ? value[0] : value);
      // The whole pool stops sending to the account before the engine even hears of the 429.
      if (waitMs !== undefined && waitMs > 0) await this.pause(job.queueName, Math.min(waitMs, this.#maxPauseMs));
    }
    // What the answer may echo: the values filled in, and the Basic headers as they were sent.
    const sent = [...data.secrets.map((name) => this.#env[name] ?? ''), ...(data.basic ?? []).flatMap((name) => basicForms(request.headers, name))];
    return redactResult(result, sent);
  }

  #every(ms: number, task: () => Promise<void>): void {
    // One at a time: while Redis is away a task waits for it, and the next ones must not pile up.
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      void task()
        .catch(() => undefined)
        .finally(() => {
          running = false;
        });
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }

  /** Drains: stops taking calls, lets active ones finish, closes what the pool opened. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#timers) clearInterval(timer);
    // Nobody waits for this process's calls from here on (its runs go to other processes, which
    // send their items themselves): those no worker has started are taken back, and a worker
    // that takes one anyway finds this process gone and does not send it.
    await this.#backend.redis.del(aliveKeyOf(this.#replyKey)).catch(() => undefined);
    for (const pending of this.#runSides.values()) {
      const side = await pending;
      for (const id of side.waiting.keys()) void side.queue.remove(id).catch(() => undefined);
    }
    await Promise.all([...this.#workers.values()].map((w) => w.close()));
    await this.#subscriber?.quit().catch(() => undefined);
    for (const pending of this.#runSides.values()) {
      const side = await pending;
      for (const id of [...side.waiting.keys()]) this.#settle(side, id, { error: new ProviderError(side.provider, 'not waited for: the process is closing', { code: 'FERRY_ABORTED' }) });
    }
    // Its blocking read ends with the connection.
    this.#replies?.disconnect();
    await this.#backend.redis.del(this.#replyKey, aliveKeyOf(this.#replyKey)).catch(() => undefined);
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
  }
}

/** Where a process says it still waits for the answers on its reply list. */
function aliveKeyOf(replyKey: string): string {
  return `${replyKey}:alive`;
}

function positive(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`Expected \`${name}\` to be a positive integer, got \`${value}\``);
  return value;
}
