import type { Dispatcher } from 'undici';
import { ProviderError } from '../errors.js';
import type { BatchSpec, ItemOutcome, RequestOutcome } from '../providers/define.js';
import type { RetryPolicy } from '../workflow/types.js';
import type { ProviderQueue } from './queue.js';
import { decide, failureCode, outcomeOf, stoppedWaiting, waitBeforeRetry, wouldRetry, type CallStats, type Decision, type FailedOutcome } from './retry.js';
import { MAX_TIMER_MS } from './timers.js';

export interface BatchSettings {
  /** Coalesce concurrent calls; false sends each item in its own request. */
  enabled: boolean;
  /** How long the first item of a batch waits for company, in ms. */
  windowMs: number;
  /** Cap below the API's own limit. */
  maxItems: number | undefined;
}

/**
 * What the calls of one step in one run share on the way through a batch: settings,
 * dispatcher, retry policy, wait cap and stop. Made once per step (engine/action.ts), so a
 * waiting item holds a reference, not a copy of each field.
 */
export interface BatchCall {
  readonly settings: BatchSettings;
  readonly dispatcher: Dispatcher;
  readonly policy: RetryPolicy;
  /** The longest wait the provider may ask for; a longer one fails the item. */
  readonly maxWaitMs: number;
  /** The run's stop: an item still waiting (queue, pause, backoff) fails unsent. */
  readonly signal: AbortSignal;
}

interface Pending {
  call: BatchCall;
  stats: CallStats;
  item: unknown;
  size: number;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** An item and what its last try came to. */
interface Failed {
  p: Pending;
  outcome: FailedOutcome;
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
 * failure only that item, a `split` outcome (a 413) sends the halves. Whether and when an
 * item goes again is the one retry decision's (retry.ts `decide`), as for single calls.
 * Items are never dropped: each settles.
 */
export class Batcher {
  // Runs that share the provider queue may differ in `batch:` settings and dispatcher (a
  // dry run records instead of sending): only calls that agree on both share a request.
  // A run's settings object is made once per step, so it keys the groups as it is.
  readonly #groups = new WeakMap<Dispatcher, WeakMap<BatchSettings, Map<string, Group>>>();

  constructor(readonly queue: ProviderQueue) {}

  add<Item, Result>(spec: BatchSpec<Item, Result>, item: Item, call: BatchCall, stats: CallStats): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      const pending: Pending = {
        call,
        stats,
        item,
        // Sizing an item costs a JSON.stringify: only worth it when items are coalesced.
        size: call.settings.enabled ? spec.sizeOf(item) : 0,
        resolve: resolve as (v: unknown) => void,
        reject,
      };
      this.#enqueue(spec as BatchSpec<unknown, unknown>, pending);
    });
  }

  #group(spec: BatchSpec<unknown, unknown>, pending: Pending): Group {
    const { settings, dispatcher } = pending.call;
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
    if (!pending.call.settings.enabled) {
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
    const first = items[0] as Pending;
    let answer: ItemOutcome<unknown>[] | RequestOutcome;
    try {
      answer = await this.queue.add(() => {
        for (const p of items) p.stats.attempts++;
        return spec.send(items.map((p) => p.item), first.call.dispatcher);
      }, first.call.signal);
    } catch (error) {
      answer = outcomeOf(error);
    }
    if (Array.isArray(answer) && answer.length !== items.length) {
      answer = { kind: 'final', error: new ProviderError(this.queue.provider, `batch answer has ${answer.length} results for ${items.length} items`) };
    }
    if (!Array.isArray(answer)) {
      this.#whole(spec, items, answer);
      return;
    }
    // A free resend is for items held back by another's fault; with none at fault it would
    // never end, so such an answer counts as a transient failure of the whole request.
    if (answer.every((o) => o.kind === 'resend')) {
      const { error } = answer[0] as { error: ProviderError };
      this.#settle(spec, items.map((p) => ({ p, outcome: { kind: 'retryable', error } })));
      return;
    }
    // Items that failed alike wait alike: one timer per kind of failure, not one per item.
    const failed = new Map<string, Failed[]>();
    answer.forEach((outcome, i) => {
      const p = items[i] as Pending;
      if (outcome.kind === 'ok') return p.resolve(outcome.value);
      const list = failed.get(outcome.kind) ?? [];
      failed.set(outcome.kind, list);
      list.push({ p, outcome });
    });
    for (const list of failed.values()) this.#settle(spec, list);
  }

  /** A whole request failed: split it, or settle every item alike. */
  #whole(spec: BatchSpec<unknown, unknown>, items: Pending[], outcome: RequestOutcome): void {
    if (outcome.kind === 'split' && items.length > 1) {
      // Too large, or one bad item in many: send the halves, using no attempt.
      for (const p of items) p.stats.attempts--;
      const mid = Math.ceil(items.length / 2);
      void this.#dispatch(spec, items.slice(0, mid));
      void this.#dispatch(spec, items.slice(mid));
      return;
    }
    this.#settle(spec, items.map((p) => ({ p, outcome })));
  }

  /** Fails each item, or sends it again after the wait the one retry decision gives (the first item's, for all). */
  #settle(spec: BatchSpec<unknown, unknown>, failed: Failed[]): void {
    const again: Failed[] = [];
    let wait: { decision: Extract<Decision, { retry: true }>; outcome: FailedOutcome } | undefined;
    for (const { p, outcome } of failed) {
      if (outcome.kind === 'resend') p.stats.attempts--;
      else p.stats.failures.push(failureCode(outcome.error));
      // Stopping: nothing is sent again; the item is interrupted, not failed by the provider.
      if (p.call.signal.aborted && wouldRetry(outcome)) {
        p.reject(stoppedWaiting(this.queue.provider, outcome.error));
        continue;
      }
      const decision = decide(outcome, p.stats.attempts, p.call.policy, p.call.maxWaitMs);
      if (!decision.retry) p.reject(decision.error);
      else {
        wait ??= { decision, outcome };
        again.push({ p, outcome });
      }
    }
    if (!wait) return;
    const started = Date.now();
    void waitBeforeRetry(wait.decision, this.queue, wait.outcome, (again[0] as Failed).p.call.signal).then(() => {
      for (const { p, outcome } of again) {
        p.stats.waitedMs += Date.now() - started;
        if (p.call.signal.aborted) p.reject(stoppedWaiting(this.queue.provider, outcome.error));
        else this.#enqueue(spec, p);
      }
    });
  }
}
