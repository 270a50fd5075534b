import { TemplateError } from '../errors.js';
import { MAX_BLOCK_DEPTH, MAX_SUBEXPRESSION_DEPTH } from '../limits.js';

// A template's source on its way to Handlebars: `<<...>>` segments, the Handlebars text they
// become (and where each expression starts in it), syntax errors, and the AST node shapes
// compile.ts and plain-parse.ts read.

export interface Segment {
  text: string;
  /** Set for an expression segment: the source offset of its `<<`. */
  exprOffset?: number;
}

/** Splits `a <<x>> b` into text and expression segments; `>>` inside a quoted string does not close. */
export function split(source: string): Segment[] {
  const segments: Segment[] = [];
  let pos = 0;
  while (pos < source.length) {
    const open = source.indexOf('<<', pos);
    if (open === -1) {
      segments.push({ text: source.slice(pos) });
      break;
    }
    if (open > pos) segments.push({ text: source.slice(pos, open) });
    let i = open + 2;
    let quote: string | null = null;
    for (; i < source.length; i++) {
      const ch = source[i];
      if (quote) {
        if (ch === quote) quote = null;
      } else if (ch === '"' || ch === "'") {
        quote = ch;
      } else if (ch === '>' && source[i + 1] === '>') {
        break;
      }
    }
    if (i >= source.length) {
      throw syntaxError('unclosed `<<`: every `<<` needs a matching `>>`', source, open);
    }
    segments.push({ text: source.slice(open + 2, i), exprOffset: open });
    pos = i + 2;
  }
  return segments;
}

export function syntaxError(message: string, source: string, offset: number, code = 'FERRY_TEMPLATE_SYNTAX'): TemplateError {
  const error = new TemplateError(code, message, source);
  (error as TemplateError & { offset: number }).offset = offset;
  return error;
}

/**
 * The first place where blocks or sub-expressions nest deeper than the limits, found by a
 * linear scan before Handlebars sees the template: its parser and compiler take quadratic
 * time on nested blocks and recurse once per level.
 */
export function nestingError(source: string, segments: readonly Segment[]): TemplateError | undefined {
  let blocks = 0;
  for (const seg of segments) {
    if (seg.exprOffset === undefined) continue;
    const head = /^~?\s*([#/^]?)\s*(\S?)/.exec(seg.text);
    // `<<#x>>` and `<<^x>>` open a block, `<</x>>` closes one; a bare `<<^>>` is `else`.
    if (head?.[1] === '#' || (head?.[1] === '^' && head[2] !== '' && head[2] !== '~')) blocks++;
    else if (head?.[1] === '/') blocks = Math.max(0, blocks - 1);
    if (blocks > MAX_BLOCK_DEPTH) {
      return syntaxError(`blocks nest more than ${MAX_BLOCK_DEPTH} deep here; split the template, or compute the value in an earlier step`, source, seg.exprOffset, 'FERRY_TEMPLATE_TOO_DEEP');
    }
    let depth = 0;
    let quote: string | undefined;
    for (let i = 0; i < seg.text.length; i++) {
      const ch = seg.text[i];
      if (quote !== undefined) {
        if (ch === quote) quote = undefined;
      } else if (ch === '"' || ch === "'") {
        quote = ch;
      } else if (ch === ')') {
        depth--;
      } else if (ch === '(' && ++depth > MAX_SUBEXPRESSION_DEPTH) {
        return syntaxError(`sub-expressions \`(…)\` nest more than ${MAX_SUBEXPRESSION_DEPTH} deep here; split the expression over several steps`, source, seg.exprOffset + 2 + i, 'FERRY_TEMPLATE_TOO_DEEP');
      }
    }
  }
  return undefined;
}

export function templateErrorOffset(error: TemplateError): number {
  return (error as TemplateError & { offset?: number }).offset ?? 0;
}

/** Handlebars parse errors speak of `{{` and grammar tokens; say it in `<<` terms. */
export function parseMessage(raw: string): string {
  const open = /'OPEN_ENDBLOCK'/.test(raw) && /got 'EOF'/.test(raw);
  if (open) return 'a block `<<#...>>` is not closed; end it with `<</if>>`, `<</each>>`, ...';
  const mismatch = /(\S+) doesn't match (\S+)/.exec(raw);
  if (mismatch) return `\`<<#${mismatch[1]}>>\` is closed by \`<</${mismatch[2]}>>\``;
  const got = /got '([A-Z_]+)'/.exec(raw);
  return got ? `unexpected ${got[1] === 'EOF' ? 'end of template' : `\`${(got[1] as string).toLowerCase()}\``} in \`${raw.split('\n')[1]?.replace(/\{\{/g, '<<').replace(/\}\}/g, '>>') ?? ''}\`` : raw.replace(/\{\{/g, '<<').replace(/\}\}/g, '>>');
}

/** Handlebars AST nodes, loosely typed: only the fields this module reads or writes. */
export interface AstNode {
  type: string;
  loc?: { start: { line: number; column: number } } | undefined;
  [key: string]: unknown;
}
export interface PathNode extends AstNode {
  parts: string[];
  original: string;
  data: boolean;
  depth: number;
}
export interface CallNode extends AstNode {
  path: AstNode;
  params: AstNode[];
  hash?: { pairs: { key: string; value: AstNode }[] } | undefined;
}

export const isPath = (n: AstNode): n is PathNode => n.type === 'PathExpression';

export function pathNode(name: string): PathNode {
  return { type: 'PathExpression', parts: [name], original: name, data: false, depth: 0 };
}
export function stringLiteral(value: string): AstNode {
  return { type: 'StringLiteral', value, original: value };
}

/** Builds the Handlebars source for the segments, remembering where each expression starts in it. */
export function toHandlebars(segments: Segment[]): { hbSource: string; starts: { hbOffset: number; offset: number }[] } {
  let hbSource = '';
  const starts: { hbOffset: number; offset: number }[] = [];
  for (const [i, seg] of segments.entries()) {
    if (seg.exprOffset === undefined) {
      // Literal `{{` in YAML is text: escape it for Handlebars. A trailing backslash would
      // escape the next mustache, so it is doubled.
      let text = seg.text.replace(/\{\{/g, '\\{{');
      if (text.endsWith('\\') && segments[i + 1]) text += '\\';
      hbSource += text;
    } else {
      starts.push({ hbOffset: hbSource.length, offset: seg.exprOffset });
      hbSource += `{{${seg.text}}}`;
    }
  }
  return { hbSource, starts };
}
