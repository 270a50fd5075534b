import { Ajv, type ValidateFunction } from 'ajv';
import { UsageError } from '../errors.js';
import { describeInputError } from '../providers/registry.js';
import type { ScheduleTrigger, Trigger, WebhookTrigger, Workflow } from '../workflow/types.js';
import type { TriggerData } from '../types.js';

/**
 * Checks run inputs against the trigger's input schemas, each schema compiled once. A runtime
 * owns one (`ferry.inputs`), so that its validators live and die with it.
 */
export class InputChecker {
  // Made at the first workflow with inputs: a run without any makes no Ajv. `validateSchema:
  // false`: loading the workflow checked every input schema against the meta-schema
  // (workflow/input-schema.ts); checking again would compile the meta-schema (some 25 ms).
  #ajv: Ajv | undefined;
  readonly #validators = new WeakMap<object, ValidateFunction>();

  /**
   * The inputs with defaults applied. Every declared input is required unless its schema has a
   * `default`. Throws UsageError (exit 2) naming the input and why.
   */
  check(workflow: Workflow, kind: TriggerData['type'], inputs: Record<string, unknown>): Record<string, unknown> {
    // A schedule declares no inputs: a scheduled run gets the defaults of the first trigger that does.
    const declaring = workflow.triggers.filter((t): t is Exclude<Trigger, ScheduleTrigger> => t.type !== 'schedule');
    const trigger = declaring.find((t) => t.type === kind) ?? declaring.find((t) => t.inputs !== undefined);
    return this.checkDeclared(trigger?.inputs, inputs);
  }

  /** `inputs` checked against one trigger's `inputs:` declaration (none: as they are). */
  checkDeclared(declared: Record<string, Record<string, unknown>> | undefined, inputs: Record<string, unknown>): Record<string, unknown> {
    if (!declared) return inputs;
    let validate = this.#validators.get(declared);
    if (!validate) {
      const required = Object.entries(declared).filter(([, s]) => !('default' in s)).map(([k]) => k);
      validate = (this.#ajv ??= new Ajv({ allErrors: false, strict: false, useDefaults: true, verbose: true, validateSchema: false })).compile({ type: 'object', properties: declared, required, additionalProperties: false });
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
export function checkInputs(workflow: Workflow, kind: TriggerData['type'], inputs: Record<string, unknown>): Record<string, unknown> {
  return new InputChecker().check(workflow, kind, inputs);
}

/**
 * The one rule that turns what starts a run into its inputs, for `ferry run` (`--input`,
 * `--body`), the listener and `ferry test`: when the webhook trigger the delivery came in on
 * (`hookPath`, else the workflow's first) declares `inputs:` and the body is a JSON object,
 * the body's fields are inputs; inputs given beside it (`--input`) win. The result is checked
 * against that trigger's declaration (as a manual start's for a manual start).
 */
export function runInputs(workflow: Workflow, trigger: TriggerData, given: Record<string, unknown> = {}, hookPath?: string, checker = new InputChecker()): Record<string, unknown> {
  if (trigger.type !== 'webhook') return checker.check(workflow, trigger.type, given);
  const hook = workflow.triggers.find((t): t is WebhookTrigger => t.type === 'webhook' && (hookPath === undefined || t.path === hookPath));
  // A workflow without a webhook trigger run with `--body`: its inputs are checked as a manual start's.
  if (!hook) return checker.check(workflow, 'webhook', given);
  const body = trigger.body;
  const fromBody = hook.inputs !== undefined && body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  return checker.checkDeclared(hook.inputs, { ...fromBody, ...given });
}
