import path from 'node:path';
import type { Dispatcher } from 'undici';
import { ActionInputError, FerryError, RunFailedError, TemplateError, errorMessage } from '../errors.js';
import type { ActionContext, BatchSpec, LogLevel } from '../providers/define.js';
import { NEVER_ABORTED } from '../providers/http.js';
import type { RegisteredAction } from '../providers/registry.js';
import type { TemplateContext } from '../template/compile.js';
import { DEFAULT_MAX_WAIT_MS, parseDuration, type ActionStep, type LoopStep, type RetryPolicy, type Step } from '../workflow/types.js';
import type { BatchSettings } from './batcher.js';
import type { ProviderQueue } from './limiter.js';
import { stepKey } from './resume.js';
import { callWithRetry, type CallStats } from './retry.js';
import { confineDataPath } from './data-paths.js';
import { fingerprint, readItems, sourceChange, sourceChangedError, type SourceFingerprint } from './sources.js';
import { errorInfo, interruption, type ItemScope, type Run } from './state.js';
import type { CallSummary, InnerStepSummary, StepSummary } from '../types.js';

/** Runs steps in order within one scope (the workflow, or one loop item) until one fails. */
export async function runSteps(steps: readonly Step[], scope: ItemScope, run: Run): Promise<void> {
  for (const step of steps) {
    if (run.stopping) return;
    await runStep(step, scope, run);
  }
}

async function runStep(step: Step, scope: ItemScope, run: Run): Promise<void> {
  // A step that completed in an earlier attempt of this run is not run again: its output
  // comes back from the journal. Loops always re-enter, restoring their items one by one.
  const prior = step.kind === 'action' && run.options.resume ? run.options.resume.get(stepKey(step.id, scope.item)) : undefined;
  if (prior) return record(step, scope, run, { status: prior.status, output: prior.output, durationMs: prior.ms, resumed: true });

  const started = performance.now();
  const top = scope.inner === undefined;
  if (run.events.wants('step-started')) run.events.emit({ type: 'step-started', step: step.id, item: scope.item });
  if (top) run.active.add(step.id);

  let active = true;
  try {
    active = step.if === undefined ? true : typeof step.if === 'boolean' ? step.if : Boolean(step.if.render(scope.context));
  } catch (error) {
    return fail(step, scope, run, error, { status: 'failed', output: null, durationMs: since(started) });
  }
  if (!active) return finish(step, scope, run, { status: 'skipped', output: null, durationMs: 0 });

  if (step.kind === 'loop') {
    const inner = new Map<string, InnerStepSummary>();
    try {
      const output = await runLoop(step, scope, run, inner);
      finish(step, scope, run, { status: 'succeeded', output, durationMs: since(started), steps: Object.fromEntries(inner) });
    } catch (error) {
      return fail(step, scope, run, error, { status: 'failed', output: null, durationMs: since(started), steps: Object.fromEntries(inner) });
    }
    return;
  }
  const calls: CallSummary = { calls: 0, attempts: 0, failures: {}, waitedMs: 0 };
  try {
    const output = await runAction(step, scope, run, calls);
    finish(step, scope, run, { status: 'succeeded', output: output ?? null, durationMs: since(started), calls });
  } catch (error) {
    return fail(step, scope, run, error, { status: 'failed', output: null, durationMs: since(started), calls });
  }
}

const since = (started: number): number => Math.round(performance.now() - started);

/** Makes a step's outcome visible to later templates and to the run summary. */
function record(step: Step, scope: ItemScope, run: Run, summary: StepSummary): void {
  scope.steps[step.id] = { output: summary.output, status: summary.status };
  if (scope.inner === undefined) run.summary.steps[step.id] = summary;
  else addInner(scope.inner, step.id, summary);
}

/** Records a step that ran (or was skipped) and tells the run's listeners (the journal among them); `failure` is its own error, else the run's. */
function finish(step: Step, scope: ItemScope, run: Run, summary: StepSummary, failure?: RunFailedError): void {
  record(step, scope, run, summary);
  if (scope.inner === undefined) run.active.delete(step.id);
  if (!run.events.wants('step-finished')) return;
  const loop = step.kind === 'loop';
  const error = failure ?? run.failure;
  if (summary.status === 'failed' && error) run.events.emit({ type: 'step-finished', step: step.id, item: scope.item, loop, summary, error: errorInfo(error) });
  else run.events.emit({ type: 'step-finished', step: step.id, item: scope.item, loop, summary });
}

function fail(step: Step, scope: ItemScope, run: Run, error: unknown, summary: StepSummary): never {
  // A call cut short by the run's stop fails as the interruption, not as the provider's answer.
  const stopped = run.signal.aborted && error instanceof FerryError && error.code === 'FERRY_ABORTED';
  const failure = error instanceof RunFailedError ? error : stopped ? interruption(run) : asRunFailure(step, scope.item, error);
  summary.error = failure.message;
  // An interruption is not the step's fault: the first real failure stays the run's error.
  if (!run.signal.aborted) run.failure ??= failure;
  // The journal says which items the stop left unsent (FERRY_ABORTED): `ferry retry` sends them.
  finish(step, scope, run, summary, stopped ? asRunFailure(step, scope.item, error) : undefined);
  throw failure;
}

function asRunFailure(step: Step, item: number[], error: unknown): RunFailedError {
  const where = item.length > 0 ? `step \`${step.id}\`, loop item ${item.join('.')}` : `step \`${step.id}\``;
  let cause = errorMessage(error);
  if (error instanceof TemplateError) {
    cause = `template ${error.field ? `in \`with.${error.field}\` ` : ''}${JSON.stringify(error.template)}: ${error.message}`;
  } else if (error instanceof ActionInputError) {
    cause = `invalid input: ${error.message}`;
  }
  return new RunFailedError(step.id, item.length > 0 ? item : null, `${where}: ${cause}`, { cause: error });
}

function addInner(inner: Map<string, InnerStepSummary>, id: string, summary: StepSummary): void {
  let agg = inner.get(id);
  if (!agg) {
    agg = { succeeded: 0, failed: 0, skipped: 0, calls: { calls: 0, attempts: 0, failures: {}, waitedMs: 0 } };
    inner.set(id, agg);
  }
  agg[summary.status]++;
  if (summary.calls) mergeCalls(agg.calls, summary.calls);
}

function mergeCalls(into: CallSummary, from: CallSummary): void {
  into.calls += from.calls;
  into.attempts += from.attempts;
  into.waitedMs += from.waitedMs;
  for (const [k, v] of Object.entries(from.failures)) into.failures[k] = (into.failures[k] ?? 0) + v;
}

async function runLoop(step: LoopStep, scope: ItemScope, run: Run, inner: Map<string, InnerStepSummary>): Promise<{ count: number; items?: unknown[] }> {
  // File-sourced loops stream their rows and keep only the count: a million rows never sit
  // in memory. Arrays keep each item's outputs, in item order.
  let pull: () => Promise<IteratorResult<unknown>> | IteratorResult<unknown>;
  let outputs: unknown[] | undefined;
  let count = 0;
  let progress: LoopProgress | undefined;
  if (step.file !== undefined || step.fileTemplate !== undefined) {
    const key = stepKey(step.id, scope.item);
    const file = await openLoopFile(step, scope, run, key);
    const rows = readItems(file)[Symbol.asyncIterator]();
    pull = () => rows.next();
    // A resumed file loop restarts at the first unfinished row: rows below the journal's
    // progress mark are read past without running anything.
    const done = run.options.resume?.progress?.get(key) ?? 0;
    while (count < done && !(await rows.next()).done) count++;
    run.events.emit({ type: 'loop-started', step: step.id, item: scope.item, total: undefined });
    progress = new LoopProgress(count, (mark) => run.events.emit({ type: 'loop-progress', step: step.id, item: scope.item, done: mark }));
  } else {
    const items = step.over?.(scope.context);
    if (!Array.isArray(items)) {
      throw new RunFailedError(step.id, null, `step \`${step.id}\`: loop.over must render to an array, got ${items === null ? 'null' : typeof items}`);
    }
    outputs = new Array(items.length);
    run.events.emit({ type: 'loop-started', step: step.id, item: scope.item, total: items.length });
    const iterator = items[Symbol.iterator]();
    pull = () => iterator.next();
  }
  let sourceError: unknown;
  const worker = async (): Promise<void> => {
    while (!run.stopping && sourceError === undefined) {
      let next: IteratorResult<unknown>;
      try {
        next = await pull();
      } catch (error) {
        sourceError ??= error;
        return;
      }
      if (next.done) return;
      const index = count++;
      // Object.assign keeps a copy of the context at half the size of a spread.
      const steps = Object.assign({}, scope.steps);
      const context: TemplateContext = Object.assign({}, scope.context);
      context.steps = steps;
      context[step.as] = next.value;
      context.loop = { index };
      await runSteps(step.steps, { context, steps, item: [...scope.item, index], inner }, run).catch(() => undefined);
      // Finished means every inner step ran (or was skipped): a stop or a failure elsewhere
      // can leave an item half done, and its row must run again on retry.
      if (progress && allFinished(step.steps, steps)) progress.finished(index);
      if (outputs) {
        const out: Record<string, unknown> = {};
        for (const s of step.steps) if (steps[s.id]) out[s.id] = steps[s.id]?.output;
        outputs[index] = out;
      }
    }
  };
  await Promise.all(Array.from({ length: step.concurrency }, worker));
  progress?.flush();
  if (sourceError !== undefined) throw new RunFailedError(step.id, null, `step \`${step.id}\`: ${errorMessage(sourceError)}`, { cause: sourceError });
  if (run.failure) throw run.failure;
  if (run.signal.aborted) throw interruption(run);
  return outputs ? { count, items: outputs } : { count };
}

/**
 * The path a file loop reads. A templated `loop.file` may come from data, so it must stay
 * inside the allowed folders. A resumed run must read the very file its first attempt read
 * (rows are skipped by position); a first opening records what the file is.
 */
async function openLoopFile(step: LoopStep, scope: ItemScope, run: Run, key: string): Promise<string> {
  let file = step.file;
  if (step.fileTemplate !== undefined) {
    const value = step.fileTemplate(scope.context);
    if (typeof value !== 'string' || value === '') {
      throw new FerryError('FERRY_LOOP_FILE', `loop.file must render to a file path, got ${value === '' ? 'an empty string' : value === null ? 'null' : typeof value}`);
    }
    file = await confineDataPath(value, 'loop.file', path.dirname(run.workflow.file), await run.dataRoots());
  }
  if (file === undefined) throw new FerryError('FERRY_LOOP_FILE', 'loop.file is missing');
  const recorded = run.options.resume?.sources?.get(key);
  if (recorded) {
    const change = await sourceChange(recorded, file);
    if (change !== undefined) throw sourceChangedError(change, run.runId);
    return file;
  }
  let print: SourceFingerprint;
  try {
    print = await fingerprint(file);
  } catch (error) {
    throw new FerryError('FERRY_LOOP_FILE', `loop.file ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? errorMessage(error)})`, { cause: error });
  }
  run.events.emit({ type: 'loop-source', step: step.id, item: scope.item, ...print });
  return file;
}

function allFinished(steps: readonly Step[], outcomes: ItemScope['steps']): boolean {
  for (const s of steps) {
    const outcome = outcomes[s.id];
    if (outcome === undefined || outcome.status === 'failed') return false;
  }
  return true;
}

/**
 * The low-water mark of a file loop: every row below it finished. Written to the journal
 * every PROGRESS_EVERY rows, so that a retry can skip them without holding their entries.
 */
class LoopProgress {
  readonly #finished = new Set<number>();
  #low: number;
  #written: number;
  constructor(
    start: number,
    readonly write: (mark: number) => void,
  ) {
    this.#low = start;
    this.#written = start;
  }
  finished(index: number): void {
    this.#finished.add(index);
    while (this.#finished.delete(this.#low)) this.#low++;
    if (this.#low - this.#written >= PROGRESS_EVERY) this.flush();
  }
  flush(): void {
    if (this.#low === this.#written) return;
    this.#written = this.#low;
    this.write(this.#low);
  }
}

const PROGRESS_EVERY = 1000;

async function runAction(step: ActionStep, scope: ItemScope, run: Run, calls: CallSummary): Promise<unknown> {
  let shared = run.stepRuntimes.get(step);
  if (!shared) {
    shared = stepRuntime(step, run);
    run.stepRuntimes.set(step, shared);
  }
  let input: unknown;
  try {
    input = step.with(scope.context);
  } catch (error) {
    if (error instanceof TemplateError) error.step = step.id;
    throw error;
  }
  const checked = shared.registered.check(input);
  return shared.registered.definition.run(checked, new CallContext(shared, run, scope.item, calls));
}

/** What every call of one action step shares within a run, resolved on its first call. */
export interface StepRuntime {
  readonly step: ActionStep;
  readonly registered: RegisteredAction;
  readonly provider: string;
  readonly config: Record<string, unknown>;
  readonly queue: ProviderQueue;
  readonly policy: RetryPolicy;
  readonly baseDir: string;
  readonly timeoutMs: number;
  /** The provider block's `max_wait`: the longest pause a call may wait for. */
  readonly maxWaitMs: number;
  readonly batch: BatchSettings;
  /** What the step's calls share (ActionContext.shared): batch specs, made on the first call. */
  readonly shared: Map<string, unknown>;
}

function stepRuntime(step: ActionStep, run: Run): StepRuntime {
  const registered = run.ferry.registry.action(step.action);
  if (!registered) throw new FerryError('FERRY_UNKNOWN_ACTION', `unknown action \`${step.action}\``);
  const provider = registered.provider.name;
  const settings = run.workflow.providers[provider];
  const config = run.providerConfigs.get(provider) ?? {};
  let batch = run.batchSettings.get(provider);
  if (!batch) {
    batch = batchSettings(config);
    run.batchSettings.set(provider, batch);
  }
  return {
    step,
    registered,
    provider,
    config,
    queue: run.scope(provider) as ProviderQueue,
    policy: step.retry ?? run.workflow.retry,
    baseDir: path.dirname(run.workflow.file),
    timeoutMs: step.timeoutMs ?? run.workflow.timeoutMs,
    maxWaitMs: settings?.maxWaitMs ?? DEFAULT_MAX_WAIT_MS,
    batch,
    shared: new Map(),
  };
}

/** One call's ActionContext: the step's shared part plus this loop item. */
class CallContext implements ActionContext {
  readonly #shared: StepRuntime;
  readonly #run: Run;
  readonly #calls: CallSummary;
  readonly item: readonly number[];
  // Calls on the wire are not cut by a graceful stop: their timeout bounds them.
  readonly signal = NEVER_ABORTED;

  constructor(shared: StepRuntime, run: Run, item: readonly number[], calls: CallSummary) {
    this.#shared = shared;
    this.#run = run;
    this.item = item;
    this.#calls = calls;
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
  get timeoutMs(): number {
    return this.#shared.timeoutMs;
  }

  async resolveDataPath(value: string, field: string): Promise<string> {
    const { step, baseDir } = this.#shared;
    if (!step.templated.has(field) && !step.templated.has('*')) return path.resolve(baseDir, value);
    return confineDataPath(value, `\`with.${field}\``, baseDir, await this.#run.dataRoots());
  }

  idempotencyKey(salt?: string): string {
    return this.#run.keyFor(this.#shared.step.id, this.item, salt);
  }

  async call<T>(attempt: (http: Dispatcher) => Promise<T>): Promise<T> {
    const stats: CallStats = { attempts: 0, failures: [], waitedMs: 0 };
    const run = this.#run;
    try {
      const { policy, queue, maxWaitMs } = this.#shared;
      return await callWithRetry(() => attempt(run.dispatcher), { policy, queue, maxWaitMs, signal: run.signal, stats });
    } finally {
      addStats(this.#calls, stats);
    }
  }

  async batch<Item, Result>(spec: BatchSpec<Item, Result>, entry: Item): Promise<Result> {
    const stats: CallStats = { attempts: 0, failures: [], waitedMs: 0 };
    const { queue, batch, policy, maxWaitMs } = this.#shared;
    const run = this.#run;
    try {
      return await run.limiter.batcher(queue).add(spec, entry, { settings: batch, dispatcher: run.dispatcher, policy, maxWaitMs, signal: run.signal, stats });
    } finally {
      addStats(this.#calls, stats);
    }
  }

  shared<S>(key: string, make: () => S): S {
    const shared = this.#shared.shared;
    if (shared.has(key)) return shared.get(key) as S;
    const value = make();
    shared.set(key, value);
    return value;
  }

  log(level: LogLevel, message: string): void {
    const events = this.#run.events;
    if (events.wants('log')) events.emit({ type: 'log', level, message, step: this.#shared.step.id, item: this.item });
  }
}

function addStats(calls: CallSummary, stats: CallStats): void {
  calls.calls++;
  calls.attempts += stats.attempts;
  calls.waitedMs += stats.waitedMs;
  for (const f of stats.failures) calls.failures[String(f)] = (calls.failures[String(f)] ?? 0) + 1;
}

/** The provider block's `batch:` setting: true (default), false, or `{ max_items, window }`. */
function batchSettings(config: Record<string, unknown> | undefined): BatchSettings {
  const raw = config?.batch;
  if (raw === false) return { enabled: false, windowMs: 0, maxItems: undefined };
  const options = raw !== null && typeof raw === 'object' ? (raw as { max_items?: number; window?: string }) : {};
  return { enabled: true, windowMs: (options.window === undefined ? undefined : parseDuration(options.window)) ?? DEFAULT_BATCH_WINDOW_MS, maxItems: options.max_items };
}

/** Long enough for a loop's concurrent items to meet, short enough not to be felt. */
export const DEFAULT_BATCH_WINDOW_MS = 5;
