import { describe, expect, it } from 'vitest';
import { templateAst } from '../../src/template/compile.js';

interface AstNode {
  type: string;
  value?: unknown;
  path?: AstNode;
  parts?: string[];
  original?: unknown;
  data?: boolean;
  depth?: number;
  params?: AstNode[];
  hash?: unknown;
  loc?: { start: { line: number; column: number } };
}

const leaf = (n: AstNode | undefined): unknown => n && { type: n.type, value: n.value, parts: n.parts, original: n.original, data: n.data, depth: n.depth };

/** What compile.ts reads of a program: statement kinds, texts, paths, arguments and where each mustache starts. */
function shape(program: unknown): unknown[] {
  return (program as { body: AstNode[] }).body.map((n) =>
    n.type === 'MustacheStatement'
      ? { type: n.type, at: n.loc?.start, path: leaf(n.path), params: (n.params as AstNode[]).map(leaf), hash: n.hash }
      : { type: n.type, value: n.value },
  );
}

/** Handlebars' programs have a position; the plain parser's do not. */
const fromHandlebars = (program: unknown): boolean => (program as { loc?: unknown }).loc !== undefined;

const plainTemplates = [
  '<<user.id>>',
  '<< user.id >>',
  '<<steps.each_user.output.count>>',
  'synced <<steps.each_user.output.count>> users',
  '<<a>><<b>>',
  'a <<x>> b <<y.z>> c',
  'line one\n  line two <<user.name>>\nline three <<user.email>>\n',
  'it costs $5 <<price>>',
  '<<a.else>>',
  '<<_private.x_1>>',
  '<<json user.traits>>',
  '<<now>>',
  '<<lower user.email>>',
  '<< lower  user.email >>',
  '<<default user.name "anon">>',
  "<<default user.name 'a b'>>",
  '<<default user.name "">>',
  '<<default count 5>>',
  '<<default count -1.5>>',
  '<<a.b c>>',
  '<<shout user.id>> and <<whisper inputs.count>>',
  'Hello <<upper user.name>>, you are <<default user.age 0>>',
];

// Left to Handlebars: helpers, literals, `this`, data, parents, brackets, blocks, escapes.
const otherTemplates = [
  '<<true>>',
  '<<"text">>',
  '<<5>>',
  '<<x 5.>>',
  '<<x 5a>>',
  '<<x "a"b>>',
  '<<default x "}}">>',
  '<<default x "say \\"hi\\"">>',
  '<<default x true>>',
  '<<x a=b>>',
  '<<x (lower y)>>',
  '<<x\ty>>',
  '<<x this>>',
  '<<a.true>>',
  '<<null>>',
  '<<this.x>>',
  '<<thisUser.x>>',
  '<<@index>>',
  '<<../x>>',
  '<<a.[b c]>>',
  '<<a/b>>',
  '<<a.0>>',
  '<<a-b>>',
  '<<#if user.email>>x<</if>>',
  '<<else>>',
  '<<elsewhere>>',
  'a {{ b <<x>>',
  '<<user.id>>}}',
  '<<user.id>>}',
  '{<<user.id>>',
  'a } <<x>>',
  'a\\<<x>>',
  'a\0b <<x>>',
  '<<~x~>>',
];

describe('templates of text and plain paths skip the Handlebars parser', () => {
  it.each(plainTemplates)('%j gets the AST Handlebars gives it', (source) => {
    const plain = templateAst(source, { plain: true });
    const handlebars = templateAst(source, { plain: false });
    expect(fromHandlebars(plain)).toBe(false);
    expect(shape(plain)).toEqual(shape(handlebars));
  });

  it.each(otherTemplates)('%j is parsed by Handlebars', (source) => {
    let handlebars: unknown;
    let error: unknown;
    try {
      handlebars = templateAst(source, { plain: false });
    } catch (e) {
      error = e;
    }
    if (error) {
      expect(() => templateAst(source, { plain: true })).toThrow();
    } else {
      expect(fromHandlebars(templateAst(source, { plain: true }))).toBe(true);
      expect(shape(handlebars)).toBeDefined();
    }
  });

  // Handlebars is the oracle: whatever the plain parser accepts, Handlebars parses to the
  // same shape. Templates drawn from the pieces either parser could trip on, seeded.
  it('agrees with Handlebars on 3,000 generated templates', () => {
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const plainTokens = ['user.id', 'user', 'a.b.c', 'x1', '_y', 'json', 'default', 'now', '"s"', "'t t'", '""', '5', '-2', '0.5'];
    const otherTokens = ['"}"', '5.', 'true', 'this', 'else', '@index', '../a', '[a]', '(x)', 'a=b', '~', '#if', '/if'];
    const token = (): string => pick(random() < 0.9 ? plainTokens : otherTokens);
    const texts = ['', '', 'hi ', ' ', ':', '\n', 'x\ny ', '}', '{', '\\', '\0'];
    let plain = 0;
    for (let i = 0; i < 3000; i++) {
      const expr = (): string => `<<${pick(['', ' '])}${Array.from({ length: 1 + Math.floor(random() * 3) }, () => token()).join(pick([' ', '  ']))}${pick(['', ' '])}>>`;
      const source = `${pick(texts)}${expr()}${pick(texts)}${random() < 0.4 ? `${expr()}${pick(texts)}` : ''}`;
      let ast: unknown;
      try {
        ast = templateAst(source, { plain: true });
      } catch {
        continue; // left to Handlebars, which rejects it
      }
      if (fromHandlebars(ast)) continue;
      plain++;
      let handlebars: unknown;
      expect(() => (handlebars = templateAst(source, { plain: false })), JSON.stringify(source)).not.toThrow();
      expect(shape(ast), JSON.stringify(source)).toEqual(shape(handlebars));
    }
    expect(plain).toBeGreaterThan(300);
  });
});
