import type { Pool } from '../backend/pool.js';
import { shapeOf } from '../engine/resume.js';
import { newRunId } from '../engine/run-id.js';
import type { Redactor } from '../redact.js';
import { summarize } from '../store/runs.js';
import type { Delivery, RunsService } from './handler.js';
import { hookOf, keysOf, type ListenerRunEntry } from './runs.js';

/**
 * The listener's runs in a backend's pool (DESIGN.md §7): a delivery is deduplicated in
 * Redis, so several `ferry serve` behind one address start one run for it; the run is
 * recorded in Redis and queued before the 202, and any worker of the pool runs it.
 */
export class PoolRuns implements RunsService {
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
    const served = route.served;
    const hook = hookOf(delivery);
    const start: ListenerRunEntry = {
      t: 'run',
      v: 1,
      runId,
      workflow: served.workflow.name,
      file: served.file,
      startedAt: new Date(now).toISOString(),
      pid: process.pid,
      mode: 'live',
      inputs: delivery.inputs,
      trigger: delivery.trigger,
      shape: shapeOf(served.workflow.steps),
      hook,
    };
    try {
      await store.create(runId, { file: served.file, source: served.workflow.source }, start, this.#redactor, hook);
      await this.#pool.runs.add(runId);
    } catch (error) {
      await Promise.all(claimed.map((k) => store.forget(k, runId))).catch(() => undefined);
      throw error;
    }
    return { runId, duplicate: false };
  }

  async summary(runId: string): Promise<object | undefined> {
    const run = await this.#pool.store.load(runId);
    if (!run || !this.#served.has(run.start.file)) return undefined;
    return summarize(run);
  }
}

/** A delivery id is remembered this long in the pool (a replay key for its own window). */
const DELIVERY_ID_SECONDS = 30 * 24 * 3600;
