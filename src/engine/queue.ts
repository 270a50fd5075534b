import PQueue from 'p-queue';
import { ProviderError } from '../errors.js';
import { MAX_TIMER_MS, sleep } from './timers.js';

export interface QueueLimits {
  /** Requests in flight at once. */
  concurrency: number;
  /** At most `limit` requests start per `intervalMs`. */
  rate?: { limit: number; intervalMs: number } | undefined;
}

interface Waiting {
  reject(error: unknown): void;
  abandoned: boolean;
}

/**
 * A provider account: what one limit scope (queue, rate, Retry-After pause) covers. Two
 * Amplitude projects are two accounts; two workflows naming the same key share one.
 */
export interface Account {
  /** The provider as workflows name it: `amplitude`. */
  provider: string;
  /** The rendered `base_url`, else the region, else ''. Shown in pause messages. @default '' */
  baseUrl?: string;
  /**
   * sha256 (hex) of the rendered account fields (`accountFields`, else `secretFields`), never the
   * credentials themselves: a scope's key may be logged. @default ''
   */
  credentialHash?: string;
}

/** The key of an account's scope: readable, and free of secrets (the credential is a hash). */
export function scopeKey(account: Account): string {
  return `${account.provider} ${account.baseUrl || '-'} ${account.credentialHash?.slice(0, 16) || '-'}`;
}

export interface PauseEvent {
  provider: string;
  /** The account's base URL or region ('' for the provider's default hosts); never its credential. */
  account: string;
  /** The scope's key (scopeKey): tells two accounts of one provider apart. */
  scope: string;
  waitMs: number;
  reason: string;
}

interface QueueHooks {
  onPause?: ((event: PauseEvent) => void) | undefined;
  /**
   * Runs right before each call leaves, with the calling run's stop signal (the runtime writes
   * its journals there); a throw, or the signal aborting in it, keeps the call from going out.
   */
  beforeCall?: ((signal: AbortSignal | undefined) => void | Promise<void>) | undefined;
}

/**
 * One provider account's queue: concurrency, rate, and whole-queue pauses. A pause
 * (Retry-After, Amplitude's throttling answer) stops every request to the account from
 * leaving until it ends; calls already on the wire finish normally.
 */
export class ProviderQueue {
  readonly provider: string;
  /** Base URL or region of the account, as pause messages show it. */
  readonly account: string;
  readonly scope: string;
  /**
   * The p-queues of this scope, oldest first: calls go into the last; only the first runs.
   * There is more than one only while calls queued before a stricter rate came still wait.
   */
  readonly #queues: PQueue[];
  #rate: QueueLimits['rate'];
  #resumeAt = 0;
  /** Ends the current pause; ref'd while calls wait in the paused queue. */
  #timer: NodeJS.Timeout | undefined;
  readonly #onPause: ((event: PauseEvent) => void) | undefined;
  readonly #beforeCall: ((signal: AbortSignal | undefined) => void | Promise<void>) | undefined;
  /** Calls waiting to start, by their run's stop signal. */
  readonly #waiting = new Map<AbortSignal, { calls: Set<Waiting>; stop: () => void }>();
  /** Calls whose run stopped while they waited: still in the p-queue, as no-ops. */
  #abandoned = 0;

  constructor(account: Account | string, limits: QueueLimits, hooks: QueueHooks = {}) {
    checkLimits(limits);
    const named = typeof account === 'string' ? { provider: account } : account;
    this.provider = named.provider;
    this.account = named.baseUrl ?? '';
    this.scope = scopeKey(named);
    this.#onPause = hooks.onPause;
    this.#beforeCall = hooks.beforeCall;
    this.#rate = limits.rate;
    this.#queues = [newQueue(limits.concurrency, limits.rate)];
  }

  /** Where calls are added. */
  get #queue(): PQueue {
    return this.#queues[this.#queues.length - 1] as PQueue;
  }

  /** The queue whose calls may start (a pause stops it). */
  get #head(): PQueue {
    return this.#queues[0] as PQueue;
  }

  /**
   * Lowers this scope's limits to `limits` where they are stricter (two workflows naming the
   * same account both get the stricter value); limits never loosen again while the runtime
   * lives. Concurrency drops at once (calls on the wire finish). p-queue fixes a rate when the
   * queue is made, so a stricter rate gets a new queue, which starts once the old one is idle:
   * calls that already waited in the old queue leave first, in order and at the lowered
   * concurrency, but at the old rate; every call added from now on keeps the new rate. A
   * server declares its workflows' accounts before its first run (Ferry.declare), so that
   * there the strictest rate holds from the first call.
   */
  tighten(limits: QueueLimits): void {
    checkLimits(limits);
    if (limits.concurrency < this.#queue.concurrency) for (const queue of this.#queues) queue.concurrency = limits.concurrency;
    if (!stricterRate(limits.rate, this.#rate)) return;
    this.#rate = limits.rate;
    const next = newQueue(this.#queue.concurrency, limits.rate);
    // Held until the queues before it are done: together they never exceed the concurrency.
    next.pause();
    this.#queues.push(next);
    this.#advance();
  }

  /** Drops idle queues at the front of the chain and lets the next one run (unless paused). */
  #advance(): void {
    while (this.#queues.length > 1 && this.#head.size === 0 && this.#head.pending === 0) this.#queues.shift();
    if (this.#resumeAt === 0) this.#head.start();
    if (this.#queues.length > 1) {
      const head = this.#head;
      void head.onIdle().then(() => {
        if (this.#head === head) this.#advance();
      });
    }
  }

  /** The requests-per-interval limit in force, if any. */
  get rate(): QueueLimits['rate'] {
    return this.#rate;
  }

  /**
   * Runs `fn` when a slot is free and the account is not paused; `beforeCall` runs first (the
   * runtime writes its journals there). When `signal` aborts while the call still waits, the
   * call rejects at once with FERRY_ABORTED and is never sent; once started, it runs to its
   * end (its timeout bounds it).
   */
  add<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.#resumeIfDue();
    // Work waiting in a paused queue keeps the process alive until the pause ends.
    if (this.#resumeAt !== 0) this.#timer?.ref();
    if (!signal) {
      return new Promise<T>((resolve, reject) => {
        this.#enqueue(async () => {
          const written = this.#beforeCall?.(undefined);
          if (written) await written;
          return fn();
        }, resolve, reject);
      });
    }
    if (signal.aborted) return Promise.reject(this.#notSent());
    // Not p-queue's `signal` option: it also races a started call, and costs an AbortController
    // and listeners per call. An abandoned call stays queued as a no-op until the queue runs.
    return new Promise<T>((resolve, reject) => {
      const call: Waiting = { reject, abandoned: false };
      this.#watch(signal, call);
      this.#enqueue(
        async () => {
          if (call.abandoned) {
            this.#abandoned--;
            return undefined as T;
          }
          this.#unwatch(signal, call);
          const written = this.#beforeCall?.(signal);
          if (written) await written;
          // Writing the run's journal failed (a full disk) and stopped the run: nothing leaves unrecorded.
          if (signal.aborted) throw this.#notSent();
          return fn();
        },
        // An abandoned call was rejected when its run stopped; settling it again does nothing.
        resolve,
        reject,
      );
    });
  }

  /** Queues `task` on the current queue; its caller is settled by the task, never by p-queue. */
  #enqueue<T>(task: () => Promise<T>, resolve: (value: T) => void, reject: (error: unknown) => void): void {
    void this.#queue.add(async () => {
      await task().then(resolve, reject);
    });
  }

  // One listener per run's signal, not per call: an AbortSignal's listeners are a list, and a
  // loop keeps thousands of calls waiting here.
  #watch(signal: AbortSignal, call: Waiting): void {
    let watched = this.#waiting.get(signal);
    if (!watched) {
      const calls = new Set<Waiting>();
      const stop = (): void => {
        this.#waiting.delete(signal);
        for (const c of calls) {
          c.abandoned = true;
          this.#abandoned++;
          c.reject(this.#notSent());
        }
        // Nothing of this run waits any more: the pause no longer holds the process (another
        // run's calls still waiting keep it held).
        if (!this.#callsWaiting) this.#timer?.unref();
      };
      watched = { calls, stop };
      this.#waiting.set(signal, watched);
      signal.addEventListener('abort', stop, { once: true });
    }
    watched.calls.add(call);
  }

  #unwatch(signal: AbortSignal, call: Waiting): void {
    const watched = this.#waiting.get(signal);
    if (!watched?.calls.delete(call) || watched.calls.size > 0) return;
    this.#waiting.delete(signal);
    signal.removeEventListener('abort', watched.stop);
  }

  /** Calls in the queue that will be sent (abandoned ones wait there as no-ops). */
  get #callsWaiting(): boolean {
    let size = 0;
    for (const queue of this.#queues) size += queue.size;
    return size > this.#abandoned;
  }

  #notSent(): ProviderError {
    return new ProviderError(this.provider, 'not sent: the run is stopping', { code: 'FERRY_ABORTED' });
  }

  get concurrency(): number {
    return this.#queue.concurrency;
  }

  /** Time left of the current pause, in ms (0 when running). */
  get pausedForMs(): number {
    return Math.max(0, this.#resumeAt - Date.now());
  }

  /** Pauses the whole queue for `ms`; a longer pause extends the current one, a shorter one is absorbed. */
  pause(ms: number, reason: string): void {
    if (!(ms > 0)) return;
    const until = Date.now() + ms;
    if (until <= this.#resumeAt) return;
    const wasPaused = this.#resumeAt > Date.now();
    this.#resumeAt = until;
    this.#head.pause();
    // Calls already waiting, or a hold the pause being extended had, keep the process alive.
    const hold = this.#callsWaiting || this.#timer?.hasRef() === true;
    clearTimeout(this.#timer);
    // Unref'd, so that a pause alone does not keep a finished process alive; a call added
    // while it lasts refs it (see add). Without that, a call whose own wait ended a moment
    // before this timer would sit in the paused queue with nothing keeping the process up.
    this.#arm(ms, hold);
    if (!wasPaused) this.#onPause?.({ provider: this.provider, account: this.account, scope: this.scope, waitMs: ms, reason });
  }

  /** Resolves once the provider is not paused (immediately when it is running), or when `signal` aborts. */
  async whenRunning(signal?: AbortSignal): Promise<void> {
    // A timer may fire a millisecond before Date.now() reaches the deadline: wait again.
    for (let left = this.pausedForMs; left > 0 && signal?.aborted !== true; left = this.pausedForMs) await sleep(left, signal);
    this.#resumeIfDue();
  }

  #arm(ms: number, hold: boolean): void {
    // Past Node's timer limit a timer fires after 1 ms: arm at most the limit and re-arm.
    const timer = setTimeout(() => {
      // A timer may fire a millisecond before Date.now() reaches the deadline.
      if (this.#resumeAt !== 0 && Date.now() < this.#resumeAt) this.#arm(this.#resumeAt - Date.now(), timer.hasRef());
      else this.#resumeIfDue();
    }, Math.min(ms, MAX_TIMER_MS));
    if (!hold) timer.unref();
    this.#timer = timer;
  }

  #resumeIfDue(): void {
    if (this.#resumeAt === 0 || Date.now() < this.#resumeAt) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#resumeAt = 0;
    this.#head.start();
  }
}

function checkLimits(limits: QueueLimits): void {
  if (!Number.isInteger(limits.concurrency) || limits.concurrency < 1) {
    throw new TypeError(`Expected \`concurrency\` to be a positive integer, got \`${limits.concurrency}\``);
  }
}

function newQueue(concurrency: number, rate: QueueLimits['rate']): PQueue {
  return new PQueue({ concurrency, ...(rate ? { intervalCap: rate.limit, interval: rate.intervalMs } : {}) });
}

/** True when `next` lets fewer requests through per unit of time than `current` (no rate lets all through). */
function stricterRate(next: QueueLimits['rate'], current: QueueLimits['rate']): boolean {
  if (!next) return false;
  if (!current) return true;
  return next.limit / next.intervalMs < current.limit / current.intervalMs;
}
