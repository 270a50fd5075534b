import path from 'node:path';
import { FerryError, TemplateError } from '../errors.js';
import { DEFAULT_MAX_WAIT_MS, parseDuration, type ActionStep } from '../workflow/types.js';
import type { CallSummary } from '../types.js';
import type { BatchSettings } from './batcher.js';
import { accountUrls } from './accounts.js';
import { CallContext } from './call-context.js';
import type { ProviderQueue } from './queue.js';
import type { ItemScope, Run, StepRuntime } from './state.js';

/**
 * Renders an action step's inputs, checks them and runs the action with one call's context.
 * Not async: a bad input throws here, inside the caller's try, and a waiting call keeps no frame of its own.
 */
export function runAction(step: ActionStep, scope: ItemScope, run: Run, calls: CallSummary): Promise<unknown> {
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
  const checked = shared.registered.check(shared.omitWhenNull.length > 0 ? omitNulls(input, shared.omitWhenNull) : input);
  return shared.registered.definition.run(checked, new CallContext(shared, run, scope.item, calls, scope.feed));
}

/**
 * `anonymousId: <<default ev.device_id null>>`: an optional input whose template rendered null
 * is left out, as if not written. The object is the render's own (a `with:` holding templates
 * renders a new one), so it is changed in place.
 */
function omitNulls(input: unknown, names: readonly string[]): unknown {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return input;
  const fields = input as Record<string, unknown>;
  for (const name of names) if (fields[name] === null) delete fields[name];
  return input;
}

function stepRuntime(step: ActionStep, run: Run): StepRuntime {
  const registered = run.ferry.registry.action(step.action);
  if (!registered) throw new FerryError('FERRY_UNKNOWN_ACTION', `unknown action \`${step.action}\``);
  const provider = registered.provider.name;
  const required: unknown[] = Array.isArray(registered.definition.input.required) ? registered.definition.input.required : [];
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
    urls: accountUrls(registered.provider, config),
    signal: undefined,
    queue: run.scope(provider) as ProviderQueue,
    omitWhenNull: [...step.templated].filter((name) => name !== '*' && !required.includes(name)),
    policy: step.retry ?? run.workflow.retry,
    baseDir: path.dirname(run.workflow.file),
    timeoutMs: step.timeoutMs ?? run.workflow.timeoutMs,
    maxWaitMs: settings?.maxWaitMs ?? DEFAULT_MAX_WAIT_MS,
    batch,
    specs: new Map(),
  };
}

/** The provider block's `batch:` setting: true (default), false, or `{ max_items, window }`. */
function batchSettings(config: Record<string, unknown> | undefined): BatchSettings {
  const raw = config?.batch;
  if (raw === false) return { enabled: false, windowMs: 0, maxItems: undefined };
  const options = raw !== null && typeof raw === 'object' ? (raw as { max_items?: number; window?: string }) : {};
  return { enabled: true, windowMs: (options.window === undefined ? undefined : parseDuration(options.window)) ?? DEFAULT_BATCH_WINDOW_MS, maxItems: options.max_items };
}

/**
 * The longest a batch waits for items that could still join it (a loop item still rendering, an
 * unbatched call of the same loop still on the wire): a batch leaves at once when none can.
 */
export const DEFAULT_BATCH_WINDOW_MS = 5;
