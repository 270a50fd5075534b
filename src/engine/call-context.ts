import path from 'node:path';
import type { Dispatcher } from 'undici';
import type { ActionContext, BatchDeclaration, CallOptions, BatchSpec, BatchVariant } from '../providers/define.js';
import type { CallSummary, LogLevel } from '../types.js';
import { confineDataPath } from './data-paths.js';
import type { Feed } from './feed.js';
import { addStats, callWithRetry, type CallStats } from './retry.js';
import type { Run, StepRuntime } from './state.js';

/** One call's ActionContext: the step's shared part plus this loop item. */
export class CallContext implements ActionContext {
  readonly #shared: StepRuntime;
  readonly #run: Run;
  readonly #calls: CallSummary;
  readonly item: readonly number[];
  /** The innermost loop the call runs in, if any: its batches flush when that loop can add no item. */
  readonly #feed: Feed | undefined;

  constructor(shared: StepRuntime, run: Run, item: readonly number[], calls: CallSummary, feed?: Feed) {
    this.#shared = shared;
    this.#run = run;
    this.item = item;
    this.#calls = calls;
    this.#feed = feed;
  }

  get config(): Record<string, unknown> {
    return this.#shared.config;
  }
  get runId(): string {
    return this.#run.runId;
  }
  get stepId(): string {
    return this.#shared.step.id;
  }
  get baseDir(): string {
    return this.#shared.baseDir;
  }
  get outputReads(): ReadonlySet<string> | undefined {
    return this.#shared.step.outputReads;
  }
  get urls(): Readonly<Record<string, string>> {
    return this.#shared.urls;
  }
  get timeoutMs(): number {
    return this.#shared.timeoutMs;
  }
  get signal(): undefined {
    return this.#shared.signal;
  }

  async resolveDataPath(value: string, field: string): Promise<string> {
    const { step, baseDir } = this.#shared;
    if (!step.templated.has(field) && !step.templated.has('*')) return path.resolve(baseDir, value);
    return confineDataPath(value, `\`with.${field}\``, baseDir, await this.#run.dataRoots());
  }

  idempotencyKey(salt?: string): string {
    return this.#run.keyFor(this.#shared.step.id, this.item, salt);
  }

  async call<T>(attempt: (http: Dispatcher) => Promise<T>, options?: CallOptions): Promise<T> {
    const stats: CallStats = { attempts: 0, failures: [], waitedMs: 0 };
    const run = this.#run;
    try {
      const { policy, queue, maxWaitMs, provider } = this.#shared;
      // A streamed answer (a large download) is read where it is written: by this process.
      const http = options?.streamed === true ? run.dispatcher : run.dispatcherFor(provider);
      return await callWithRetry(() => attempt(http), { policy, queue, maxWaitMs, signal: run.signal, stats });
    } finally {
      addStats(this.#calls, stats);
    }
  }

  batch<Item, Result, Variant extends BatchVariant = undefined>(declaration: BatchDeclaration<Item, Result, Record<string, unknown>, string, Variant>, entry: Item, variant?: Variant): Promise<Result> {
    const stats: CallStats = { attempts: 0, failures: [], waitedMs: 0 };
    const shared = this.#shared;
    const run = this.#run;
    try {
      const spec = this.#spec(declaration as BatchDeclaration<unknown, unknown, Record<string, unknown>, string, BatchVariant>, variant) as BatchSpec<Item, Result>;
      shared.batchCall ??= { settings: shared.batch, dispatcher: run.dispatcherFor(shared.provider), policy: shared.policy, maxWaitMs: shared.maxWaitMs, signal: run.signal };
      // The batcher adds the call's stats to the step's when it settles the item: a waiting
      // item keeps no frame of this method alive.
      return run.limiter.batcher(shared.queue).add(spec, entry, shared.batchCall, stats, this.#feed, this.#calls);
    } catch (error) {
      addStats(this.#calls, stats);
      return Promise.reject(error as Error);
    }
  }

  /** The declaration's spec for this step and `variant`: made on the step's first call, then looked up. */
  #spec(declaration: BatchDeclaration<unknown, unknown, Record<string, unknown>, string, BatchVariant>, variant: BatchVariant): BatchSpec<unknown, unknown> {
    const runtime = this.#shared;
    let byVariant = runtime.specs.get(declaration as BatchDeclaration<unknown, unknown>);
    if (byVariant === undefined) {
      byVariant = new Map();
      runtime.specs.set(declaration as BatchDeclaration<unknown, unknown>, byVariant);
    }
    let spec = byVariant.get(variant);
    if (spec === undefined) {
      spec = declaration.spec(runtime, variant);
      byVariant.set(variant, spec);
    }
    return spec;
  }

  log(level: LogLevel, message: string): void {
    const events = this.#run.events;
    if (events.wants('log')) events.emit({ type: 'log', level, message, step: this.#shared.step.id, item: this.item });
  }
}
