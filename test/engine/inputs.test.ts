import { describe, expect, it } from 'vitest';
import { runInputs } from '../../src/engine/inputs.js';
import type { TriggerData } from '../../src/types.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { workflowFrom } from '../helpers/workflow.js';

const registry = builtinRegistry();
const steps = 'steps: [{ id: s, action: core.log, with: { message: hi } }]\n';
const workflows = {
  /** A webhook trigger that declares inputs, beside a manual one with its own. */
  typed: workflowFrom(`name: typed\ntriggers:\n  - { type: manual, inputs: { day: { type: string } } }\n  - { type: webhook, path: /typed, inputs: { n: { type: integer }, tag: { type: string, default: none } } }\n${steps}`, registry),
  /** A webhook trigger without inputs: the body is only `trigger.body`. */
  plain: workflowFrom(`name: plain\ntriggers: [{ type: webhook, path: /plain }]\n${steps}`, registry),
  /** Two webhook triggers; only the second declares inputs. */
  two: workflowFrom(`name: two\ntriggers:\n  - { type: webhook, path: /first }\n  - { type: webhook, path: /second, inputs: { n: { type: integer } } }\n${steps}`, registry),
  /** No webhook trigger: `--body` still works, inputs are checked as a manual start's. */
  manual: workflowFrom(`name: manual\ntriggers: [{ type: manual, inputs: { day: { type: string } } }]\n${steps}`, registry),
};

const hook = (body: unknown): TriggerData => ({ type: 'webhook', body, headers: {}, query: {} });

describe('the body -> inputs rule', () => {
  it.each<[string, keyof typeof workflows, TriggerData, Record<string, unknown>, string | undefined, Record<string, unknown> | string]>([
    ['a JSON object body becomes the inputs, defaults filled in', 'typed', hook({ n: 3 }), {}, undefined, { n: 3, tag: 'none' }],
    ['inputs given beside the body (--input) win over its fields', 'typed', hook({ n: 3, tag: 'a' }), { tag: 'b' }, undefined, { n: 3, tag: 'b' }],
    ['a body field the trigger does not declare is refused', 'typed', hook({ n: 3, extra: 1 }), {}, undefined, 'invalid input'],
    ['a body that is not an object gives no inputs, so required ones are missing', 'typed', hook([1, 2]), {}, undefined, 'missing required input'],
    ['a manual start is checked against the manual trigger', 'typed', { type: 'manual' }, { day: 'mon' }, undefined, { day: 'mon' }],
    ['a trigger without inputs leaves the body out of the inputs', 'plain', hook({ n: 3 }), {}, undefined, {}],
    ['the trigger of the path the delivery came in on applies', 'two', hook({ n: 3 }), {}, '/second', { n: 3 }],
    ['a path whose trigger declares nothing takes no inputs from the body', 'two', hook({ n: 'x' }), {}, '/first', {}],
    ['without a webhook trigger, given inputs are checked as a manual start', 'manual', hook({ day: 'x' }), { day: 7 }, undefined, 'must be string'],
  ])('%s', (_title, name, trigger, given, hookPath, expected) => {
    const run = () => runInputs(workflows[name], trigger, given, hookPath);
    if (typeof expected === 'string') expect(run).toThrow(expected);
    else expect(run()).toEqual(expected);
  });
});
