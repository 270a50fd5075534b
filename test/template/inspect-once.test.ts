import { describe, expect, it } from 'vitest';
import { compileTemplate, inspectTemplate } from '../../src/template/compile.js';

describe('a template seen again', () => {
  it('reads the same paths and renders the same, with lists of its own', () => {
    const first = inspectTemplate('hi <<user.name>> <<json user.traits>>');
    const second = inspectTemplate('hi <<user.name>> <<json user.traits>>');
    const { render: _render, ...described } = first.template ?? { render: undefined };
    expect(second.template).toMatchObject(described);
    expect(second.refs).not.toBe(first.refs);
    first.refs[0]?.parts.push('changed');
    expect(second.template?.refs.map((r) => r.original)).toEqual(['user.name', 'user.traits']);
    expect(second.refs[0]?.parts).toEqual(['user', 'name']);
    const context = { user: { name: 'Ada', traits: { plan: 'pro' } } };
    expect(second.template?.render(context)).toBe('hi Ada {"plan":"pro"}');
    expect(first.template?.render(context)).toBe('hi Ada {"plan":"pro"}');
  });

  it('is strict or lenient as asked each time', () => {
    expect(compileTemplate('<<user.email>>', { lenient: true }).render({ user: {} })).toBeUndefined();
    expect(() => compileTemplate('<<user.email>>').render({ user: {} })).toThrow(/not defined/);
    expect(compileTemplate('<<user.email>>', { lenient: true }).render({ user: {} })).toBeUndefined();
  });

  it('reports its errors every time', () => {
    for (let i = 0; i < 2; i++) {
      const { template, errors } = inspectTemplate('<<shout user.id>>');
      expect(template).toBeUndefined();
      expect(errors.map((e) => e.code)).toEqual(['FERRY_TEMPLATE_SYNTAX']);
    }
  });
});
