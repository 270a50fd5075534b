import { Ajv, type ValidateFunction } from 'ajv';
import { UsageError } from '../errors.js';
import { describeInputError } from '../providers/registry.js';
import type { Workflow } from '../workflow/types.js';

/**
 * Checks run inputs against the trigger's input schemas, each schema compiled once. A runtime
 * owns one (`ferry.inputs`), so that its validators live and die with it.
 */
export class InputChecker {
  readonly #ajv = new Ajv({ allErrors: false, strict: false, useDefaults: true, verbose: true });
  readonly #validators = new WeakMap<object, ValidateFunction>();

  /**
   * The inputs with defaults applied. Every declared input is required unless its schema has a
   * `default`. Throws UsageError (exit 2) naming the input and why.
   */
  check(workflow: Workflow, kind: 'manual' | 'webhook', inputs: Record<string, unknown>): Record<string, unknown> {
    const trigger = workflow.triggers.find((t) => t.type === kind) ?? workflow.triggers.find((t) => t.inputs !== undefined);
    const declared = trigger?.inputs;
    if (!declared) return inputs;
    let validate = this.#validators.get(declared);
    if (!validate) {
      const required = Object.entries(declared).filter(([, s]) => !('default' in s)).map(([k]) => k);
      validate = this.#ajv.compile({ type: 'object', properties: declared, required, additionalProperties: false });
      this.#validators.set(declared, validate);
    }
    const copy = { ...inputs };
    if (!validate(copy)) {
      const error = validate.errors?.[0];
      const message = describeInputError(error).replace(/^missing required input/, 'missing required input').replace(/input `([^`]*)`/, 'input `$1`');
      throw new UsageError(`invalid input: ${message}${error?.keyword === 'additionalProperties' ? ` (declared: ${Object.keys(declared).join(', ')})` : ''}`, 'FERRY_INPUT_INVALID');
    }
    return copy;
  }
}

/**
 * Checks run inputs once, with a checker of its own (the schema is compiled on every call);
 * code that checks many runs uses its runtime's `ferry.inputs` instead.
 */
export function checkInputs(workflow: Workflow, kind: 'manual' | 'webhook', inputs: Record<string, unknown>): Record<string, unknown> {
  return new InputChecker().check(workflow, kind, inputs);
}
