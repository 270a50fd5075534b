import type { Dispatcher } from 'undici';
import { ProviderError } from '../errors.js';
import type { BatchOutcome, BatchSpec } from '../providers/define.js';
import type { RetryPolicy } from '../workflow/types.js';
import type { ProviderQueue } from './limiter.js';
import { backoffMs, isRetryable, stoppedWaiting, waitTooLong, type CallStats } from './retry.js';
import { MAX_TIMER_MS, sleep } from './timers.js';

export interface BatchSettings {
  /** Coalesce concurrent calls; false sends each item in its own request. */
  enabled: boolean;
  /** How long the first item of a batch waits for company, in ms. */
  windowMs: number;
  /** Cap below the API's own limit. */
  maxItems: number | undefined;
}

/** One call's side of a batch: its run's settings, dispatcher, retry policy, wait cap, stop and stats. */
export interface BatchCall {
  settings: BatchSettings;
  dispatcher: Dispatcher;
  policy: RetryPolicy;
  /** The longest wait the provider may ask for; a longer one fails the item. */
  maxWaitMs: number;
  /** The run's stop: an item still waiting (queue, pause, backoff) fails unsent. */
  signal: AbortSignal;
  stats: CallStats;
}

interface Pending extends BatchCall {
  item: unknown;
  size: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface Group {
  spec: BatchSpec<unknown, unknown>;
  settings: BatchSettings;
  dispatcher: Dispatcher;
  items: Pending[];
  bytes: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Coalesces items of one provider into batch requests. Each item keeps its own result and
 * its own retry budget: a whole-request failure retries every item in it, a per-item
 * failure only that item, a 413 splits the batch. Items are never dropped: each settles.
 */
export class Batcher {
  // Runs that share the provider queue may differ in `batch:` settings and dispatcher (a
  // dry run records instead of sending): only calls that agree on both share a request.
  // A run's settings object is made once per step, so it keys the groups as it is.
  readonly #groups = new WeakMap<Dispatcher, WeakMap<BatchSettings, Map<string, Group>>>();

  constructor(readonly queue: ProviderQueue) {}

  add<Item, Result>(spec: BatchSpec<Item, Result>, item: Item, call: BatchCall): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      const { settings } = call;
      const pending: Pending = {
        settings,
        dispatcher: call.dispatcher,
        policy: call.policy,
        maxWaitMs: call.maxWaitMs,
        signal: call.signal,
        stats: call.stats,
        item,
        // Sizing an item costs a JSON.stringify: only worth it when items are coalesced.
        size: settings.enabled ? spec.sizeOf(item) : 0,
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      this.#enqueue(spec as BatchSpec<unknown, unknown>, pending);
    });
  }

  #group(spec: BatchSpec<unknown, unknown>, pending: Pending): Group {
    const { settings, dispatcher } = pending;
    let bySettings = this.#groups.get(dispatcher);
    if (!bySettings) {
      bySettings = new WeakMap();
      this.#groups.set(dispatcher, bySettings);
    }
    let byKey = bySettings.get(settings);
    if (!byKey) {
      byKey = new Map();
      bySettings.set(settings, byKey);
    }
    let group = byKey.get(spec.key);
    if (!group) {
      group = { spec, settings, dispatcher, items: [], bytes: 0, timer: undefined };
      byKey.set(spec.key, group);
    }
    return group;
  }

  #enqueue(spec: BatchSpec<unknown, unknown>, pending: Pending): void {
    // Unbatched, an item is its own request: no group, no window.
    if (!pending.settings.enabled) {
      void this.#dispatch(spec, [pending]);
      return;
    }
    const group = this.#group(spec, pending);
    const { settings } = group;
    if (group.items.length > 0 && group.bytes + pending.size > spec.maxBytes) this.#flush(group);
    group.items.push(pending);
    group.bytes += pending.size;
    const limit = Math.max(1, Math.min(spec.maxItems, settings.maxItems ?? spec.maxItems));
    if (group.items.length >= limit) this.#flush(group);
    else group.timer ??= setTimeout(() => this.#flush(group), Math.min(settings.windowMs, MAX_TIMER_MS));
  }

  #flush(group: Group): void {
    clearTimeout(group.timer);
    group.timer = undefined;
    const items = group.items;
    if (items.length === 0) return;
    group.items = [];
    group.bytes = 0;
    void this.#dispatch(group.spec, items);
  }

  /** Sends `items` (all of one group, so one run: one dispatcher and one stop signal) as one request. */
  async #dispatch(spec: BatchSpec<unknown, unknown>, items: Pending[]): Promise<void> {
    let outcomes: BatchOutcome<unknown>[];
    const first = items[0] as Pending;
    try {
      outcomes = await this.queue.add(() => {
        for (const p of items) p.stats.attempts++;
        return spec.send(items.map((p) => p.item), first.dispatcher);
      }, first.signal);
      if (outcomes.length !== items.length) throw new ProviderError(this.queue.provider, `batch answer has ${outcomes.length} results for ${items.length} items`);
    } catch (error) {
      this.#wholeFailure(spec, items, error);
      return;
    }
    outcomes.forEach((outcome, i) => {
      const p = items[i] as Pending;
      if (outcome.ok) p.resolve(outcome.value);
      else if (outcome.retry) {
        if (!outcome.retry.free) p.stats.failures.push(failureCode(outcome.error));
        else p.stats.attempts--;
        this.#retry(spec, [p], outcome.error, outcome.retry.afterMs, outcome.retry.free === true);
      } else {
        p.stats.failures.push(failureCode(outcome.error));
        p.reject(outcome.error);
      }
    });
  }

  #wholeFailure(spec: BatchSpec<unknown, unknown>, items: Pending[], error: unknown): void {
    const split = error instanceof ProviderError && (error.status === 413 || error.code === 'FERRY_BATCH_SPLIT');
    if (split && items.length > 1) {
      // Too large, or one bad item in many: send the halves, using no attempt.
      for (const p of items) p.stats.attempts--;
      const mid = Math.ceil(items.length / 2);
      void this.#dispatch(spec, items.slice(0, mid));
      void this.#dispatch(spec, items.slice(mid));
      return;
    }
    for (const p of items) p.stats.failures.push(failureCode(error));
    const cause = split && error instanceof ProviderError && error.cause instanceof Error ? error.cause : error;
    if (!isRetryable(cause)) {
      for (const p of items) p.reject(cause);
      return;
    }
    this.#retry(spec, items, cause, cause instanceof ProviderError ? cause.retryAfterMs : undefined, false);
  }

  #retry(spec: BatchSpec<unknown, unknown>, items: Pending[], error: unknown, afterMs: number | undefined, free: boolean): void {
    const again: Pending[] = [];
    for (const p of items) {
      // A wait over the run's cap fails the item at once, and does not pause the queue.
      const tooLong = afterMs === undefined ? undefined : waitTooLong(error, p.maxWaitMs);
      if (tooLong) p.reject(tooLong);
      else if (!free && p.stats.attempts >= p.policy.attempts) p.reject(error);
      else again.push(p);
    }
    if (again.length === 0) return;
    const first = again[0] as Pending;
    let wait: number;
    if (afterMs !== undefined) {
      // The provider asked for a pause: nothing else leaves for this provider meanwhile.
      this.queue.pause(afterMs, error instanceof ProviderError && error.status ? String(error.status) : 'throttled');
      wait = afterMs;
    } else {
      wait = free ? 0 : backoffMs(first.stats.attempts, first.policy);
    }
    const started = Date.now();
    void sleep(wait, first.signal).then(() => {
      for (const p of again) {
        p.stats.waitedMs += Date.now() - started;
        if (p.signal.aborted) p.reject(stoppedWaiting(this.queue.provider, error));
        else this.#enqueue(spec, p);
      }
    });
  }
}

function failureCode(error: unknown): number | string {
  return error instanceof ProviderError ? (error.status ?? error.code) : 'error';
}
