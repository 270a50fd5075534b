import { Batcher } from './batcher.js';
import { ProviderQueue, scopeKey, type Account, type PauseEvent, type QueueLimits } from './queue.js';

export interface LimiterOptions {
  /**
   * Runs right before every call of every scope leaves, with the calling run's stop signal; a
   * throw keeps the call from going out. The runtime writes the journals of its runs there.
   * @default nothing
   */
  beforeCall?: (signal: AbortSignal | undefined) => void | Promise<void>;
}

/**
 * The limit scopes of one runtime: one queue per provider account, shared by every step, loop
 * item and run of that runtime (and nothing else: two runtimes never share a scope).
 */
export class Limiter {
  readonly #queues = new Map<string, ProviderQueue>();
  readonly #batchers = new WeakMap<ProviderQueue, Batcher>();
  readonly #pauseListeners = new Set<(event: PauseEvent) => void>();
  readonly #beforeCall: ((signal: AbortSignal | undefined) => void | Promise<void>) | undefined;

  constructor(options: LimiterOptions = {}) {
    this.#beforeCall = options.beforeCall;
  }

  /** The scope's batcher, on top of its queue. */
  batcher(queue: ProviderQueue): Batcher {
    let batcher = this.#batchers.get(queue);
    if (!batcher) {
      batcher = new Batcher(queue);
      this.#batchers.set(queue, batcher);
    }
    return batcher;
  }

  /**
   * The account's scope, made with `limits` the first time it is asked for; asked again with
   * stricter limits, it is tightened to them (see ProviderQueue.tighten).
   */
  scope(account: Account, limits: QueueLimits): ProviderQueue {
    const key = scopeKey(account);
    let queue = this.#queues.get(key);
    if (!queue) {
      queue = new ProviderQueue(account, limits, {
        onPause: (event) => {
          for (const listener of this.#pauseListeners) listener(event);
        },
        beforeCall: this.#beforeCall,
      });
      this.#queues.set(key, queue);
    } else queue.tighten(limits);
    return queue;
  }

  /** Every scope made so far. */
  get scopes(): readonly ProviderQueue[] {
    return [...this.#queues.values()];
  }

  onPause(listener: (event: PauseEvent) => void): () => void {
    this.#pauseListeners.add(listener);
    return () => this.#pauseListeners.delete(listener);
  }
}
