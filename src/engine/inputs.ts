import { Ajv, type ValidateFunction } from 'ajv';
import { UsageError } from '../errors.js';
import { describeInputError } from '../providers/registry.js';
import type { Workflow } from '../workflow/types.js';

const ajv = new Ajv({ allErrors: false, strict: false, useDefaults: true, verbose: true });
const cache = new WeakMap<object, ValidateFunction>();

/**
 * Checks run inputs against the trigger's input schemas before anything runs. Every declared
 * input is required unless its schema has a `default`. Throws UsageError (exit 2) naming
 * the input and why.
 */
export function checkInputs(workflow: Workflow, kind: 'manual' | 'webhook', inputs: Record<string, unknown>): Record<string, unknown> {
  const trigger = workflow.triggers.find((t) => t.type === kind) ?? workflow.triggers.find((t) => t.inputs !== undefined);
  const declared = trigger?.inputs;
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
