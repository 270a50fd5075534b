import { describe, expect, it } from 'vitest';
import { MAX_BLOCK_DEPTH, MAX_SUBEXPRESSION_DEPTH, MAX_TEMPLATE_LENGTH } from '../../src/limits.js';
import { compileTemplate, inspectTemplate, templateErrorOffset } from '../../src/template/compile.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { validateSource } from '../../src/workflow/validate.js';

const context = { user: { id: 'u_42', traits: { plan: 'pro' } }, inputs: { users: [1, 2] } };

/** The one error of a template: its code, message and offset in the source. */
function onlyError(source: string): { code: string; message: string; offset: number } {
  const { template, errors } = inspectTemplate(source);
  expect(template).toBeUndefined();
  expect(errors).toHaveLength(1);
  const [error] = errors;
  return { code: error?.code ?? '', message: error?.message ?? '', offset: error ? templateErrorOffset(error) : -1 };
}

const nestedIfs = (n: number): string => `${'<<#if user.id>>'.repeat(n)}x${'<</if>>'.repeat(n)}`;
const nested = (helper: string, n: number): string => `<<${`${helper} (`.repeat(n - 1)}${helper} user.id${')'.repeat(n - 1)}>>`;
const nestedJson = (n: number): string => nested('json', n);

describe('template bounds', () => {
  it('refuses a string of templates over the length limit, at its start', () => {
    const source = `<<user.id>>${' '.repeat(MAX_TEMPLATE_LENGTH)}`;
    expect(onlyError(source)).toMatchObject({ code: 'FERRY_TEMPLATE_TOO_LONG', offset: 0, message: expect.stringContaining(`at most ${MAX_TEMPLATE_LENGTH} characters`) });
  });

  it(`renders blocks nested ${MAX_BLOCK_DEPTH} deep`, () => {
    expect(compileTemplate(nestedIfs(MAX_BLOCK_DEPTH)).render(context)).toBe('x');
  });

  it('refuses 2,000 nested `<<#if>>` blocks at the first one past the limit', () => {
    const { code, offset } = onlyError(nestedIfs(2000));
    expect(code).toBe('FERRY_TEMPLATE_TOO_DEEP');
    expect(offset).toBe(MAX_BLOCK_DEPTH * '<<#if user.id>>'.length);
  });

  it('counts `<<^x>>` inverse blocks, and not `<<else>>` or closings', () => {
    const inverse = `${'<<^user.id>>'.repeat(MAX_BLOCK_DEPTH + 1)}x${'<</user.id>>'.repeat(MAX_BLOCK_DEPTH + 1)}`;
    expect(onlyError(inverse).code).toBe('FERRY_TEMPLATE_TOO_DEEP');
    const siblings = '<<#if user.id>>a<<else>>b<</if>>'.repeat(MAX_BLOCK_DEPTH * 4);
    expect(inspectTemplate(siblings).errors).toEqual([]);
  });

  it(`renders sub-expressions nested ${MAX_SUBEXPRESSION_DEPTH} deep`, () => {
    expect(compileTemplate(nested('lower', MAX_SUBEXPRESSION_DEPTH)).render(context)).toBe('u_42');
  });

  it('refuses 3,000 nested sub-expressions at the first parenthesis past the limit, without overflowing the stack', () => {
    const { code, offset } = onlyError(nestedJson(3000));
    expect(code).toBe('FERRY_TEMPLATE_TOO_DEEP');
    expect(offset).toBe(2 + MAX_SUBEXPRESSION_DEPTH * 'json ('.length + 'json '.length);
  });

  it('does not count parentheses inside quoted strings', () => {
    const source = `<<default user.missing "${'('.repeat(200)}">>`;
    expect(compileTemplate(source).render(context)).toBe('('.repeat(200));
  });

  it('reports deep nesting in a workflow at its line and column', () => {
    const text = `name: deep\nsteps:\n  - id: a\n    action: core.log\n    with:\n      message: "${nestedJson(3000)}"\n`;
    const { issues } = validateSource('deep.yaml', text, builtinRegistry());
    expect(issues).toEqual([expect.objectContaining({ code: 'FERRY_TEMPLATE_TOO_DEEP', line: 6, col: 17 + 2 + MAX_SUBEXPRESSION_DEPTH * 'json ('.length + 'json '.length })]);
  });
});

describe('helper arguments', () => {
  it.each([
    ['<<json>>', 'helper `json` takes 1 or 2 arguments, got 0'],
    ['<<eq user.id>>', 'helper `eq` takes 2 arguments, got 1'],
    ['<<default user.id>>', 'helper `default` takes 2 arguments, got 1'],
    ['<<and user.id>>', 'helper `and` takes at least 2 arguments, got 1'],
    ['<<not>>', 'helper `not` takes 1 argument, got 0'],
    ['<<uuid user.id>>', 'helper `uuid` takes no arguments, got 1'],
    ['<<lower user.id user.id>>', 'helper `lower` takes 1 argument, got 2'],
    ['<<length>>', 'helper `length` takes 1 argument, got 0'],
    ['x <<upper (json)>>', 'helper `json` takes 1 or 2 arguments, got 0'],
  ])('%s is an error: %s', (source, message) => {
    const { code, message: got } = onlyError(source);
    expect(code).toBe('FERRY_TEMPLATE_ARITY');
    expect(got).toContain(message);
  });

  it('points at the call with the wrong count', () => {
    expect(onlyError('hello <<user.id>> <<json>>').offset).toBe('hello <<user.id>> '.length);
  });

  it.each(['<<json user.traits>>', '<<json user.traits 2>>', '<<and user.id user.id user.id>>', '<<now>>', '<<uuid>>', '<<#each inputs.users>>x<</each>>'])('%s is accepted', (source) => {
    expect(inspectTemplate(source).errors).toEqual([]);
  });

  it('leaves a block helper its own message', () => {
    const { code, message } = onlyError('<<#if>>x<</if>>');
    expect(code).toBe('FERRY_TEMPLATE_SYNTAX');
    expect(message).toMatch(/takes exactly one argument/);
  });

  it('is a validate error at the helper, so `<<json>>` never prints the run context', () => {
    const text = 'name: arity\nsteps:\n  - id: a\n    action: core.log\n    with:\n      message: "all: <<json>>"\n';
    const { issues } = validateSource('arity.yaml', text, builtinRegistry());
    expect(issues).toEqual([expect.objectContaining({ code: 'FERRY_TEMPLATE_ARITY', line: 6, col: 22, message: expect.stringContaining('helper `json` takes 1 or 2 arguments, got 0') })]);
  });
});
