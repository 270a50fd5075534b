import { Ajv, type ValidateFunction } from 'ajv';
import { UsageError } from '../errors.js';
import { describeInputError } from '../providers/registry.js';
import { closest } from '../suggest.js';
import { toBool, toNumber } from '../template/convert.js';
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
   * `default`. Throws UsageError (exit 2) naming every input at fault and why.
   */
  check(workflow: Workflow, kind: TriggerData['type'], inputs: Record<string, unknown>): Record<string, unknown> {
    return this.checkDeclared(kindInputs(workflow, kind), inputs);
  }

  /** `inputs` checked against one trigger's `inputs:` declaration (none: as they are). */
  checkDeclared(declared: Record<string, Record<string, unknown>> | undefined, inputs: Record<string, unknown>): Record<string, unknown> {
    if (!declared) return inputs;
    let validate = this.#validators.get(declared);
    if (!validate) {
      const required = Object.entries(declared).filter(([, s]) => !('default' in s)).map(([k]) => k);
      validate = (this.#ajv ??= new Ajv({ allErrors: true, strict: false, useDefaults: true, verbose: true, validateSchema: false })).compile({ type: 'object', properties: declared, required, additionalProperties: false });
      this.#validators.set(declared, validate);
    }
    const copy = { ...inputs };
    if (!validate(copy)) {
      // Every problem at once: a user fixing `--input` flags should not meet them one run at a time.
      const names = Object.keys(declared);
      const problems = new Set((validate.errors ?? []).map((error) => {
        if (error.keyword !== 'additionalProperties') return describeInputError(error);
        const extra = String((error.params as { additionalProperty: unknown }).additionalProperty);
        const near = closest(extra, names);
        return `${describeInputError(error)} (declared: ${names.join(', ')})${near ? `; did you mean \`${near}\`?` : ''}`;
      }));
      const list = [...problems];
      throw new UsageError(list.length === 1 ? `invalid input: ${list[0] as string}` : `invalid inputs:\n${list.map((p) => `  ${p}`).join('\n')}`, 'FERRY_INPUT_INVALID');
    }
    return copy;
  }
}

type Declared = Record<string, Record<string, unknown>>;

/** The inputs a start of this kind is checked against; a schedule declares none and gets the first trigger's that does. */
function kindInputs(workflow: Workflow, kind: TriggerData['type']): Declared | undefined {
  const declaring = workflow.triggers.filter((t): t is Exclude<Trigger, ScheduleTrigger> => t.type !== 'schedule');
  return (declaring.find((t) => t.type === kind) ?? declaring.find((t) => t.inputs !== undefined))?.inputs;
}

/** The `inputs:` declaration a start is checked against by runInputs. */
export function declaredInputs(workflow: Workflow, trigger: TriggerData, hookPath?: string): Declared | undefined {
  if (trigger.type !== 'webhook') return kindInputs(workflow, trigger.type);
  const hook = workflow.triggers.find((t): t is WebhookTrigger => t.type === 'webhook' && (hookPath === undefined || t.path === hookPath));
  return hook ? hook.inputs : kindInputs(workflow, 'webhook');
}

/**
 * `--input name=text` as the input's declared type: a string input takes the text as it is,
 * a number, integer or boolean input its value (`42`, `yes`), anything else (arrays, objects,
 * an input without a declared type) the text's JSON when it parses. Text that does not convert
 * stays text, so that the check reports it beside every other problem.
 */
export function inputFromText(text: string, schema: Record<string, unknown> | undefined): unknown {
  const type = schema?.type;
  const types = typeof type === 'string' ? [type] : Array.isArray(type) ? type : [];
  if (types.includes('string')) return text;
  if (types.length === 1 && (types[0] === 'number' || types[0] === 'integer' || types[0] === 'boolean')) {
    try {
      return (types[0] === 'boolean' ? toBool(text) : toNumber(text)) ?? text;
    } catch {
      return text;
    }
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
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
