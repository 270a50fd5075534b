import { isAlias, isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node, type YAMLError } from 'yaml';
import type { WorkflowIssue } from '../errors.js';
import { MAX_ISSUES } from '../limits.js';

/**
 * Deeper than any real workflow (steps in nested loops, a JSON body), and shallow enough
 * that the recursive steps after parsing (schema check, template compile) stay far from
 * the call stack limit.
 */
export const MAX_DEPTH = 100;

/** How many values aliases may copy into a file: generous for reused blocks, far below an alias bomb. */
export const MAX_ALIAS_VALUES = 5000;

interface Context {
  file: string;
  text: string;
  doc: Document.Parsed;
  lineCounter: LineCounter;
}

/**
 * Everything wrong with the YAML itself, in the user's terms: one issue per mistake, at the
 * character to fix. Checks nesting depth and aliases too, so that converting the document
 * to data afterwards cannot overflow the stack or throw.
 */
export function yamlIssues(ctx: Context): WorkflowIssue[] {
  const issue = (offset: number, code: string, message: string): WorkflowIssue => {
    const { line, col } = ctx.lineCounter.linePos(clampOffset(ctx.text, offset));
    return { file: ctx.file, line, col, code, message };
  };
  const errors = [...ctx.doc.errors, ...ctx.doc.warnings];

  // The YAML library reports a stack overflow once per level it unwinds; one issue says it.
  const deep = tooDeep(ctx.doc.contents);
  const exhausted = errors.find((e) => e.code === 'RESOURCE_EXHAUSTION');
  if (deep !== undefined || exhausted) return [issue(deep ?? exhausted?.pos[0] ?? 0, 'FERRY_YAML_TOO_DEEP', tooDeepMessage)];

  const issues: WorkflowIssue[] = [];
  const seen = new Set<string>();
  const multiline = new Set(errors.filter((e) => e.code === 'MULTILINE_IMPLICIT_KEY').map((e) => e.pos[0]));
  for (const error of errors) {
    if (issues.length > MAX_ISSUES) break;
    // An over-indented key gives both errors at the value above it; MULTILINE_IMPLICIT_KEY
    // alone knows where the key is.
    if (error.code === 'BLOCK_AS_IMPLICIT_KEY' && multiline.has(error.pos[0])) continue;
    const mapped = mapError(ctx, error);
    const found = issue(mapped.offset, `FERRY_YAML_${mapped.code}`, mapped.message);
    const key = `${found.line}:${found.col}:${found.code}`;
    if (!seen.has(key)) issues.push(found);
    seen.add(key);
  }
  duplicateKeys(ctx.doc.contents, (node) => issues.push(issue(node.range?.[0] ?? 0, 'FERRY_YAML_DUPLICATE_KEY', 'duplicate key: each key may appear once in a mapping')));
  const over = issues[MAX_ISSUES];
  if (over) return [...issues.slice(0, MAX_ISSUES), { ...over, code: 'FERRY_TOO_MANY_ISSUES', message: `more than ${MAX_ISSUES} problems in this file; the rest are not listed: fix these and validate again` }];
  if (issues.length > 0) return issues;
  // An alias is written `*name`: without a `*` there is none to check.
  if (!ctx.text.includes('*')) return issues;
  checkAliases(ctx.doc.contents, (node, code, message) => issues.push(issue(node.range?.[0] ?? 0, code, message)));
  return issues;
}

const tooDeepMessage = `nesting is too deep: a workflow nests mappings and lists at most ${MAX_DEPTH} levels`;

/** A position past the last line (an unclosed quote or bracket) is moved back to the end of the text. */
function clampOffset(text: string, offset: number): number {
  const end = text.trimEnd().length;
  return offset > end ? end : offset;
}

function mapError(ctx: Context, error: YAMLError): { offset: number; code: string; message: string } {
  const first = error.message.split('\n')[0] ?? error.message;
  const offset = error.pos[0];
  const indentHint = '(check the indentation of this line and the one above)';
  switch (error.code) {
    case 'TAB_AS_INDENT':
      return { offset, code: error.code, message: 'YAML does not allow tabs for indentation; indent with spaces' };
    case 'DUPLICATE_KEY':
      return { offset, code: error.code, message: 'duplicate key: each key may appear once in a mapping' };
    case 'MULTIPLE_DOCS':
      return { offset, code: error.code, message: 'a workflow file holds one YAML document; remove the `---` separator, or move what follows it to a file of its own' };
    case 'BAD_INDENT':
      // The library points at the start of the line; the key that is out of line is the thing to move.
      return { offset: firstNonBlank(ctx.text, offset), code: error.code, message: `YAML syntax: ${first} ${indentHint}` };
    case 'MISSING_CHAR': {
      const quote = /closing (["'])quote/.exec(first)?.[1];
      const opening = quote === undefined ? undefined : openingQuote(ctx.doc.contents, offset);
      if (quote !== undefined && opening !== undefined) {
        return { offset: opening, code: error.code, message: `YAML syntax: this quoted string is never closed; add the closing ${quote} where it ends` };
      }
      return { offset, code: error.code, message: `YAML syntax: ${first} ${indentHint}` };
    }
    case 'MULTILINE_IMPLICIT_KEY': {
      const key = overIndentedKey(ctx.text, error.pos[0], error.pos[1]);
      if (key !== undefined) {
        return { offset: key, code: 'BAD_INDENT', message: `YAML syntax: this key is indented more than the key above it, so YAML reads both lines as one ${indentHint}` };
      }
      return { offset, code: error.code, message: `YAML syntax: ${first}` };
    }
    case 'UNEXPECTED_TOKEN':
      return { offset, code: error.code, message: `YAML syntax: ${first} ${indentHint}` };
    default:
      return { offset, code: error.code, message: `YAML syntax: ${first}` };
  }
}

const lineStart = (text: string, offset: number): number => text.lastIndexOf('\n', offset - 1) + 1;

function firstNonBlank(text: string, offset: number): number {
  let i = offset;
  while (text[i] === ' ' && i < text.length) i++;
  return text[i] === '\n' || text[i] === undefined ? offset : i;
}

function indentOf(text: string, offset: number): number {
  const start = lineStart(text, offset);
  return firstNonBlank(text, start) - start;
}

/**
 * When a multi-line implicit key ends on a line indented deeper than the line it starts on
 * and that line reads as `key:`, that key is what the user mis-indented.
 */
function overIndentedKey(text: string, start: number, end: number): number | undefined {
  const keyLine = lineStart(text, end);
  if (keyLine <= lineStart(text, start)) return undefined;
  const key = firstNonBlank(text, keyLine);
  if (indentOf(text, key) <= indentOf(text, start)) return undefined;
  const lineEnd = text.indexOf('\n', key);
  return /^[^\s#][^\n]*?:(\s|$)/.test(text.slice(key, lineEnd === -1 ? undefined : lineEnd)) ? key : undefined;
}

/** The opening quote of the quoted scalar that runs to `end`: an unclosed one runs to the end of the file. */
function openingQuote(root: unknown, end: number): number | undefined {
  let found: number | undefined;
  walk(root, (node) => {
    if (isScalar(node) && (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') && node.range && node.range[0] < end && node.range[1] >= end) found = node.range[0];
  });
  return found;
}

/** Visits every node without recursion: the document may be nested far deeper than the stack allows. */
function walk(root: unknown, visit: (node: Node, depth: number) => boolean | void): void {
  const stack: [unknown, number][] = [[root, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (node === null || node === undefined) continue;
    if (isPair(node)) {
      stack.push([node.value, depth], [node.key, depth]);
      continue;
    }
    if (visit(node as Node, depth) === false) return;
    if (isMap(node) || isSeq(node)) for (let i = node.items.length - 1; i >= 0; i--) stack.push([node.items[i], depth + 1]);
  }
}

/**
 * Keys repeated in one mapping, each after its first use. The YAML library can check this
 * itself (`uniqueKeys`), but compares every key with every other: minutes for a mapping of
 * 50,000 keys. Scalar keys are equal when their values are, as the library has it.
 */
function duplicateKeys(root: unknown, report: (key: Node) => void): void {
  walk(root, (node) => {
    if (!isMap(node)) return;
    const keys = new Set<unknown>();
    for (const pair of node.items) {
      if (!isScalar(pair.key)) continue;
      if (keys.has(pair.key.value)) report(pair.key);
      else keys.add(pair.key.value);
    }
  });
}

/** Offset of the first node nested deeper than MAX_DEPTH, if any. */
function tooDeep(root: unknown): number | undefined {
  let found: number | undefined;
  walk(root, (node, depth) => {
    if (depth <= MAX_DEPTH) return true;
    found = node.range?.[0] ?? 0;
    return false;
  });
  return found;
}

/**
 * Resolves aliases the way the YAML library will (the last anchor of that name before the
 * alias) and reports what would make it throw or blow up: an alias without anchor, one
 * inside its own anchor, and expansion past MAX_ALIAS_VALUES values or MAX_DEPTH levels.
 * Recursion is safe here: the depth was checked first.
 */
function checkAliases(root: unknown, report: (node: Node, code: string, message: string) => void): void {
  const anchors = new Map<string, Node>();
  const measured = new Map<Node, { size: number; height: number }>();
  let copied = 0;
  let bomb = false;
  let deep = false;
  const measure = (node: unknown, depth: number): { size: number; height: number } => {
    if (isAlias(node)) {
      const target = anchors.get(node.source);
      const size = target === undefined ? undefined : measured.get(target);
      if (target === undefined) {
        report(node, 'FERRY_YAML_BAD_ALIAS', `alias \`*${node.source}\` has no anchor \`&${node.source}\` before it; define the anchor above the alias, or write the value out`);
      } else if (size === undefined) {
        report(node, 'FERRY_YAML_BAD_ALIAS', `alias \`*${node.source}\` is inside the value anchored as \`&${node.source}\`, which would repeat it without end`);
      } else {
        copied += size.size;
        if (copied > MAX_ALIAS_VALUES && !bomb) {
          bomb = true;
          report(node, 'FERRY_YAML_ALIAS_LIMIT', `with this alias, YAML aliases have copied more than ${MAX_ALIAS_VALUES} values into the file, which looks like an alias bomb; write the data out, or read large data with \`loop.file\``);
        }
        if (depth + size.height > MAX_DEPTH && !deep) {
          deep = true;
          report(node, 'FERRY_YAML_TOO_DEEP', `${tooDeepMessage}, counting what alias \`*${node.source}\` copies in`);
        }
        return size;
      }
      return { size: 1, height: 0 };
    }
    const anchor = (node as { anchor?: string } | null)?.anchor;
    if (anchor) anchors.set(anchor, node as Node);
    let size = 1;
    let height = 0;
    const add = (child: unknown): void => {
      if (child === null || child === undefined) return;
      const m = measure(child, depth + 1);
      size += m.size;
      height = Math.max(height, m.height + 1);
    };
    if (isMap(node)) {
      for (const pair of node.items) {
        add(pair.key);
        add(pair.value);
      }
    } else if (isSeq(node)) {
      for (const item of node.items) add(item);
    }
    if (anchor) measured.set(node as Node, { size, height });
    return { size, height };
  };
  if (root !== null && root !== undefined) measure(root, 0);
}
