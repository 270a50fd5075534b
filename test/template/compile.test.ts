import { describe, expect, it } from 'vitest';
import { TemplateError } from '../../src/errors.js';
import { compileTemplate, inspectTemplate, templateErrorOffset } from '../../src/template/compile.js';
import { compileValue } from '../../src/template/value.js';

const context = {
  inputs: { users: [{ id: 'u1' }, { id: 'u2' }], count: 3, flag: false, empty: '', nothing: null },
  user: { id: 'u_42', email: 'Ada@Example.com', traits: { plan: 'pro', seats: 5 }, tags: ['a', 'b'] },
  steps: { amp: { output: 'success', status: 'succeeded' } },
  secrets: { KEY: 'k-123456' },
  loop: { index: 7 },
};
const render = (source: string, options = {}): unknown => compileTemplate(source, options).render(context);

describe('whole-scalar templates keep the type of the value', () => {
  it.each([
    ['<<user.traits>>', { plan: 'pro', seats: 5 }],
    ['<<user.tags>>', ['a', 'b']],
    ['<<inputs.count>>', 3],
    ['<<inputs.flag>>', false],
    ['<<inputs.nothing>>', null],
    ['<<loop.index>>', 7],
    ['<< user.id >>', 'u_42'],
    ['<<length user.tags>>', 2],
    ['<<eq inputs.count 3>>', true],
    ['<<default user.missing 5>>', 5],
    ['<<user.tags.[1]>>', 'b'],
  ])('%s renders to %j', (source, expected) => {
    expect(render(source)).toEqual(expected);
  });
});

describe('mixed templates render to strings', () => {
  it('joins text and values, objects as JSON and null as empty text', () => {
    expect(render('id=<<user.id>> traits=<<user.traits>> n=<<inputs.nothing>>')).toBe('id=u_42 traits={"plan":"pro","seats":5} n=');
  });
  it('does not HTML-escape', () => {
    expect(compileTemplate('<<x>> & <b>').render({ x: '<i>"q"&</i>' })).toBe('<i>"q"&</i> & <b>');
  });
  it('leaves literal {{ }} in the text alone', () => {
    expect(render('{{ not a template }} <<user.id>> {{x}}')).toBe('{{ not a template }} u_42 {{x}}');
    expect(render('plain {{user.id}}')).toBe('plain {{user.id}}');
  });
  it('keeps a backslash before a template as text', () => {
    expect(render('C:\\<<user.id>>')).toBe('C:\\u_42');
  });
  it('renders block helpers', () => {
    expect(render('<<#if user.email>>mail<<else>>none<</if>>')).toBe('mail');
    expect(render('<<#unless user.missing>>no value<</unless>>')).toBe('no value');
    expect(render('<<#each user.tags>><<@index>>=<<this>>;<</each>>')).toBe('0=a;1=b;');
  });
});

describe('missing paths are errors, unless made optional', () => {
  it('throws a TemplateError naming the path for a whole-scalar template', () => {
    expect(() => render('<<user.phone>>')).toThrowError(TemplateError);
    expect(() => render('<<user.phone>>')).toThrowError(/`user.phone` is not defined/);
  });
  it('throws for a missing path in mixed text and inside helper arguments', () => {
    expect(() => render('hi <<user.nickname>>')).toThrowError(/`user.nickname`/);
    expect(() => render('<<json user.nope>>')).toThrowError(/`user.nope`/);
    expect(() => render('<<upper (lower user.nope)>>')).toThrowError(/`user.nope`/);
    expect(() => render('<<no.such.root>>')).toThrowError(/`no.such.root`/);
  });
  it('accepts missing paths inside default, if and unless', () => {
    expect(render('<<default user.phone "n/a">>')).toBe('n/a');
    expect(render('x<<#if user.phone>>yes<</if>>')).toBe('x');
  });
  it('renders missing paths as undefined in lenient mode (the `if:` field)', () => {
    expect(render('<<user.phone>>', { lenient: true })).toBeUndefined();
    expect(render('<<eq user.phone "1">>', { lenient: true })).toBe(false);
  });
  it('never reads through prototypes', () => {
    expect(() => render('<<user.constructor>>')).toThrowError(TemplateError);
    expect(() => render('<<user.__proto__>>')).toThrowError(TemplateError);
  });
});

describe('helpers', () => {
  it.each([
    ['<<json user.traits>>', '{"plan":"pro","seats":5}'],
    ['<<lower user.email>>', 'ada@example.com'],
    ['<<upper user.id>>', 'U_42'],
    ['<<ne inputs.count 2>>', true],
    ['<<and inputs.count user.id>>', true],
    ['<<and inputs.count inputs.flag>>', false],
    ['<<or inputs.flag inputs.empty user.id>>', 'u_42'],
    ['<<not inputs.flag>>', true],
    ['<<length user.traits>>', 2],
    ['<<length user.email>>', 15],
    ['<<default inputs.empty "fallback">>', 'fallback'],
  ])('%s gives %j', (source, expected) => {
    expect(render(source)).toEqual(expected);
  });
  it('now gives the current ISO time and uuid a v4 uuid', () => {
    expect(Date.parse(String(render('<<now>>')))).toBeGreaterThan(Date.parse('2020-01-01'));
    expect(render('<<uuid>>')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
  it('rejects an unknown helper when compiling', () => {
    expect(() => compileTemplate('<<shout user.id>>')).toThrowError(/unknown helper `shout`/);
  });
});

describe('syntax errors are found at compile time', () => {
  it.each([
    ['hello <<user.id', /unclosed `<<`/],
    ['<<#if x>>open', /not closed/],
    ['<<#if x>>a<</each>>', /closed by/],
    ['<<> partial>>', /partials/],
  ])('%s', (source, message) => {
    expect(() => compileTemplate(source)).toThrowError(message);
  });
});

describe('block helpers take exactly one argument, checked at compile time', () => {
  it.each([
    ['<<#each>>x<</each>>', /`<<#each>>` takes exactly one argument/],
    ['<<#if>>x<</if>>', /`<<#if>>` takes exactly one argument/],
    ['<<#unless a b>>x<</unless>>', /`<<#unless>>` takes exactly one argument/],
    ['<<#with>>x<</with>>', /`<<#with>>` takes exactly one argument/],
  ])('%s', (source, message) => {
    expect(() => compileTemplate(source)).toThrowError(message);
  });
});

describe('inspecting a broken template', () => {
  it('returns every error in source order and the paths of the parts that parsed', () => {
    const { template, refs, errors } = inspectTemplate('<<shout user.id>> <<steps.a.output>> <<#each>>x<</each>> <<whisper inputs.count>>');
    expect(template).toBeUndefined();
    expect(errors.map((e) => [templateErrorOffset(e), e.message.replace(/;.*$/, '')])).toEqual([
      [0, 'unknown helper `shout`'],
      [37, '`<<#each>>` takes exactly one argument, the list or mapping to repeat over: `<<#each inputs.users>>...<</each>>`'],
      [57, 'unknown helper `whisper`'],
    ]);
    expect(refs.map((r) => [r.original, r.offset])).toEqual([
      ['user.id', 0],
      ['steps.a.output', 18],
      ['inputs.count', 57],
    ]);
  });
  it('returns the compiled template and no errors when the template is fine', () => {
    const { template, errors } = inspectTemplate('hi <<user.id>>');
    expect(errors).toEqual([]);
    expect(template?.render(context)).toBe('hi u_42');
  });
});

describe('compiled values', () => {
  it('renders templates inside nested objects and arrays and returns literals untouched', () => {
    const literal = { fixed: [1, 2] };
    const value = compileValue({ id: '<<user.id>>', nested: { tags: '<<user.tags>>', n: 1 }, list: ['<<loop.index>>', 'x'], literal });
    const out = value(context) as Record<string, unknown>;
    expect(out).toEqual({ id: 'u_42', nested: { tags: ['a', 'b'], n: 1 }, list: [7, 'x'], literal: { fixed: [1, 2] } });
    expect(out.literal).toBe(literal);
  });
  it('leaves out a key whose optional template rendered to nothing', () => {
    const value = compileValue({ phone: '<<default user.phone undefined>>', id: '<<user.id>>' });
    expect(value(context)).toEqual({ id: 'u_42' });
  });
  it('names the field of a failing template', () => {
    const value = compileValue({ traits: { phone: '<<user.phone>>' } });
    try {
      value(context);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(TemplateError);
      expect((error as TemplateError).field).toBe('traits.phone');
    }
  });
  it('never evaluates data values as templates', () => {
    const value = compileValue({ body: '<<trigger.body>>', text: 'got <<trigger.body.note>>' });
    const data = { trigger: { body: { note: '<<secrets.KEY>>' } }, secrets: { KEY: 'k-123456' } };
    expect(value(data)).toEqual({ body: { note: '<<secrets.KEY>>' }, text: 'got <<secrets.KEY>>' });
  });
});
