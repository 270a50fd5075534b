import { readFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair } from 'yaml';
import type { WorkflowIssue } from '../errors.js';

export type YamlPath = readonly (string | number)[];

/** A parsed workflow file that still knows where every key and value came from. */
export interface SourceDocument {
  file: string;
  text: string;
  doc: Document.Parsed;
  lineCounter: LineCounter;
}

export async function readSource(file: string): Promise<string> {
  return readFile(file, 'utf8');
}

/** Parses YAML text keeping node ranges; YAML errors (tabs, indentation, duplicate keys) become issues. */
export function parseSource(file: string, text: string): { source: SourceDocument; issues: WorkflowIssue[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true, keepSourceTokens: false });
  const source = { file, text, doc, lineCounter };
  const issues = [...doc.errors, ...doc.warnings].map((error) => {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    return { file, line, col, code: `FERRY_YAML_${error.code}`, message: yamlMessage(error.code, error.message) };
  });
  return { source, issues };
}

function yamlMessage(code: string, message: string): string {
  const first = message.split('\n')[0] ?? message;
  switch (code) {
    case 'TAB_AS_INDENT':
      return 'YAML does not allow tabs for indentation; indent with spaces';
    case 'DUPLICATE_KEY':
      return 'duplicate key: each key may appear once in a mapping';
    case 'BAD_INDENT':
    case 'MISSING_CHAR':
    case 'UNEXPECTED_TOKEN':
      return `YAML syntax: ${first} (check the indentation of this line and the one above)`;
    default:
      return `YAML syntax: ${first}`;
  }
}

function pairOf(node: unknown, key: string | number): Pair | undefined {
  if (!isMap(node)) return undefined;
  return node.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === key) as Pair | undefined;
}

function child(node: unknown, key: string | number): unknown {
  if (isMap(node)) return pairOf(node, key)?.value ?? undefined;
  if (isSeq(node) && typeof key === 'number') return node.items[key];
  return undefined;
}

export interface Located {
  line: number;
  col: number;
  /** The YAML node found, when the whole path exists. */
  node: Node | undefined;
}

/**
 * The position of the value (or, with `key`, of the key) at `path`. A path that does not
 * exist resolves to its nearest existing ancestor, so every issue gets a real position.
 */
export function locate(source: SourceDocument, path: YamlPath, target: 'key' | 'value' = 'value'): Located {
  let node: unknown = source.doc.contents;
  let best: { offset: number; node: Node | undefined } = { offset: rangeStart(node) ?? 0, node: undefined };
  for (let i = 0; i < path.length; i++) {
    const key = path[i] as string | number;
    const last = i === path.length - 1;
    const pair = pairOf(node, key);
    if (pair && last && target === 'key') {
      best = { offset: rangeStart(pair.key) ?? best.offset, node: pair.key as Node };
      return position(source, best);
    }
    const next = child(node, key);
    if (next === undefined || next === null) {
      // `key:` with no value: point at the key itself.
      if (pair) best = { offset: rangeStart(pair.key) ?? best.offset, node: undefined };
      return position(source, best);
    }
    node = next;
    best = { offset: rangeStart(node) ?? best.offset, node: last ? (node as Node) : undefined };
  }
  return position(source, best);
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  return range?.[0];
}

function position(source: SourceDocument, found: { offset: number; node: Node | undefined }): Located {
  const { line, col } = source.lineCounter.linePos(found.offset);
  return { line, col, node: found.node };
}

/** Position of a character offset inside a scalar's value, when the scalar is on one line. */
export function locateInScalar(source: SourceDocument, path: YamlPath, offset: number): { line: number; col: number } {
  const at = locate(source, path);
  const node = at.node;
  if (!node || !isScalar(node)) return at;
  const value = typeof node.value === 'string' ? node.value : '';
  if (value.slice(0, offset).includes('\n')) return at;
  if (node.type === 'PLAIN') return { line: at.line, col: at.col + offset };
  if (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') {
    const raw = source.text.slice(node.range?.[0] ?? 0, (node.range?.[0] ?? 0) + offset + 1);
    // Escapes shift columns; only adjust when the text before the offset has none.
    if (!raw.includes('\\') && !raw.slice(1).includes("''")) return { line: at.line, col: at.col + 1 + offset };
  }
  return at;
}
