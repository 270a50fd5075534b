import PQueue from 'p-queue';
import { ProviderError } from '../errors.js';
import { flushJournals } from '../store/journal.js';
import { Batcher } from './batcher.js';
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

export interface PauseEvent {
  provider: string;
  waitMs: number;
  reason: string;
}

/**
 * One provider's queue: concurrency, rate, and whole-queue pauses. A pause (Retry-After,
 * Amplitude's throttling answer) stops every request to the provider from leaving until it
 * ends; calls already on the wire finish normally.
 */
export class ProviderQueue {
  readonly provider: string;
  readonly #queue: PQueue;
  #resumeAt = 0;
  /** Ends the current pause; ref'd while calls wait in the paused queue. */
  #timer: NodeJS.Timeout | undefined;
  readonly #onPause: ((event: PauseEvent) => void) | undefined;
  /** Calls waiting to start, by their run's stop signal. */
  readonly #waiting = new Map<AbortSignal, { calls: Set<Waiting>; stop: () => void }>();
  /** Calls whose run stopped while they waited: still in the p-queue, as no-ops. */
  #abandoned = 0;

  constructor(provider: string, limits: QueueLimits, onPause?: (event: PauseEvent) => void) {
    if (!Number.isInteger(limits.concurrency) || limits.concurrency < 1) {
      throw new TypeError(`Expected \`concurrency\` to be a positive integer, got \`${limits.concurrency}\``);
    }
    this.provider = provider;
    this.#onPause = onPause;
    this.#queue = new PQueue({
      concurrency: limits.concurrency,
      ...(limits.rate ? { intervalCap: limits.rate.limit, interval: limits.rate.intervalMs } : {}),
    });
  }

  /**
   * Runs `fn` when a slot is free and the provider is not paused; journals are written first.
   * When `signal` aborts while the call still waits, the call rejects at once with
   * FERRY_ABORTED and is never sent; once started, it runs to its end (its timeout bounds it).
   */
  add<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    this.#resumeIfDue();
    // Work waiting in a paused queue keeps the process alive until the pause ends.
    if (this.#resumeAt !== 0) this.#timer?.ref();
    if (!signal) {
      return this.#queue.add(() => {
        flushJournals();
        return fn();
      }) as Promise<T>;
    }
    if (signal.aborted) return Promise.reject(this.#notSent());
    // Not p-queue's `signal` option: it also races a started call, and costs an AbortController
    // and listeners per call. An abandoned call stays queued as a no-op until the queue runs.
    return new Promise<T>((resolve, reject) => {
      const call: Waiting = { reject, abandoned: false };
      this.#watch(signal, call);
      void this.#queue.add(async () => {
        if (call.abandoned) {
          this.#abandoned--;
          return;
        }
        this.#unwatch(signal, call);
        const run = async (): Promise<T> => {
          flushJournals();
          return fn();
        };
        await run().then(resolve, reject);
      });
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
    return this.#queue.size > this.#abandoned;
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
    this.#queue.pause();
    // Calls already waiting, or a hold the pause being extended had, keep the process alive.
    const hold = this.#callsWaiting || this.#timer?.hasRef() === true;
    clearTimeout(this.#timer);
    // Unref'd, so that a pause alone does not keep a finished process alive; a call added
    // while it lasts refs it (see add). Without that, a call whose own wait ended a moment
    // before this timer would sit in the paused queue with nothing keeping the process up.
    this.#arm(ms, hold);
    if (!wasPaused) this.#onPause?.({ provider: this.provider, waitMs: ms, reason });
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
    this.#queue.start();
  }
}

/** The per-process set of provider queues, shared by every step, loop item and run. */
export class Limiter {
  readonly #queues = new Map<string, ProviderQueue>();
  readonly #batchers = new Map<string, Batcher>();

  /** The provider's batcher, on top of its queue. */
  batcher(queue: ProviderQueue): Batcher {
    let batcher = this.#batchers.get(queue.provider);
    if (!batcher) {
      batcher = new Batcher(queue);
      this.#batchers.set(queue.provider, batcher);
    }
    return batcher;
  }
  #pauseListeners = new Set<(event: PauseEvent) => void>();

  /** The provider's queue; created with `limits` the first time it is asked for. */
  queue(provider: string, limits: QueueLimits): ProviderQueue {
    let queue = this.#queues.get(provider);
    if (!queue) {
      queue = new ProviderQueue(provider, limits, (event) => {
        for (const listener of this.#pauseListeners) listener(event);
      });
      this.#queues.set(provider, queue);
    }
    return queue;
  }

  onPause(listener: (event: PauseEvent) => void): () => void {
    this.#pauseListeners.add(listener);
    return () => this.#pauseListeners.delete(listener);
  }
}
