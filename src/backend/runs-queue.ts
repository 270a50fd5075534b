import path from 'node:path';
import { hostname } from 'node:os';
import { DelayedError, Queue, QueueEvents, Worker, type Job } from 'bullmq';
import { FerryError, errorMessage } from '../errors.js';
import { Redactor } from '../redact.js';
import type { RunListener } from '../engine/events.js';
import { ResumeFold } from '../engine/resume.js';
import type { Ferry } from '../engine/runtime.js';
import { envSecrets } from '../engine/secrets.js';
import { resumeRun } from '../engine/session.js';
import { sleep } from '../engine/timers.js';
import type { JournalEntry } from '../store/journal.js';
import { loadWorkflowText } from '../workflow/validate.js';
import type { Backend } from './connection.js';
import { EventRelay } from './relay.js';
import type { RedisRunStore } from './run-store.js';

/** The queue of runs to run: one job per start, retry or takeover of a run. */
export const RUNS_QUEUE = 'ferry-runs';

/** What a run job carries: the run's id and nothing else (the run itself is in the store). */
export interface RunJobData {
  runId: string;
  /** A `ferry retry`: the items earlier attempts set aside (on_error: continue) are sent again. */
  resendFailed?: boolean;
}

/** How a run job ended, as `ferry run --backend` reads it. */
export interface RunJobResult {
  status: 'succeeded' | 'failed';
  /** Set when the run could not start in the worker (a missing secret): a usage error, exit 2. */
  code?: string;
}

/** @default 15 s: a run whose process died is taken over within this time. */
export const DEFAULT_TAKEOVER_MS = 15_000;

/** The client side of the runs queue: queue a run and wait for its end. */
export class RunQueue {
  readonly #queue: Queue<RunJobData, RunJobResult>;
  #events: QueueEvents | undefined;
  readonly #backend: Backend;

  constructor(backend: Backend) {
    this.#backend = backend;
    this.#queue = new Queue(RUNS_QUEUE, { connection: backend.redis, prefix: backend.prefix });
  }

  /** Queues a run recorded in the store; `attempt` tells a retry's job from the start's. */
  async add(runId: string, attempt?: string, options: { resendFailed?: boolean } = {}): Promise<Job<RunJobData, RunJobResult>> {
    return this.#queue.add('run', options.resendFailed ? { runId, resendFailed: true } : { runId }, { jobId: attempt === undefined ? runId : `${runId}-${attempt}`, removeOnComplete: { age: 3600 }, removeOnFail: { age: 24 * 3600 } });
  }

  /**
   * Resolves when the job ends. Its completion event is listened for, and its state is read
   * every second too, so an event lost in a Redis outage never leaves the caller waiting.
   */
  async finished(job: Job<RunJobData, RunJobResult>, signal?: AbortSignal): Promise<RunJobResult> {
    this.#events ??= new QueueEvents(RUNS_QUEUE, { connection: this.#backend.connection(), prefix: this.#backend.prefix });
    const events = this.#events;
    const id = job.id as string;
    return new Promise<RunJobResult>((resolve, reject) => {
      let done = false;
      const finish = (result: RunJobResult | Error): void => {
        if (done) return;
        done = true;
        events.off('completed', onCompleted);
        events.off('failed', onFailed);
        clearInterval(timer);
        signal?.removeEventListener('abort', onAbort);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      const onCompleted = ({ jobId, returnvalue }: { jobId: string; returnvalue: unknown }): void => {
        if (jobId === id) finish(parseResult(returnvalue));
      };
      const onFailed = ({ jobId, failedReason }: { jobId: string; failedReason: string }): void => {
        if (jobId === id) finish(new FerryError('FERRY_RUN_JOB_FAILED', failedReason));
      };
      const onAbort = (): void => finish(new FerryError('FERRY_ABORTED', 'stopped waiting'));
      events.on('completed', onCompleted);
      events.on('failed', onFailed);
      signal?.addEventListener('abort', onAbort, { once: true });
      const timer = setInterval(() => {
        void this.#queue.getJob(id).then(async (current) => {
          if (!current) return;
          const state = await current.getState();
          if (state === 'completed') finish(parseResult(current.returnvalue));
          else if (state === 'failed') finish(new FerryError('FERRY_RUN_JOB_FAILED', current.failedReason));
        }, () => undefined);
      }, 1000);
    });
  }

  /** Workers alive in the pool (they keep a heartbeat key). */
  async workers(): Promise<number> {
    return (await this.#queue.getWorkers()).length;
  }

  async close(): Promise<void> {
    await this.#events?.close();
    await this.#queue.close();
  }
}

function parseResult(value: unknown): RunJobResult {
  const parsed = typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
  return (parsed ?? { status: 'failed' }) as RunJobResult;
}

export interface RunWorkerOptions {
  ferry: Ferry;
  store: RedisRunStore;
  /** Where the runs' secrets and `<<env.X>>` come from: this process's environment. */
  env: Record<string, string | undefined>;
  /** Runs this process runs at once. @default 4 */
  concurrency?: number;
  /** A run whose process died is taken over within this time. @default 15 s */
  takeoverMs?: number;
  /** One line per run taken up and ended. */
  log?: (line: string) => void;
}

/**
 * Runs queued runs in this process. A run is held by a lease in the store; a process that
 * dies stops renewing its job's lock and its lease, and another worker takes the run over
 * within `takeoverMs`: it resumes at the first unfinished item, with the same idempotency keys.
 */
export class RunWorker {
  readonly #worker: Worker<RunJobData, RunJobResult>;
  readonly #options: RunWorkerOptions;
  /** Aborted when this process drains: its runs stop and go back to the queue for another worker. */
  readonly #draining = new AbortController();
  readonly #id = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  readonly #backend: Backend;

  constructor(backend: Backend, options: RunWorkerOptions) {
    this.#options = options;
    this.#backend = backend;
    const takeover = options.takeoverMs ?? DEFAULT_TAKEOVER_MS;
    this.#worker = new Worker<RunJobData, RunJobResult>(RUNS_QUEUE, (job, token) => this.#process(job, token), {
      connection: backend.connection(),
      prefix: backend.prefix,
      concurrency: options.concurrency ?? 4,
      // A lock renewed every lockDuration/2 and checked every stalledInterval: a dead worker's
      // run is back in the queue within about two thirds of the takeover time.
      lockDuration: Math.max(1000, Math.floor(takeover / 3)),
      stalledInterval: Math.max(1000, Math.floor(takeover / 3)),
      maxStalledCount: 1_000_000,
      name: this.#id,
    });
    this.#worker.on('error', () => undefined);
  }

  get leaseMs(): number {
    return Math.max(1000, Math.floor((this.#options.takeoverMs ?? DEFAULT_TAKEOVER_MS) / 3));
  }

  async #process(job: Job<RunJobData, RunJobResult>, token: string | undefined): Promise<RunJobResult> {
    const { runId } = job.data;
    const { store, ferry, env } = this.#options;
    const log = this.#options.log ?? (() => undefined);
    const owner = { pid: process.pid, host: hostname(), id: this.#id };
    // The run's last process may still hold its lease (it died a moment ago, or it is a retry
    // racing a takeover): wait for the lease, unless the run ended meanwhile.
    let lease = await store.lease(runId, owner, this.leaseMs);
    while (!('release' in lease)) {
      const current = await store.load(runId);
      if (!current) throw new FerryError('FERRY_RUN_NOT_FOUND', `run ${runId} is not in the backend`);
      // Ended for good (not stopped by a draining worker, whose run comes back to the queue).
      if (current.end && current.end.interrupted === undefined) return { status: current.end.status };
      if (this.#draining.signal.aborted) return this.#requeue(job, token);
      await sleep(Math.min(1000, this.leaseMs), this.#draining.signal);
      lease = await store.lease(runId, owner, this.leaseMs);
    }
    const held = lease;
    try {
      const folding = new ResumeFold();
      const run = await store.load(runId, (entry) => folding.add(entry));
      if (!run) throw new FerryError('FERRY_RUN_NOT_FOUND', `run ${runId} is not in the backend`);
      if (run.end?.status === 'succeeded') return { status: 'succeeded' };
      const source = await store.workflow(runId);
      if (!source) throw new FerryError('FERRY_RUN_CORRUPT', `run ${runId} has no workflow in the backend`);
      // The file as the run names it, from this process's working directory (DESIGN.md §7).
      const workflow = loadWorkflowText(path.resolve(source.file), source.source, ferry.workflows);
      const redactor = new Redactor();
      const stop = AbortSignal.any([this.#draining.signal, held.lost]);
      const journal = store.journal(runId, { redactor, resume: true, onFailure: () => undefined });
      const relay = new EventRelay(this.#backend, runId, redactor);
      relay.loops(new Map(workflow.steps.flatMap((s) => (s.kind === 'loop' && s.steps.length > 0 ? [[s.id, (s.steps.at(-1) as { id: string }).id] as const] : []))));
      // A journal of more than its `run` entry: another process (or attempt) ran it before.
      log(`${run.journalBytes > 1 ? 'resuming' : 'running'} run ${runId} of ${run.start.workflow}`);
      const session = resumeRun(workflow, {
        ferry,
        runId,
        inputs: run.start.inputs,
        trigger: run.start.trigger,
        resume: folding.result(),
        ...(job.data.resendFailed === true ? { resendFailed: true } : {}),
        secrets: envSecrets(env),
        secretHint: `on worker ${owner.host} (pid ${owner.pid}); every process of the pool needs the secrets of the workflows it runs`,
        env,
        redactor,
        signal: stop,
        journal,
        subscribers: [relay.listener as RunListener],
      });
      let status: RunJobResult;
      try {
        const summary = await session.done;
        status = { status: summary.status };
      } catch (error) {
        // The run could not start here (a secret this worker lacks, inputs the workflow no
        // longer takes): its end says so, in the journal every process reads.
        const end: JournalEntry = { t: 'end', status: 'failed', at: new Date().toISOString(), ms: 0, error: { step: '(run)', item: null, message: errorMessage(error), ...(error instanceof FerryError ? { code: error.code } : {}) } };
        journal.append(end);
        status = { status: 'failed', ...(error instanceof FerryError ? { code: error.code } : {}) };
      } finally {
        journal.close();
        await journal.closed();
        await relay.close();
      }
      log(`run ${runId} ${status.status}`);
      // Stopped because this process drains: another worker resumes it.
      if (this.#draining.signal.aborted && status.status === 'failed' && status.code === undefined) return await this.#requeue(job, token);
      return status;
    } finally {
      await held.release();
    }
  }

  async #requeue(job: Job<RunJobData, RunJobResult>, token: string | undefined): Promise<never> {
    await job.moveToDelayed(Date.now() + 100, token);
    throw new DelayedError();
  }

  /** Stops taking runs; the runs of this process stop and go back to the queue. */
  async close(): Promise<void> {
    this.#draining.abort('the worker is stopping');
    await this.#worker.close();
  }
}
