import type { Pool } from '../backend/pool.js';
import { runInputs } from '../engine/inputs.js';
import { newRunId } from '../engine/run-id.js';
import type { Redactor } from '../redact.js';
import type { RunHook } from '../store/record.js';
import { stateOf, summarize } from '../store/runs.js';
import type { TriggerData } from '../types.js';
import type { Delivery, RunsService, ServedWorkflow } from './handler.js';
import { hookOf, keysOf } from './runs.js';
import { SCHEDULE_HOOK, type TickOutcome, type TickService } from './schedules.js';

/**
 * The listener's runs in a backend's pool (DESIGN.md §7): a delivery is deduplicated in
 * Redis, so several `ferry serve` behind one address start one run for it; the run is
 * recorded in Redis and queued before the 202, and any worker of the pool runs it.
 */
export class PoolRuns implements RunsService, TickService {
  readonly #pool: Pool;
  readonly #redactor: Redactor;
  /** Served workflow files as the runs record them (relative to the working directory). */
  readonly #served: ReadonlySet<string>;
  readonly #now: () => number;

  constructor(pool: Pool, options: { redactor: Redactor; served: readonly { file: string }[]; now?: () => number }) {
    this.#pool = pool;
    this.#redactor = options.redactor;
    this.#served = new Set(options.served.map((s) => s.file));
    this.#now = options.now ?? Date.now;
  }

  async accept(delivery: Delivery): Promise<{ runId: string; duplicate: boolean }> {
    const { store } = this.#pool;
    const now = this.#now();
    const { route } = delivery;
    const runId = newRunId();
    // Each key is claimed for this run; the first key already claimed names the run it started.
    const keys = keysOf(route.path, delivery.deliveryId ?? null, delivery.replays);
    const claimed: string[] = [];
    for (const { key, untilMs } of keys) {
      const ttl = untilMs === Infinity ? DELIVERY_ID_SECONDS : Math.max(1, Math.ceil((untilMs - now) / 1000));
      const owner = await store.dedupe(key, runId, ttl);
      if (owner !== runId) {
        await Promise.all(claimed.map((k) => store.forget(k, runId)));
        return { runId: owner, duplicate: true };
      }
      claimed.push(key);
    }
    try {
      await this.#record(runId, route.served, delivery.inputs, delivery.trigger, hookOf(delivery));
    } catch (error) {
      await Promise.all(claimed.map((k) => store.forget(k, runId))).catch(() => undefined);
      throw error;
    }
    return { runId, duplicate: false };
  }

  /**
   * A schedule's tick in the pool: the first process to claim it in Redis starts its run, the
   * others leave it; the claimer skips it while the workflow's latest scheduled run (its id
   * kept in Redis) is queued, running, or waiting to be taken over.
   */
  async tick(served: ServedWorkflow, at: string): Promise<TickOutcome> {
    const { store } = this.#pool;
    const name = served.workflow.name;
    const runId = newRunId();
    const owner = await store.dedupe(`schedule\0${name}\0${at}`, runId, TICK_CLAIM_SECONDS);
    if (owner !== runId) return { claimed: owner };
    const last = await store.lastScheduled(name);
    const previous = last === undefined ? undefined : await store.read(last);
    if (last !== undefined && previous && !('corrupt' in previous)) {
      const state = stateOf(previous);
      // `interrupted` without an end is a run whose worker died or that no worker took yet: the pool runs it still.
      if (state === 'running' || state === 'interrupted') return { skipped: last };
    }
    const trigger: TriggerData = { type: 'schedule', scheduled_at: at };
    // A scheduled run has no inputs but the declared defaults (validation makes sure each has one).
    const inputs = runInputs(served.workflow, trigger, {}, undefined, this.#pool.ferry.inputs);
    await this.#record(runId, served, inputs, trigger, { path: SCHEDULE_HOOK, delivery: null, schedule: at });
    await store.setLastScheduled(name, runId);
    return { runId };
  }

  /** Records the run in Redis and queues it for the pool's workers. */
  async #record(runId: string, served: ServedWorkflow, inputs: Record<string, unknown>, trigger: TriggerData, hook: RunHook): Promise<void> {
    await this.#pool.queue(served.workflow, { runId, file: served.file, inputs, trigger, startedAt: new Date(this.#now()).toISOString(), hook }, this.#redactor);
  }

  async summary(runId: string): Promise<object | undefined> {
    const run = await this.#pool.store.load(runId);
    if (!run || !this.#served.has(run.start.file)) return undefined;
    return summarize(run);
  }
}

/** A delivery id is remembered this long in the pool (a replay key for its own window). */
const DELIVERY_ID_SECONDS = 30 * 24 * 3600;
/** A tick's claim outlives any clock skew between the pool's machines: each fires a tick only near its time. */
const TICK_CLAIM_SECONDS = 3600;
