import { describe, expect, it } from 'vitest';
import { ActionInputError } from '../../src/errors.js';
import { defineAction, defineProvider } from '../../src/providers/define.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { validateSource } from '../../src/workflow/validate.js';
import { registryWith } from '../helpers/workflow.js';

// An action's own checks (the ones a run applies before sending) run in `ferry validate` on
// the inputs written without templates, and report at the value.

const step = (action: string, withBlock: string): string => `name: lit
providers:
  amplitude: { api_key: k }
  segment: { write_key: k }
steps:
  - id: a
    action: ${action}
    with:
${withBlock}
`;
const issuesOf = (text: string, registry = builtinRegistry()): { line: number; col: number; code: string; message: string }[] =>
  validateSource('lit.yaml', text, registry).issues.map(({ line, col, code, message }) => ({ line, col, code, message }));

describe('provider checks on literal inputs', () => {
  it.each([
    ['amplitude.send_event', '      user_id: abc\n      event_type: signup', 9, 16, /`amplitude.send_event`: `user_id` "abc" is shorter than 5 characters/],
    ['amplitude.send_event', '      device_id: anonymous\n      event_type: signup', 9, 18, /`device_id` "anonymous" is a value Amplitude rejects as an id/],
    ['amplitude.send_event', '      user_id: user_1001\n      event_type: signup\n      time: yesterday', 11, 13, /`time` "yesterday" is neither an ISO-8601 time/],
    ['amplitude.send_event', '      user_id: user_1001\n      event_type: signup\n      user_properties: { $set: { plan: pro }, seats: 5 }', 11, 24, /`user_properties` mixes operators \(\$set\) with plain keys \(seats\)/],
    ['amplitude.identify_user', '      user_id: user_1001\n      user_properties:\n        $set: { plan: pro }\n        seats: 5', 11, 9, /mixes operators \(\$set\) with plain keys \(seats\)/],
    ['amplitude.identify_user', `      user_id: user_1001\n      user_properties_json: '{"$set_once": {"a": 1}, "b": 2}'`, 10, 29, /`user_properties_json` mixes operators/],
    ['amplitude.identify_user', `      user_id: user_1001\n      user_properties_json: '{"plan": pro}'`, 10, 29, /`user_properties_json` is not valid JSON/],
    ['amplitude.identify_user', `      user_id: user_1001\n      user_properties: { $sett: { a: 1 } }`, 10, 24, /unknown operator `\$sett`/],
    ['segment.identify_user', `      userId: user_1001\n      traits: '{plan}'`, 10, 15, /`segment.identify_user`: `traits` is not valid JSON/],
  ])('%s: %s is a validate error at the value', (action, withBlock, line, col, message) => {
    const issues = issuesOf(step(action, withBlock));
    expect(issues).toEqual([{ line, col, code: 'FERRY_ACTION_INPUT', message: expect.stringMatching(message) }]);
  });

  it.each([
    ['a template', '      user_id: <<inputs.id>>\n      event_type: signup'],
    ['an object with a template inside', '      user_id: user_1001\n      event_type: signup\n      user_properties: { $set: { plan: pro }, seats: "<<inputs.seats>>" }'],
    ['a short id that min_id_length allows', '      user_id: abc\n      min_id_length: 3\n      event_type: signup'],
    ['an id whose min_id_length is a template', '      user_id: abc\n      min_id_length: <<inputs.min>>\n      event_type: signup'],
    ['a good time and operators only', '      user_id: user_1001\n      event_type: signup\n      time: "2026-01-01T00:00:00Z"\n      user_properties: { $set_once: { a: 1 }, $add: { n: 1 } }'],
  ])('leaves %s to the run', (_name, withBlock) => {
    expect(issuesOf(step('amplitude.send_event', withBlock))).toEqual([]);
  });

  it('leaves a value of the wrong type to the schema alone', () => {
    const issues = issuesOf(step('amplitude.send_event', '      user_id: user_1001\n      event_type: signup\n      user_properties: [1, 2]'));
    expect(issues.map((i) => i.code)).toEqual(['FERRY_SCHEMA_TYPE']);
  });

  it('runs a provider check declared once in both validate and the run', async () => {
    const seen: unknown[] = [];
    const provider = defineProvider({
      name: 'shop',
      description: 'test provider',
      defaults: { concurrency: 1 },
      actions: [
        defineAction<{ sku: string }, string>({
          name: 'order',
          description: 'orders one thing',
          input: { type: 'object', properties: { sku: { type: 'string' } }, required: ['sku'], additionalProperties: false },
          checks: [
            {
              reads: ['sku'],
              check: (input) => {
                seen.push(input.sku);
                if (!/^SKU-/.test(input.sku ?? '')) throw new ActionInputError(`\`sku\` ${JSON.stringify(input.sku)} must start with SKU-`, 'sku');
              },
            },
          ],
          run: async (input) => input.sku,
        }),
      ],
    });
    const registry = registryWith(provider);
    const text = 'name: shop\nsteps:\n  - id: a\n    action: shop.order\n    with: { sku: "nope" }\n  - id: b\n    action: shop.order\n    with: { sku: "<<inputs.sku>>" }\n';
    expect(issuesOf(text, registry)).toEqual([{ line: 5, col: 18, code: 'FERRY_ACTION_INPUT', message: '`shop.order`: `sku` "nope" must start with SKU-' }]);
    const action = registry.action('shop.order');
    expect(() => action?.check({ sku: 'also-nope' })).toThrow(/`sku` "also-nope" must start with SKU-/);
    expect(action?.check({ sku: 'SKU-1' })).toEqual({ sku: 'SKU-1' });
    expect(seen).toEqual(['nope', 'also-nope', 'SKU-1']);
  });
});
