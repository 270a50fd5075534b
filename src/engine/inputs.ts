import { Ajv, type ValidateFunction } from 'ajv';
import { UsageError } from '../errors.js';
import { describeInputError } from '../providers/registry.js';
import type { WebhookTrigger, Workflow } from '../workflow/types.js';
import type { TriggerData } from './types.js';

const ajv = new Ajv({ allErrors: false, strict: false, useDefaults: true, verbose: true });
const cache = new WeakMap<object, ValidateFunction>();

/**
 * Checks run inputs against the trigger's input schemas before anything runs. Every declared
 * input is required unless its schema has a `default`. Throws UsageError (exit 2) naming
 * the input and why.
 */
export function checkInputs(workflow: Workflow, kind: 'manual' | 'webhook', inputs: Record<string, unknown>): Record<string, unknown> {
  const trigger = workflow.triggers.find((t) => t.type === kind) ?? workflow.triggers.find((t) => t.inputs !== undefined);
  return checkDeclared(trigger?.inputs, inputs);
}

/**
 * The one rule that turns what starts a run into its inputs, for `ferry run` (`--input`,
 * `--body`), the listener and `ferry test`: when the webhook trigger the delivery came in on
 * (`hookPath`, else the workflow's first) declares `inputs:` and the body is a JSON object,
 * the body's fields are inputs; inputs given beside it (`--input`) win. The result is checked
 * against that trigger's declaration (checkInputs for a manual start).
 */
export function runInputs(workflow: Workflow, trigger: TriggerData, given: Record<string, unknown> = {}, hookPath?: string): Record<string, unknown> {
  if (trigger.type !== 'webhook') return checkInputs(workflow, trigger.type, given);
  const hook = workflow.triggers.find((t): t is WebhookTrigger => t.type === 'webhook' && (hookPath === undefined || t.path === hookPath));
  // A workflow without a webhook trigger run with `--body`: its inputs are checked as a manual start's.
  if (!hook) return checkInputs(workflow, 'webhook', given);
  const body = trigger.body;
  const fromBody = hook.inputs !== undefined && body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  return checkDeclared(hook.inputs, { ...fromBody, ...given });
}

function checkDeclared(declared: Record<string, Record<string, unknown>> | undefined, inputs: Record<string, unknown>): Record<string, unknown> {
  if (!declared) return inputs;
  let validate = cache.get(declared);
  if (!validate) {
    const required = Object.entries(declared).filter(([, s]) => !('default' in s)).map(([k]) => k);
    validate = ajv.compile({ type: 'object', properties: declared, required, additionalProperties: false });
    cache.set(declared, validate);
  }
  const copy = { ...inputs };
  if (!validate(copy)) {
    const error = validate.errors?.[0];
    const message = describeInputError(error).replace(/^missing required input/, 'missing required input').replace(/input `([^`]*)`/, 'input `$1`');
    throw new UsageError(`invalid input: ${message}${error?.keyword === 'additionalProperties' ? ` (declared: ${Object.keys(declared).join(', ')})` : ''}`, 'FERRY_INPUT_INVALID');
  }
  return copy;
}
