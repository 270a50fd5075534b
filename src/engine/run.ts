import { FerryError, RunFailedError, errorMessage } from '../errors.js';
import type { TemplateContext } from '../template/compile.js';
import type { Step, Workflow } from '../workflow/types.js';
import type { RunEvent } from './events.js';
import { shapeOf } from './resume.js';
import { newRunId } from './run-id.js';
import { errorInfo, interruption, Run, type ItemScope, type RunOptions } from './state.js';
import { runSteps } from './steps.js';
import type { RunSummary, TriggerData } from '../types.js';
import type { RunMode } from '../store/journal.js';
import path from 'node:path';
import { FAILED_FILE } from '../store/failed.js';
import { runDir } from '../store/paths.js';

export { ResumeFold, resumeStateFrom, shapeOf, stepKey } from './resume.js';
export type { ResumeState } from './resume.js';
export { idempotencyKey } from './state.js';
export { DEFAULT_BATCH_WINDOW_MS } from './action.js';
export type { RunOptions } from './state.js';

/** A run whose context is built and providers rendered, ready to record and run. */
export interface PreparedRun {
  readonly run: Run;
  readonly context: TemplateContext;
  /** Outputs of the top-level steps, by id (also `context.steps`). */
  readonly steps: ItemScope['steps'];
  /** Rendering a provider block failed: the run fails with it when it runs. */
  readonly providersFailed: unknown;
}

/**
 * Builds a run's context and renders its provider blocks, so that provider keys join the
 * redactor before anything is recorded. Runs nothing; `runPrepared` does.
 */
export function prepareRun(workflow: Workflow, options: RunOptions): PreparedRun {
  const runId = options.runId ?? newRunId();
  const run = new Run(workflow, options, runId);
  const secrets = options.secrets ?? {};
  for (const value of Object.values(secrets)) options.redactor?.add(value);
  const trigger = options.trigger ?? { type: 'manual' };
  const steps: ItemScope['steps'] = {};
  const context: TemplateContext = {
    inputs: options.inputs ?? {},
    trigger: { type: trigger.type, body: trigger.body ?? null, headers: trigger.headers ?? {}, query: trigger.query ?? {}, ...(trigger.scheduled_at === undefined ? {} : { scheduled_at: trigger.scheduled_at }) },
    steps,
    env: { ...(options.env ?? options.ferry.env) },
    secrets,
    run: { id: runId },
    workflow: { name: workflow.name },
  };
  let providersFailed: unknown;
  try {
    renderProviders(run, context);
  } catch (error) {
    providersFailed = error;
  }
  return { run, context, steps, providersFailed };
}

/** The `run-started` event of a new run: what its journal's first entry holds. */
export function runStartedEvent(prepared: PreparedRun, annotations?: Record<string, unknown>): Extract<RunEvent, { type: 'run-started' }> {
  const { run } = prepared;
  const { options } = run;
  return startedEvent(run.workflow, { runId: run.runId, startedAt: run.summary.startedAt, mode: options.mode, inputs: options.inputs, trigger: options.trigger }, annotations);
}

/** The `run-started` event of a run of `workflow`, prepared or not (the listener records a delivery before preparing it). */
export function startedEvent(
  workflow: Workflow,
  run: { runId: string; startedAt: string; mode?: RunMode | undefined; inputs?: Record<string, unknown> | undefined; trigger?: TriggerData | undefined },
  annotations?: Record<string, unknown>,
): Extract<RunEvent, { type: 'run-started' }> {
  return {
    type: 'run-started',
    runId: run.runId,
    workflow: workflow.name,
    file: workflow.file,
    startedAt: run.startedAt,
    pid: process.pid,
    mode: run.mode ?? 'live',
    inputs: run.inputs ?? {},
    trigger: run.trigger ?? { type: 'manual' },
    shape: shapeOf(workflow.steps),
    ...(annotations ? { annotations } : {}),
  };
}

/** Runs a validated workflow from its first step to the end or to the first failed step. */
export async function runWorkflow(workflow: Workflow, options: RunOptions): Promise<RunSummary> {
  const prepared = prepareRun(workflow, options);
  const { run } = prepared;
  run.events.emit(options.resume ? { type: 'run-resumed', runId: run.runId, at: new Date().toISOString(), pid: process.pid } : runStartedEvent(prepared));
  return runPrepared(prepared);
}

/** Runs a prepared run whose start is recorded: its steps, then the `run-finished` event. */
export async function runPrepared(prepared: PreparedRun): Promise<RunSummary> {
  const { run, context, steps } = prepared;
  const started = performance.now();
  const stopPauses = prepared.providersFailed === undefined ? forwardPauses(run) : () => undefined;
  let interrupted: string | undefined;
  // The runtime writes this run's journal before each of its provider calls.
  const journal = run.options.journal;
  const untrack = journal ? run.ferry.trackJournal(journal, run.signal) : () => undefined;
  try {
    if (prepared.providersFailed !== undefined) throw prepared.providersFailed;
    // Every account the workflow names gets its scope (and this workflow's limits) before the
    // first call: a stricter limit holds from the start, whichever step calls first.
    for (const provider of run.providerConfigs.keys()) run.scope(provider);
    await run.routeCalls(context.secrets as Record<string, string>);
    await runSteps(run.workflow.steps, { context, steps, item: [], inner: undefined }, run);
    if (run.signal.aborted) throw interruption(run);
    if (run.failedItems > 0) throw itemsFailed(run);
  } catch (error) {
    const failure = error instanceof RunFailedError ? error : new RunFailedError('(run)', null, errorMessage(error), { cause: error });
    if (run.signal.aborted) interrupted = String(run.signal.reason ?? 'interrupted');
    run.summary.status = 'failed';
    run.summary.error = errorInfo(failure);
  } finally {
    untrack();
    stopPauses();
  }
  if (run.failedItems > 0) run.summary.failed_items = run.failedItems;
  run.summary.durationMs = Math.round(performance.now() - started);
  run.events.emit({ type: 'run-finished', summary: run.summary, at: new Date().toISOString(), ...(interrupted === undefined ? {} : { interrupted }) });
  return run.summary;
}

/** The run's error when every step ran but loop items were set aside (`on_error: continue`). */
function itemsFailed(run: Run): RunFailedError {
  const n = run.failedItems;
  const where = run.options.stateDir === undefined ? `\`ferry show ${run.runId}\` lists them` : `they are listed in ${path.join(runDir(run.options.stateDir, run.runId), FAILED_FILE)}`;
  const message = `${n} loop item${n === 1 ? '' : 's'} failed and ${n === 1 ? 'was' : 'were'} set aside (on_error: continue): ${where}; fix the cause, then \`ferry retry ${run.runId}\` sends only ${n === 1 ? 'it' : 'them'} again`;
  return new RunFailedError(run.firstSetAside ?? '(run)', null, message, { cause: new FerryError('FERRY_ITEMS_FAILED', message) });
}

/**
 * The pauses of the provider accounts this run calls, as `provider-paused` events. The limit
 * scopes are shared by the runs of a runtime; each run hears about the accounts it uses.
 */
function forwardPauses(run: Run): () => void {
  const scopes = new Set<string>();
  const collect = (steps: readonly Step[]): void => {
    for (const step of steps) {
      if (step.kind === 'loop') collect(step.steps);
      else {
        const provider = run.ferry.registry.action(step.action)?.provider.name;
        const scope = provider === undefined ? undefined : run.scope(provider);
        if (scope) scopes.add(scope.scope);
      }
    }
  };
  collect(run.workflow.steps);
  return run.limiter.onPause((event) => {
    if (scopes.has(event.scope)) run.events.emit({ type: 'provider-paused', provider: event.provider, account: event.account, scope: event.scope, waitMs: event.waitMs, reason: event.reason });
  });
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
  const redactor = run.options.redactor;
  if (!redactor) return;
  for (const [name, config] of run.providerConfigs) {
    const provider = run.ferry.registry.provider(name);
    for (const field of provider?.secretFields ?? []) {
      const value = config[field];
      if (typeof value === 'string') redactor.add(value);
    }
    for (const form of provider?.credentialForms?.(config) ?? []) redactor.add(form);
  }
}
