import { describe, expect, it } from 'vitest';
import { MAX_FILE_BYTES, MAX_INPUT_SCHEMA_NODES, MAX_ISSUES, MAX_LOOP_DEPTH, MAX_STEPS } from '../../src/limits.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { validateSource } from '../../src/workflow/validate.js';

// Each limit is met by a generated file just past it (and one at it): the answer is a located
// issue with its code, never a hang or a stack overflow. The suite's timeout is the only clock.

const registry = builtinRegistry();
const validate = (text: string): ReturnType<typeof validateSource> => validateSource('big.yaml', text, registry);
const codes = (text: string): string[] => validate(text).issues.map((i) => i.code);

/** `n` steps, one line each; with `refs`, every one reads the step before it. */
function steps(n: number, refs = true): string {
  const lines = ['name: big', 'steps:', '  - {id: s0, action: core.log, with: {message: start}}'];
  for (let i = 1; i < n; i++) lines.push(`  - {id: s${i}, action: core.log, with: {message: ${refs ? `"<<steps.s${i - 1}.output>>"` : 'x'}}}`);
  return `${lines.join('\n')}\n`;
}

/** Loops nested `depth` deep around one action step. */
function nestedLoops(depth: number): string {
  let text = 'name: loops\nsteps:\n';
  let indent = '  ';
  for (let i = 0; i < depth; i++) {
    text += `${indent}- id: l${i}\n${indent}  loop: { over: [1] }\n${indent}  steps:\n`;
    indent += '    ';
  }
  return `${text}${indent}- { id: inner, action: core.log, with: { message: hi } }\n`;
}

describe('file size', () => {
  it('refuses text over 1 MiB before parsing it, at 1:1', () => {
    const text = `name: big\nsteps:\n  - { id: a, action: core.log, with: { message: "${'x'.repeat(MAX_FILE_BYTES)}" } }\n`;
    expect(validate(text).issues).toEqual([expect.objectContaining({ line: 1, col: 1, code: 'FERRY_FILE_TOO_LARGE', message: expect.stringMatching(/at most 1 MiB/) })]);
  });

  it('refuses a 10 MB `default:` list with the size error alone', () => {
    const items = Array.from({ length: 400_000 }, (_, i) => `          - user-${i}-padding`).join('\n');
    const text = `name: big\ntriggers:\n  - type: manual\n    inputs:\n      users:\n        type: array\n        default:\n${items}\nsteps:\n  - { id: a, action: core.log, with: { message: hi } }\n`;
    expect(text.length).toBeGreaterThan(10_000_000);
    expect(codes(text)).toEqual(['FERRY_FILE_TOO_LARGE']);
  });

  it('counts bytes, not characters', () => {
    const text = `name: big\nsteps:\n  - { id: a, action: core.log, with: { message: "${'é'.repeat(MAX_FILE_BYTES / 2)}" } }\n`;
    expect(text.length).toBeLessThan(MAX_FILE_BYTES);
    expect(codes(text)).toEqual(['FERRY_FILE_TOO_LARGE']);
  });
});

describe('steps', () => {
  it(`validates ${MAX_STEPS} steps that each read the one before`, () => {
    const text = steps(MAX_STEPS);
    expect(Buffer.byteLength(text)).toBeLessThan(MAX_FILE_BYTES);
    const { issues, workflow } = validate(text);
    expect(issues).toEqual([]);
    expect(workflow?.steps).toHaveLength(MAX_STEPS);
  });

  it('refuses a 15,000-step file at its first step past the limit', () => {
    const text = steps(15_000, false);
    expect(Buffer.byteLength(text)).toBeLessThan(MAX_FILE_BYTES);
    const { issues } = validate(text);
    expect(issues).toEqual([expect.objectContaining({ code: 'FERRY_TOO_MANY_STEPS', line: MAX_STEPS + 3, col: 5 })]);
  });

  it('counts the steps inside loops', () => {
    const inner = Array.from({ length: MAX_STEPS }, (_, i) => `      - { id: s${i}, action: core.log, with: { message: hi } }`).join('\n');
    const { issues } = validate(`name: big\nsteps:\n  - id: each\n    loop: { over: [1] }\n    steps:\n${inner}\n`);
    expect(issues).toEqual([expect.objectContaining({ code: 'FERRY_TOO_MANY_STEPS', line: 5 + MAX_STEPS, col: 9 })]);
  });

  it('still tells a later step from an earlier one, and a step inside a loop from one beside it', () => {
    const { issues } = validate(`
name: refs
steps:
  - { id: first, action: core.log, with: { message: "<<steps.second.output>>" } }
  - id: each
    loop: { over: [1, 2] }
    steps:
      - { id: inside, action: core.log, with: { message: "<<steps.first.output>>" } }
      - { id: next, action: core.log, with: { message: "<<steps.inside.output>>" } }
  - { id: second, action: core.log, with: { message: "<<steps.inside.output>> <<steps.each.output>>" } }
`.slice(1));
    expect(issues.map((i) => [i.line, i.code])).toEqual([
      [3, 'FERRY_REF_LATER_STEP'],
      [9, 'FERRY_REF_INNER_STEP'],
    ]);
  });
});

describe('loops', () => {
  it(`accepts loops ${MAX_LOOP_DEPTH} deep and refuses the one past, at its \`loop\``, () => {
    expect(validate(nestedLoops(MAX_LOOP_DEPTH)).issues).toEqual([]);
    const { issues } = validate(nestedLoops(MAX_LOOP_DEPTH + 1));
    const line = 2 + MAX_LOOP_DEPTH * 3 + 2;
    expect(issues).toEqual([expect.objectContaining({ code: 'FERRY_LOOP_TOO_DEEP', line, col: 3 + MAX_LOOP_DEPTH * 4 + 8 })]);
  });
});

describe('input schemas', () => {
  const schema = (properties: number): string => {
    const props = Array.from({ length: properties }, (_, i) => `          p${i}: { type: string }`).join('\n');
    return `name: inputs\ntriggers:\n  - type: manual\n    inputs:\n      user:\n        type: object\n        properties:\n${props}\nsteps:\n  - { id: a, action: core.log, with: { message: "<<inputs.user>>" } }\n`;
  };

  it('refuses the inputs of a trigger over the size limit, at `inputs`', () => {
    expect(validate(schema(400)).issues).toEqual([]);
    const { issues } = validate(schema(MAX_INPUT_SCHEMA_NODES));
    expect(issues).toEqual([expect.objectContaining({ code: 'FERRY_INPUT_SCHEMA_TOO_LARGE', line: 5, col: 7 })]);
  });
});

describe('many mistakes', () => {
  it(`lists ${MAX_ISSUES} problems of a file and says there are more`, () => {
    const keys = Array.from({ length: 60_000 }, (_, i) => `k${i}: 1`).join('\n');
    const { issues } = validate(`name: t\n${keys}\nsteps:\n  - { id: a, action: core.log, with: { message: hi } }\n`);
    expect(issues).toHaveLength(MAX_ISSUES + 1);
    expect(issues[0]).toMatchObject({ line: 2, col: 1, code: 'FERRY_SCHEMA_UNKNOWN_KEY' });
    expect(issues.at(-1)).toMatchObject({ code: 'FERRY_TOO_MANY_ISSUES', line: MAX_ISSUES + 2 });
  });

  it('finds a repeated key among 50,000 keys of one mapping', () => {
    const headers = Array.from({ length: 50_000 }, (_, i) => `        h${i}: v`).join('\n');
    const { issues } = validate(`name: t\nsteps:\n  - id: a\n    action: http.request\n    with:\n      url: http://127.0.0.1:1\n      headers:\n${headers}\n        h7: again\n`);
    expect(issues).toEqual([expect.objectContaining({ code: 'FERRY_YAML_DUPLICATE_KEY', line: 50_008, col: 9 })]);
  });
});
