/**
 * Most templates are text with `<<a.path>>` or `<<helper a.path "text">>` in it. Their
 * Handlebars AST is built here, without Handlebars: loading it and warming up its parser
 * takes longer than validating twenty workflow files. Anything else is left to Handlebars.
 */
import type { AstNode, PathNode, Segment } from './source.js';

/** Names Handlebars' lexer reads as literals. */
const LITERALS = new Set(['true', 'false', 'null', 'undefined']);

// One token of an expression, each followed by a space or the end: a path of plain names, a
// quoted string without escapes or braces, a number. Nothing else (`this`, `@data`, `../`,
// `[...]`, `a=b`, `(sub)`, `~`, `#block`, `else`) matches.
const TOKEN = /(?:([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)|"([^"\\{}~]*)"|'([^'\\{}~]*)'|(-?[0-9]+(?:\.[0-9]+)?))(?= |$)/y;

/**
 * The AST Handlebars parses from `hbSource` (made of `segments` by compile.ts), as far as
 * compile.ts reads it, or undefined when Handlebars has to parse it. Positions are those of
 * the `{{` of each mustache, which compile.ts maps to the same `<<` as Handlebars' own.
 */
export function plainProgram(segments: readonly Segment[], hbSource: string, starts: readonly { hbOffset: number }[]): AstNode | undefined {
  const body: AstNode[] = [];
  let expr = 0;
  // Expressions come in source order: lines are counted once, from one to the next.
  const at = { offset: 0, line: 1, lineStart: 0 };
  for (const seg of segments) {
    if (seg.exprOffset === undefined) {
      // `{{` in text is escaped, `\` may escape a mustache, a brace next to a mustache makes
      // it `{{{` or `}}}}` to Handlebars' lexer, and NUL stops it.
      if (/[{}\\\0]/.test(seg.text)) return undefined;
      body.push({ type: 'ContentStatement', value: seg.text, original: seg.text });
      continue;
    }
    const loc = position(hbSource, (starts[expr++] as { hbOffset: number }).hbOffset, at);
    const items = expression(seg.text, loc);
    const [path, ...params] = items ?? [];
    if (path?.type !== 'PathExpression') return undefined;
    body.push({ type: 'MustacheStatement', path, params, hash: undefined, loc });
  }
  return { type: 'Program', body };
}

function expression(text: string, loc: AstNode['loc']): AstNode[] | undefined {
  const items: AstNode[] = [];
  let at = 0;
  for (;;) {
    while (text[at] === ' ') at++;
    if (at === text.length) return items;
    TOKEN.lastIndex = at;
    const m = TOKEN.exec(text);
    if (!m) return undefined;
    at = TOKEN.lastIndex;
    const [, path, double, single, number] = m;
    if (path !== undefined) {
      const parts = path.split('.');
      if (parts.some((p) => LITERALS.has(p)) || /^(this|else)/.test(path)) return undefined;
      items.push({ type: 'PathExpression', parts, original: path, data: false, depth: 0, loc } satisfies PathNode);
    } else if (number !== undefined) {
      items.push({ type: 'NumberLiteral', value: Number(number), original: Number(number), loc });
    } else {
      const value = double ?? single ?? '';
      items.push({ type: 'StringLiteral', value, original: value, loc });
    }
  }
}

/** Handlebars' position of an offset (1-based line, 0-based column), counting on from `from`, which it moves there. */
function position(text: string, offset: number, from: { offset: number; line: number; lineStart: number }): { start: { line: number; column: number } } {
  for (let i = text.indexOf('\n', from.offset); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    from.line++;
    from.lineStart = i + 1;
  }
  from.offset = offset;
  return { start: { line: from.line, column: offset - from.lineStart } };
}
