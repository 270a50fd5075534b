import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { ActionInputError, FerryError, ProviderError, RunFailedError, TemplateError, errorMessage } from '../errors.js';
import type { ActionContext, BatchSpec, LogLevel } from '../providers/define.js';
import { NEVER_ABORTED, sharedAgent } from '../providers/http.js';
import type { Registry } from '../providers/registry.js';
import type { TemplateContext } from '../template/compile.js';
import { parseDuration, type ActionStep, type LoopStep, type Step, type Workflow } from '../workflow/types.js';
import type { BatchSettings } from './batcher.js';
import { Limiter } from './limiter.js';
import type { Redactor } from './redact.js';
import { callWithRetry, type CallStats } from './retry.js';
import { newRunId } from './run-id.js';
import { readItems } from './sources.js';
import { noJournal, type JournalEntry, type RunJournal, type StepShape } from '../store/journal.js';
import type { CallSummary, InnerStepSummary, RunErrorInfo, RunObserver, RunSummary, StepStatus, StepSummary, TriggerData } from './types.js';

export interface RunOptions {
  registry: Registry;
  /** @default a new time-sortable id */
  runId?: string;
  /** Validated inputs (see checkInputs). */
  inputs?: Record<string, unknown>;
  /** @default { type: 'manual' } */
  trigger?: TriggerData;
  /** Values of the workflow's declared secrets, by name. */
  secrets?: Record<string, string>;
  /** @default process.env */
  env?: Record<string, string | undefined>;
  /** Per-provider queues; pass one Limiter to share them between runs. @default a process-wide Limiter */
  limiter?: Limiter;
  /** @default the shared keep-alive undici Agent */
  dispatcher?: Dispatcher;
  /** Provider block fields that replace the workflow's (the sandbox sets base_url and keys). */
  providerOverrides?: Record<string, Record<string, unknown>>;
  observer?: RunObserver;
  /** Collects secret values; the caller redacts what it prints with it. */
  redactor?: Redactor;
  /**
   * Graceful stop (SIGINT/SIGTERM): no new step, loop item or call starts; calls on the wire
   * finish within their timeout and are recorded. The run ends `failed` and can be retried.
   */
  signal?: AbortSignal;
  /** Where entries go; `FileJournal` in the CLI. @default nothing is kept */
  journal?: RunJournal;
  /** Steps that completed in an earlier attempt of this run (`ferry retry`), from its journal. */
  resume?: ResumeState;
}

/**
 * What a journal says already happened in a run: completed steps keyed by `stepKey`, and for
 * file loops the row below which every row finished (`progress`, keyed by the loop's stepKey).
 */
export type ResumeState = Map<string, { status: StepStatus; output: unknown; ms: number }> & { progress?: Map<string, number> };

/** A step's identity in one run: its id and loop position. */
export function stepKey(id: string, item: readonly number[]): string {
  return `${id}@${item.join('.')}`;
}

/**
 * The completed steps of a journal, ready for `RunOptions.resume`. Entries under a file
 * loop's progress mark are left out: those rows are skipped whole, so a resumed million-row
 * loop does not hold a million entries.
 */
export function resumeStateFrom(entries: readonly JournalEntry[]): ResumeState {
  const progress = new Map<string, number>();
  const loopsOf = new Map<string, string[]>();
  for (const e of entries) {
    if (e.t === 'progress') progress.set(stepKey(e.id, e.item), Math.max(progress.get(stepKey(e.id, e.item)) ?? 0, e.done));
    if (e.t === 'run') {
      const walk = (shape: StepShape[], loops: string[]): void => {
        for (const s of shape) {
          loopsOf.set(s.id, loops);
          if (s.steps) walk(s.steps, [...loops, s.id]);
        }
      };
      walk(e.shape, []);
    }
  }
  const below = (id: string, item: readonly number[]): boolean =>
    (loopsOf.get(id) ?? []).some((loop, depth) => (progress.get(stepKey(loop, item.slice(0, depth))) ?? 0) > (item[depth] ?? Infinity));
  const state: ResumeState = new Map();
  state.progress = progress;
  for (const e of entries) {
    if (e.t !== 'step') continue;
    const key = stepKey(e.id, e.item);
    if (e.status === 'failed') state.delete(key);
    else if (progress.size === 0 || !below(e.id, e.item)) state.set(key, { status: e.status, output: e.output ?? null, ms: e.ms });
  }
  return state;
}

let processLimiter: Limiter | undefined;
/** The per-process queues shared by every run that does not bring its own Limiter. */
export function defaultLimiter(): Limiter {
  processLimiter ??= new Limiter();
  return processLimiter;
}

interface ItemScope {
  context: TemplateContext;
  /** Outputs of steps visible in this scope, by id (also referenced from `context.steps`). */
  steps: Record<string, { output: unknown; status: string }>;
  item: number[];
  /** Inside a loop: per inner step aggregates. */
  inner: Map<string, InnerStepSummary> | undefined;
}

class Run {
  readonly summary: RunSummary;
  readonly providerConfigs = new Map<string, Record<string, unknown>>();
  failure: RunFailedError | undefined;
  readonly limiter: Limiter;
  readonly dispatcher: Dispatcher;
  readonly signal: AbortSignal;
  readonly journal: RunJournal;
  /** Steps running now, for the interruption message. */
  readonly active = new Set<string>();

  constructor(
    readonly workflow: Workflow,
    readonly options: RunOptions,
    readonly runId: string,
  ) {
    this.limiter = options.limiter ?? defaultLimiter();
    this.dispatcher = options.dispatcher ?? sharedAgent();
    this.signal = options.signal ?? new AbortController().signal;
    this.journal = options.journal ?? noJournal;
    this.summary = { runId, workflow: workflow.name, status: 'succeeded', error: null, steps: {}, startedAt: new Date().toISOString(), durationMs: 0 };
  }

  readonly #keyPrefixes = new Map<string, string>();

  /** idempotencyKey(), with the run+step part of the hash computed once per step. */
  keyFor(stepId: string, item: readonly number[], salt?: string): string {
    let prefix = this.#keyPrefixes.get(stepId);
    if (prefix === undefined) {
      prefix = keyPrefix(this.runId, stepId);
      this.#keyPrefixes.set(stepId, prefix);
    }
    return formatKey(prefix, item, salt);
  }

  get stopping(): boolean {
    return this.failure !== undefined || this.signal.aborted;
  }
}

/** Runs a validated workflow from its first step to the end or to the first failed step. */
export async function runWorkflow(workflow: Workflow, options: RunOptions): Promise<RunSummary> {
  const runId = options.runId ?? newRunId();
  const run = new Run(workflow, options, runId);
  const started = performance.now();
  const secrets = options.secrets ?? {};
  for (const value of Object.values(secrets)) options.redactor?.add(value);
  const trigger = options.trigger ?? { type: 'manual' };
  const steps: Record<string, { output: unknown; status: string }> = {};
  const context: TemplateContext = {
    inputs: options.inputs ?? {},
    trigger: { type: trigger.type, body: trigger.body ?? null, headers: trigger.headers ?? {}, query: trigger.query ?? {} },
    steps,
    env: { ...(options.env ?? process.env) },
    secrets,
    run: { id: runId },
    workflow: { name: workflow.name },
  };
  if (options.resume) run.journal.append({ t: 'resume', at: new Date().toISOString(), pid: process.pid });
  else {
    run.journal.append({
      t: 'run',
      v: 1,
      runId,
      workflow: workflow.name,
      file: workflow.file,
      startedAt: run.summary.startedAt,
      pid: process.pid,
      inputs: options.inputs ?? {},
      trigger,
      shape: shapeOf(workflow.steps),
    });
  }
  let interrupted: string | undefined;
  try {
    renderProviders(run, context);
    await runSteps(workflow.steps, { context, steps, item: [], inner: undefined }, run);
    if (run.signal.aborted) throw interruption(run);
  } catch (error) {
    const failure = error instanceof RunFailedError ? error : new RunFailedError('(run)', null, errorMessage(error), { cause: error });
    if (run.signal.aborted) interrupted = String(run.signal.reason ?? 'interrupted');
    run.summary.status = 'failed';
    run.summary.error = errorInfo(failure);
  }
  run.summary.durationMs = Math.round(performance.now() - started);
  run.journal.append({
    t: 'end',
    status: run.summary.status,
    at: new Date().toISOString(),
    ms: run.summary.durationMs,
    error: run.summary.error,
    ...(interrupted === undefined ? {} : { interrupted }),
  });
  return run.summary;
}

function interruption(run: Run): RunFailedError {
  const step = [...run.active][0] ?? '(run)';
  return new RunFailedError(step, null, `run interrupted by ${String(run.signal.reason ?? 'a signal')} before it finished`);
}

/** The nesting of step ids, kept in the journal to check a changed workflow on retry. */
export function shapeOf(steps: readonly Step[]): StepShape[] {
  return steps.map((s) => (s.kind === 'loop' ? { id: s.id, steps: shapeOf(s.steps) } : { id: s.id }));
}

function errorInfo(failure: RunFailedError): RunErrorInfo {
  const cause = failure.cause;
  const info: RunErrorInfo = { step: failure.step, item: failure.item?.at(-1) ?? null, message: failure.message };
  if (failure.item && failure.item.length > 1) info.itemPath = failure.item;
  if (cause instanceof FerryError) info.code = cause.code;
  if (cause instanceof ProviderError && cause.status !== undefined) info.status = cause.status;
  return info;
}

function renderProviders(run: Run, context: TemplateContext): void {
  for (const [name, settings] of Object.entries(run.workflow.providers)) {
    let config: Record<string, unknown>;
    try {
      config = settings.config(context) as Record<string, unknown>;
    } catch (error) {
      throw new RunFailedError(`providers.${name}`, null, `providers.${name}: ${errorMessage(error)}`, { cause: error });
    }
    run.providerConfigs.set(name, { ...config, ...run.options.providerOverrides?.[name] });
  }
  for (const [name, override] of Object.entries(run.options.providerOverrides ?? {})) {
    if (!run.providerConfigs.has(name)) run.providerConfigs.set(name, { ...override });
  }
  for (const [name, config] of run.providerConfigs) {
    for (const field of run.options.registry.provider(name)?.secretFields ?? []) {
      const value = config[field];
      if (typeof value === 'string') run.options.redactor?.add(value);
    }
  }
}

async function runSteps(steps: readonly Step[], scope: ItemScope, run: Run): Promise<void> {
  for (const step of steps) {
    if (run.stopping) return;
    await runStep(step, scope, run);
  }
}

async function runStep(step: Step, scope: ItemScope, run: Run): Promise<void> {
  const started = performance.now();
  const top = scope.inner === undefined;
  const record = (summary: StepSummary): void => {
    scope.steps[step.id] = { output: summary.output, status: summary.status };
    if (top) run.summary.steps[step.id] = summary;
    else addInner(scope.inner as Map<string, InnerStepSummary>, step.id, summary);
  };
  // A step that completed in an earlier attempt of this run is not run again: its output
  // comes back from the journal. Loops always re-enter, restoring their items one by one.
  const prior = step.kind === 'action' ? run.options.resume?.get(stepKey(step.id, scope.item)) : undefined;
  if (prior) return record({ status: prior.status, output: prior.output, durationMs: prior.ms, resumed: true });

  run.options.observer?.stepStarted?.(step.id, scope.item);
  if (top) run.active.add(step.id);
  const finish = (summary: StepSummary): void => {
    record(summary);
    if (top) run.active.delete(step.id);
    run.journal.append({
      t: 'step',
      id: step.id,
      item: scope.item,
      status: summary.status,
      // A loop's items are rebuilt from its inner steps' entries; only the count is kept.
      output: step.kind === 'loop' ? { count: (summary.output as { count?: number } | null)?.count ?? 0 } : summary.output,
      ms: summary.durationMs,
      ...(summary.calls && summary.calls.calls > 0 ? { calls: summary.calls } : {}),
      ...(summary.status === 'failed' && run.failure ? { error: errorInfo(run.failure) } : {}),
    });
    run.options.observer?.stepFinished?.(step.id, scope.item, summary);
  };
  const elapsed = (): number => Math.round(performance.now() - started);

  let active = true;
  try {
    active = step.if === undefined ? true : typeof step.if === 'boolean' ? step.if : Boolean(step.if.render(scope.context));
  } catch (error) {
    return fail(step, scope, run, error, { status: 'failed', output: null, durationMs: elapsed() }, finish);
  }
  if (!active) return finish({ status: 'skipped', output: null, durationMs: 0 });

  if (step.kind === 'loop') {
    const inner = new Map<string, InnerStepSummary>();
    try {
      const output = await runLoop(step, scope, run, inner);
      finish({ status: 'succeeded', output, durationMs: elapsed(), steps: Object.fromEntries(inner) });
    } catch (error) {
      return fail(step, scope, run, error, { status: 'failed', output: null, durationMs: elapsed(), steps: Object.fromEntries(inner) }, finish);
    }
    return;
  }
  const calls: CallSummary = { calls: 0, attempts: 0, failures: {}, waitedMs: 0 };
  try {
    const output = await runAction(step, scope, run, calls);
    finish({ status: 'succeeded', output: output ?? null, durationMs: elapsed(), calls });
  } catch (error) {
    return fail(step, scope, run, error, { status: 'failed', output: null, durationMs: elapsed(), calls }, finish);
  }
}

function fail(step: Step, scope: ItemScope, run: Run, error: unknown, summary: StepSummary, finish: (s: StepSummary) => void): never {
  const failure = error instanceof RunFailedError ? error : asRunFailure(step, scope.item, error);
  summary.error = failure.message;
  // An interruption is not the step's fault: the first real failure stays the run's error.
  if (!run.signal.aborted) run.failure ??= failure;
  finish(summary);
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
  if (step.file !== undefined) {
    const rows = readItems(step.file)[Symbol.asyncIterator]();
    pull = () => rows.next();
    // A resumed file loop restarts at the first unfinished row: rows below the journal's
    // progress mark are read past without running anything.
    const key = stepKey(step.id, scope.item);
    const done = run.options.resume?.progress?.get(key) ?? 0;
    while (count < done && !(await rows.next()).done) count++;
    progress = new LoopProgress(count, (mark) => run.journal.append({ t: 'progress', id: step.id, item: scope.item, done: mark }));
  } else {
    const items = step.over?.(scope.context);
    if (!Array.isArray(items)) {
      throw new RunFailedError(step.id, null, `step \`${step.id}\`: loop.over must render to an array, got ${items === null ? 'null' : typeof items}`);
    }
    outputs = new Array(items.length);
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
      const steps = { ...scope.steps };
      const context: TemplateContext = { ...scope.context, steps, [step.as]: next.value, loop: { index } };
      await runSteps(step.steps, { context, steps, item: [...scope.item, index], inner }, run).catch(() => undefined);
      // Finished means every inner step ran (or was skipped): a stop or a failure elsewhere
      // can leave an item half done, and its row must run again on retry.
      if (progress && step.steps.every((s) => steps[s.id] !== undefined && steps[s.id]?.status !== 'failed')) progress.finished(index);
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
  const registered = run.options.registry.action(step.action);
  if (!registered) throw new FerryError('FERRY_UNKNOWN_ACTION', `unknown action \`${step.action}\``);
  let input: unknown;
  try {
    input = step.with(scope.context);
  } catch (error) {
    if (error instanceof TemplateError) error.step = step.id;
    throw error;
  }
  const checked = registered.check(input);
  const providerName = registered.provider.name;
  const settings = run.workflow.providers[providerName];
  const defaults = registered.provider.defaults;
  const queue = run.limiter.queue(providerName, {
    concurrency: settings?.concurrency ?? defaults.concurrency,
    rate: settings?.rate ?? defaults.rate,
  });
  const policy = step.retry ?? run.workflow.retry;
  const item = scope.item;
  const context: ActionContext = {
    config: run.providerConfigs.get(providerName) ?? {},
    runId: run.runId,
    stepId: step.id,
    item,
    baseDir: path.dirname(run.workflow.file),
    timeoutMs: step.timeoutMs ?? run.workflow.timeoutMs,
    // Calls on the wire are not cut by a graceful stop: their timeout bounds them.
    signal: NEVER_ABORTED,
    idempotencyKey: (salt) => run.keyFor(step.id, item, salt),
    call: async <T>(attempt: (http: Dispatcher) => Promise<T>): Promise<T> => {
      const stats: CallStats = { attempts: 0, failures: [], waitedMs: 0 };
      try {
        return await callWithRetry(() => attempt(run.dispatcher), { policy, queue, signal: run.signal, stats });
      } finally {
        addStats(calls, stats);
      }
    },
    batch: async <Item, Result>(spec: BatchSpec<Item, Result>, entry: Item): Promise<Result> => {
      const stats: CallStats = { attempts: 0, failures: [], waitedMs: 0 };
      const batcher = run.limiter.batcher(queue, run.dispatcher, batchSettings(run.providerConfigs.get(providerName)));
      try {
        return await batcher.add(spec, entry, policy, stats);
      } finally {
        addStats(calls, stats);
      }
    },
    log: (level: LogLevel, message: string) => run.options.observer?.log?.(level, message, step.id, item),
  };
  return registered.definition.run(checked, context);
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

/**
 * Stable across retries and resumes of one run, new for a new run (DESIGN.md §4): a hash of
 * run id and step id, then the loop position. At most ~60 characters for deep loops, within
 * Segment's 100.
 */
export function idempotencyKey(runId: string, stepId: string, item: readonly number[], salt?: string): string {
  return formatKey(keyPrefix(runId, stepId), item, salt);
}

function keyPrefix(runId: string, stepId: string): string {
  return createHash('sha256').update(`${runId}\0${stepId}`).digest('hex').slice(0, 24);
}

function formatKey(prefix: string, item: readonly number[], salt: string | undefined): string {
  return `ferry-${prefix}-${item.join('.') || '0'}${salt ? `-${salt}` : ''}`;
}
