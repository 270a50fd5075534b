import { ActionInputError, FerryError, RunFailedError, TemplateError, errorMessage } from '../errors.js';
import type { Step } from '../workflow/types.js';
import type { CallSummary, InnerStepSummary, StepSummary } from '../types.js';
import { runAction } from './action.js';
import { runLoop } from './loop.js';
import { stepKey } from './resume.js';
import { errorInfo, interruption, ItemSetAside, type ItemScope, type Run } from './state.js';

/**
 * Runs steps in order within one scope (the workflow, or one loop item) until one fails. Never
 * throws: a failure comes back as the rejection.
 */
export function runSteps(steps: readonly Step[], scope: ItemScope, run: Run): Promise<void> {
  // A loop item of one step (the common case) waits on that step alone, with no frame of its own.
  if (steps.length === 1 && !run.stopping) return runStep(steps[0] as Step, scope, run);
  return runInOrder(steps, scope, run);
}

async function runInOrder(steps: readonly Step[], scope: ItemScope, run: Run): Promise<void> {
  for (const step of steps) {
    if (run.stopping) return;
    await runStep(step, scope, run);
  }
}

/**
 * Runs one step. Not async: an action step waiting for its call (a loop item in a batch) holds
 * one continuation, not a suspended frame of this function; a failure, thrown or not, comes
 * back as the rejection.
 */
function runStep(step: Step, scope: ItemScope, run: Run): Promise<void> {
  try {
    // A step that completed in an earlier attempt of this run is not run again: its output
    // comes back from the journal. Loops always re-enter, restoring their items one by one.
    const prior = step.kind === 'action' && run.options.resume ? run.options.resume.get(stepKey(step.id, scope.item)) : undefined;
    if (prior) {
      record(step, scope, run, { status: prior.status, output: prior.output, durationMs: prior.ms, resumed: true });
      return DONE;
    }

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
    if (!active) {
      finish(step, scope, run, { status: 'skipped', output: null, durationMs: 0 });
      return DONE;
    }

    if (step.kind === 'loop') return runLoopStep(step, scope, run, started);
    const calls: CallSummary = { calls: 0, attempts: 0, failures: {}, waitedMs: 0 };
    let pending: Promise<unknown>;
    try {
      pending = runAction(step, scope, run, calls);
    } catch (error) {
      return fail(step, scope, run, error, { status: 'failed', output: null, durationMs: since(started), calls });
    }
    return pending.then(
      (output) => {
        try {
          finish(step, scope, run, { status: 'succeeded', output: output ?? null, durationMs: since(started), calls });
        } catch (error) {
          fail(step, scope, run, error, { status: 'failed', output: null, durationMs: since(started), calls });
        }
      },
      (error: unknown) => fail(step, scope, run, error, { status: 'failed', output: null, durationMs: since(started), calls }),
    );
  } catch (error) {
    return Promise.reject(error as Error);
  }
}

const DONE: Promise<void> = Promise.resolve();

async function runLoopStep(step: Extract<Step, { kind: 'loop' }>, scope: ItemScope, run: Run, started: number): Promise<void> {
  const inner = new Map<string, InnerStepSummary>();
  try {
    const output = await runLoop(step, scope, run, inner, runSteps);
    finish(step, scope, run, { status: 'succeeded', output, durationMs: since(started), steps: Object.fromEntries(inner) });
  } catch (error) {
    fail(step, scope, run, error, { status: 'failed', output: null, durationMs: since(started), steps: Object.fromEntries(inner) });
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
  const failure = error instanceof RunFailedError ? error : stopped ? interruption(run) : asRunFailure(step, scope, error);
  summary.error = failure.message;
  // `on_error: continue`: the item is set aside and its loop goes on; the run does not stop.
  // A stop (a signal, another item's failure) leaves the item unfinished instead, to run again.
  if (step.kind === 'action' && step.onError === 'continue' && scope.inner !== undefined && !run.stopping) {
    finish(step, scope, run, summary, failure);
    throw new ItemSetAside(step.id, failure);
  }
  // An interruption is not the step's fault: the first real failure stays the run's error.
  if (!run.signal.aborted) run.failure ??= failure;
  // The journal says which items the stop left unsent (FERRY_ABORTED): `ferry retry` sends them.
  finish(step, scope, run, summary, stopped ? asRunFailure(step, scope, error) : undefined);
  throw failure;
}

function asRunFailure(step: Step, scope: ItemScope, error: unknown): RunFailedError {
  const { item, row } = scope;
  // An item of a file loop is named by its line too: that is where the user fixes it.
  const line = row?.line;
  const at = row === undefined ? '' : ` (${row.file} line ${row.line})`;
  const where = item.length > 0 ? `step \`${step.id}\`, loop item ${item.join('.')}${at}` : `step \`${step.id}\``;
  let cause = errorMessage(error);
  if (error instanceof TemplateError) {
    cause = `template ${error.field ? `in \`with.${error.field}\` ` : ''}${JSON.stringify(error.template)}: ${error.message}`;
  } else if (error instanceof ActionInputError) {
    cause = `invalid input: ${error.message}`;
  }
  return new RunFailedError(step.id, item.length > 0 ? item : null, `${where}: ${cause}`, line === undefined ? { cause: error } : { cause: error, line });
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
  for (const k in from.failures) into.failures[k] = (into.failures[k] ?? 0) + (from.failures[k] as number);
}
