import type { Dispatcher } from 'undici';
import { ProviderError } from '../errors.js';
import type { BatchSpec, ItemOutcome, RequestOutcome } from '../providers/define.js';
import type { RetryPolicy } from '../workflow/types.js';
import type { CallSummary } from '../types.js';
import type { ProviderQueue } from './queue.js';
import { addStats, decide, failureCode, outcomeOf, stoppedWaiting, waitBeforeRetry, wouldRetry, type CallStats, type Decision, type FailedOutcome } from './retry.js';
import type { Feed } from './feed.js';
import { MAX_TIMER_MS } from './timers.js';

export interface BatchSettings {
  /** Coalesce concurrent calls; false sends each item in its own request. */
  enabled: boolean;
  /** The longest the first item of a batch waits for company, in ms (it leaves sooner when no item can join). */
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
  /** The step's summary that the item's stats are added to when it settles. */
  calls: CallSummary | undefined;
  item: unknown;
  size: number;
  /** The loop the item came from, told when it waits, when its request leaves and comes back. */
  feed: Feed | undefined;
  /** Its request is on the wire and it lent its loop slot to the next item. */
  lent: boolean;
  /** The caller's promise; settled through `succeed` and `fail`, which tell its loop first. */
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/** The item leaves the batcher with its result: its loop counts it running again. */
function succeed(p: Pending, value: unknown): void {
  p.feed?.unpark();
  if (p.calls) addStats(p.calls, p.stats);
  p.resolve(value);
}

function fail(p: Pending, error: unknown): void {
  p.feed?.unpark();
  if (p.calls) addStats(p.calls, p.stats);
  p.reject(error);
}

/**
 * Why a batch left: it was `full` (items or bytes), every loop that could add to it was
 * waiting on batches (`idle`), or its `window` ran out. Counted per batcher (Batcher.flushes).
 */
export type FlushReason = 'full' | 'idle' | 'window';

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
  /** The loops its items came from: it waits while any of them has items that could still join. */
  feeds: Set<Feed>;
  /** Flushes it when its loops go idle; one function per group, so a loop holds it once. */
  whenIdle: () => void;
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

  /** Batches sent so far, by why they left. */
  readonly flushes: Record<FlushReason, number> = { full: 0, idle: 0, window: 0 };

  constructor(readonly queue: ProviderQueue) {}

  /**
   * Sends `item` in a batch and resolves with its own result. `feed` is the loop the call
   * comes from (none for a step outside loops): a batch leaves as soon as none of its loops
   * has an item that could still join, at the latest when its window ends. `calls` is the
   * step's summary, which the item's `stats` are added to when it settles.
   */
  add<Item, Result>(spec: BatchSpec<Item, Result>, item: Item, call: BatchCall, stats: CallStats, feed?: Feed, calls?: CallSummary): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      // Unbatched, an item is its own request and keeps its loop slot, as with any call.
      const batched = call.settings.enabled && feed !== undefined;
      const pending: Pending = {
        call,
        stats,
        calls,
        item,
        // Sizing an item costs a JSON.stringify: only worth it when items are coalesced.
        size: call.settings.enabled ? spec.sizeOf(item) : 0,
        feed: batched ? feed : undefined,
        lent: false,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      // Parked before it joins, so that its own group sees it waiting; other batches this
      // loop feeds are told after, once it is in its group.
      pending.feed?.park();
      this.#enqueue(spec as BatchSpec<unknown, unknown>, pending);
      pending.feed?.changed();
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
      const made: Group = { spec, settings, dispatcher, items: [], bytes: 0, timer: undefined, feeds: new Set(), whenIdle: () => this.#flushIfIdle(made) };
      group = made;
      byKey.set(spec.key, group);
    }
    return group;
  }

  #enqueue(spec: BatchSpec<unknown, unknown>, pending: Pending): void {
    const group = this.#join(spec, pending);
    if (group) this.#wait(group);
  }

  /** Puts the item in its group (flushing the group when full); returns the group unless it left. */
  #join(spec: BatchSpec<unknown, unknown>, pending: Pending): Group | undefined {
    // Unbatched, an item is its own request: no group, no window.
    if (!pending.call.settings.enabled) {
      void this.#dispatch(spec, [pending]);
      return undefined;
    }
    const group = this.#group(spec, pending);
    const { settings } = group;
    if (group.items.length > 0 && group.bytes + pending.size > spec.maxBytes) this.#flush(group, 'full');
    group.items.push(pending);
    group.bytes += pending.size;
    if (pending.feed) group.feeds.add(pending.feed);
    const limit = Math.max(1, Math.min(spec.maxItems, settings.maxItems ?? spec.maxItems));
    if (group.items.length < limit) return group;
    this.#flush(group, 'full');
    return undefined;
  }

  /** Flushes the group now if no item can join it, else at the end of its window at the latest. */
  #wait(group: Group): void {
    if (this.#flushIfIdle(group)) group.timer ??= setTimeout(() => this.#flush(group, 'window'), Math.min(group.settings.windowMs, MAX_TIMER_MS));
  }

  /**
   * Flushes `group` when no item can join it any more: each of its loops has every item that
   * holds a slot waiting on a batcher and no slot left to start one. Otherwise asks the first
   * loop that could still add items to call back when it goes idle, and returns true.
   */
  #flushIfIdle(group: Group): boolean {
    if (group.items.length === 0) return false;
    for (const feed of group.feeds) {
      if (feed.arriving > 0) {
        feed.whenIdle(group.whenIdle);
        return true;
      }
    }
    this.#flush(group, 'idle');
    return false;
  }

  #flush(group: Group, reason: FlushReason): void {
    clearTimeout(group.timer);
    group.timer = undefined;
    const items = group.items;
    if (items.length === 0) return;
    group.items = [];
    group.bytes = 0;
    group.feeds.clear();
    this.flushes[reason]++;
    void this.#dispatch(group.spec, items);
  }

  /** Sends `items` (all of one group, so one run: one dispatcher and one stop signal) as one request. */
  async #dispatch(spec: BatchSpec<unknown, unknown>, items: Pending[]): Promise<void> {
    const first = items[0] as Pending;
    let answer: ItemOutcome<unknown>[] | RequestOutcome;
    try {
      answer = await this.queue.add(() => {
        for (const p of items) p.stats.attempts++;
        lendSlots(items);
        return spec.send(items.map((p) => p.item), first.call.dispatcher);
      }, first.call.signal);
    } catch (error) {
      answer = outcomeOf(error);
    }
    let back: Set<Feed> | undefined;
    for (const p of items) {
      if (!p.lent) continue;
      p.lent = false;
      (p.feed as Feed).back();
      (back ??= new Set()).add(p.feed as Feed);
    }
    this.#answer(spec, items, answer);
    // Settled items run on; ones that wait for a retry may leave their loop with none that can join a batch.
    if (back) for (const feed of back) feed.changed();
  }

  /** Settles each item by the answer: its result, a retry, a split or its failure. */
  #answer(spec: BatchSpec<unknown, unknown>, items: Pending[], answer: ItemOutcome<unknown>[] | RequestOutcome): void {
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
      if (outcome.kind === 'ok') return succeed(p, outcome.value);
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
        fail(p, stoppedWaiting(this.queue.provider, outcome.error));
        continue;
      }
      const decision = decide(outcome, p.stats.attempts, p.call.policy, p.call.maxWaitMs);
      if (!decision.retry) fail(p, decision.error);
      else {
        wait ??= { decision, outcome };
        again.push({ p, outcome });
      }
    }
    if (!wait) return;
    const started = Date.now();
    void waitBeforeRetry(wait.decision, this.queue, wait.outcome, (again[0] as Failed).p.call.signal).then(() => {
      // Items that waited together join their batches together, before any of them may leave.
      const joined = new Set<Group>();
      for (const { p, outcome } of again) {
        p.stats.waitedMs += Date.now() - started;
        if (p.call.signal.aborted) fail(p, stoppedWaiting(this.queue.provider, outcome.error));
        else {
          const group = this.#join(spec, p);
          if (group) joined.add(group);
        }
      }
      for (const group of joined) this.#wait(group);
    });
  }
}

/** Lends the loop slots of a batch's items while it is on the wire: per loop, all its items or none. */
function lendSlots(items: Pending[]): void {
  const counts = new Map<Feed, number>();
  for (const p of items) if (p.feed) counts.set(p.feed, (counts.get(p.feed) ?? 0) + 1);
  for (const [feed, count] of counts) {
    if (!feed.lend(count)) continue;
    for (const p of items) if (p.feed === feed) p.lent = true;
  }
}
