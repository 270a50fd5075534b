import type { Scalar } from 'yaml';

/** The characters of one source line of a scalar after unescaping, each with its source offset. */
interface Run {
  text: string;
  offsets: number[];
}

/**
 * The source offset of character `index` of a scalar's string value, or undefined when it
 * cannot be told. YAML folds line breaks, strips indentation, drops a block scalar's
 * header line and decodes escapes, so after the first `\"` or line break the value and the
 * source no longer line up; each source line is matched back into the value instead.
 */
export function scalarSourceOffset(text: string, node: Scalar, index: number): number | undefined {
  const range = node.range;
  if (!range || typeof node.value !== 'string') return undefined;
  const value = node.value;
  let from = 0;
  for (const run of contentRuns(text, node.type, range[0], range[1])) {
    const trimmed = trimRun(run);
    if (trimmed.text === '') continue;
    // Between two lines' contents the value only holds the folded whitespace, so the next
    // occurrence of a line's text is that line.
    const at = value.indexOf(trimmed.text, from);
    if (at === -1) return undefined;
    if (index < at + trimmed.text.length) return trimmed.offsets[Math.max(0, index - at)];
    from = at + trimmed.text.length;
  }
  return undefined;
}

function contentRuns(text: string, type: Scalar['type'], start: number, end: number): Run[] {
  switch (type) {
    case 'BLOCK_LITERAL':
    case 'BLOCK_FOLDED': {
      // The first line holds the `|` or `>` header (and maybe a comment), never content.
      const body = text.indexOf('\n', start);
      return body === -1 || body >= end ? [] : lines(text, body + 1, end).map(({ from, to }) => plainRun(text, from, to));
    }
    case 'QUOTE_DOUBLE':
      return lines(text, start + 1, closingQuote(text, end, '"')).map(({ from, to }) => doubleQuotedRun(text, from, to));
    case 'QUOTE_SINGLE':
      return lines(text, start + 1, closingQuote(text, end, "'")).map(({ from, to }) => singleQuotedRun(text, from, to));
    default:
      return lines(text, start, end).map(({ from, to }) => plainRun(text, from, to));
  }
}

/** End of a quoted scalar's content: before the closing quote, or the end of an unclosed one. */
function closingQuote(text: string, end: number, quote: string): number {
  return text[end - 1] === quote ? end - 1 : end;
}

function lines(text: string, start: number, end: number): { from: number; to: number }[] {
  const out: { from: number; to: number }[] = [];
  let from = start;
  while (from <= end) {
    const newline = text.indexOf('\n', from);
    const to = newline === -1 || newline > end ? end : newline;
    out.push({ from, to });
    from = to + 1;
  }
  return out;
}

function plainRun(text: string, from: number, to: number): Run {
  return { text: text.slice(from, to), offsets: Array.from({ length: to - from }, (_, k) => from + k) };
}

const ESCAPES: Record<string, string> = {
  '0': '\0',
  a: '\x07',
  b: '\b',
  t: '\t',
  '\t': '\t',
  n: '\n',
  v: '\v',
  f: '\f',
  r: '\r',
  e: '\x1b',
  ' ': ' ',
  '"': '"',
  '/': '/',
  '\\': '\\',
  N: '\x85',
  _: '\xa0',
  L: '\u2028',
  P: '\u2029',
};
const HEX_DIGITS: Record<string, number> = { x: 2, u: 4, U: 8 };

function doubleQuotedRun(text: string, from: number, to: number): Run {
  let out = '';
  const offsets: number[] = [];
  const push = (chars: string, offset: number): void => {
    out += chars;
    for (let k = 0; k < chars.length; k++) offsets.push(offset);
  };
  for (let i = from; i < to; i++) {
    const ch = text[i] as string;
    if (ch !== '\\') {
      push(ch, i);
      continue;
    }
    const next = text[i + 1];
    if (next === undefined || i + 1 >= to || next === '\r') break; // an escaped line break joins the lines
    const digits = HEX_DIGITS[next];
    if (digits !== undefined) {
      const code = Number.parseInt(text.slice(i + 2, i + 2 + digits), 16);
      push(Number.isNaN(code) ? '' : String.fromCodePoint(code), i);
      i += 1 + digits;
    } else {
      push(ESCAPES[next] ?? next, i);
      i += 1;
    }
  }
  return { text: out, offsets };
}

function singleQuotedRun(text: string, from: number, to: number): Run {
  let out = '';
  const offsets: number[] = [];
  for (let i = from; i < to; i++) {
    out += text[i] as string;
    offsets.push(i);
    if (text[i] === "'" && text[i + 1] === "'") i += 1;
  }
  return { text: out, offsets };
}

function trimRun(run: Run): Run {
  let start = 0;
  let end = run.text.length;
  while (start < end && /\s/.test(run.text[start] as string)) start++;
  while (end > start && /\s/.test(run.text[end - 1] as string)) end--;
  return { text: run.text.slice(start, end), offsets: run.offsets.slice(start, end) };
}
