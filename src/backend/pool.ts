import type { Dispatcher } from 'undici';
import { createAgent } from '../providers/http.js';
import { createFerry, type CallRouter, type Ferry } from '../engine/runtime.js';
import type { Account, QueueLimits } from '../engine/queue.js';
import { shapeOf } from '../engine/resume.js';
import type { Redactor } from '../redact.js';
import type { JournalEntry } from '../store/journal.js';
import type { RunHook } from '../store/record.js';
import type { TriggerData } from '../types.js';
import type { Workflow } from '../workflow/types.js';
import { CallPool, queueOf } from './calls.js';
import { openBackend, type Backend } from './connection.js';
import { RedisRunStore } from './run-store.js';
import { RunQueue, RunWorker, type RunJobData, type RunJobResult, type RunWorkerOptions } from './runs-queue.js';
import type { Job } from 'bullmq';

export interface PoolOptions {
  /** This process's environment: the secrets of the calls and runs it does. */
  env: Record<string, string | undefined>;
  /** Calls at once per account that this process sends when it works. @default 32 */
  calls?: number;
  /** A run whose process died is taken over within this time. @default 15 s */
  takeoverMs?: number;
}

export interface WorkOptions {
  /** Runs at once in this process. @default 4 */
  runs?: number;
  log?: RunWorkerOptions['log'];
}

/**
 * This process in a backend's pool (DESIGN.md §7): the runs in Redis, the runs queue, and a
 * runtime whose provider calls go through the pool's per-account queues. A process that
 * `work()`s also runs queued runs and sends queued calls.
 */
export class Pool {
  readonly backend: Backend;
  readonly store: RedisRunStore;
  readonly runs: RunQueue;
  readonly calls: CallPool;
  /** The runtime of the runs this process runs: its calls go through `calls`. */
  readonly ferry: Ferry;
  readonly #local: Dispatcher;
  readonly #options: PoolOptions;
  #worker: RunWorker | undefined;

  private constructor(backend: Backend, options: PoolOptions) {
    this.backend = backend;
    this.#options = options;
    this.store = new RedisRunStore(backend);
    this.runs = new RunQueue(backend);
    // What really sends: the calls this process takes from the pool, and streamed answers.
    this.#local = createAgent();
    this.calls = new CallPool(backend, { env: options.env, local: this.#local, ...(options.calls === undefined ? {} : { concurrency: options.calls }) });
    this.ferry = createFerry({ env: options.env, dispatcher: this.#local, calls: routerOf(this.calls) });
  }

  /** Connects (exit 2 naming the URL when Redis is not there). */
  static async open(url: string, options: PoolOptions): Promise<Pool> {
    return new Pool(await openBackend(url), options);
  }

  /**
   * Records a new run of `workflow` in Redis (its `run` entry and the workflow's text) and
   * queues it for the pool's workers: what `ferry run --backend` and the listener do.
   * `file` is the workflow as every process names it (relative to its working directory).
   */
  async queue(workflow: Workflow, run: { runId: string; file: string; inputs: Record<string, unknown>; trigger: TriggerData; startedAt?: string; hook?: RunHook }, redactor: Redactor): Promise<Job<RunJobData, RunJobResult>> {
    const start: Extract<JournalEntry, { t: 'run' }> & { hook?: RunHook } = {
      t: 'run',
      v: 1,
      runId: run.runId,
      workflow: workflow.name,
      file: run.file,
      startedAt: run.startedAt ?? new Date().toISOString(),
      pid: process.pid,
      mode: 'live',
      inputs: run.inputs,
      trigger: run.trigger,
      shape: shapeOf(workflow.steps),
      ...(run.hook ? { hook: run.hook } : {}),
    };
    await this.store.create(run.runId, { file: run.file, source: workflow.source }, start, redactor, run.hook);
    return this.runs.add(run.runId);
  }

  /** Runs queued runs and sends queued calls from now on, until `close()`. */
  async work(options: WorkOptions = {}): Promise<void> {
    await this.calls.work();
    this.#worker ??= new RunWorker(this.backend, {
      ferry: this.ferry,
      store: this.store,
      env: this.#options.env,
      ...(options.runs === undefined ? {} : { concurrency: options.runs }),
      ...(this.#options.takeoverMs === undefined ? {} : { takeoverMs: this.#options.takeoverMs }),
      ...(options.log ? { log: options.log } : {}),
    });
  }

  /** Drains: takes no more work, hands its runs back to the queue, finishes the calls on the wire. */
  async close(): Promise<void> {
    await this.#worker?.close();
    await this.calls.close();
    await this.runs.close();
    await this.ferry.close();
    await this.#local.close();
    await this.backend.close();
  }
}

/** The runtime's view of the call pool. */
function routerOf(pool: CallPool): CallRouter {
  return {
    dispatcher: (account: Account, limits: QueueLimits, workflow: string, secrets: Readonly<Record<string, string>>) => pool.dispatcher(account, limits, workflow, { ...secrets }),
    pause: (scope: string, ms: number) => void pool.pause(queueOf(scope), ms).catch(() => undefined),
  };
}
