import { readFile } from 'node:fs/promises';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type Pair } from 'yaml';
import type { WorkflowIssue } from '../errors.js';
import { scalarSourceOffset } from './scalar-position.js';
import { yamlIssues } from './yaml-issues.js';

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

/**
 * Parses YAML text keeping node ranges. YAML mistakes (tabs, indentation, duplicate keys,
 * unclosed quotes, bad aliases, runaway nesting) become issues; with none, `doc.toJS()` is safe.
 */
export function parseSource(file: string, text: string): { source: SourceDocument; issues: WorkflowIssue[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false, strict: true, keepSourceTokens: false });
  const source = { file, text, doc, lineCounter };
  return { source, issues: yamlIssues(source) };
}

/** The document as plain data; aliases were checked by parseSource, so none is counted again. */
export function sourceData(source: SourceDocument): unknown {
  return source.doc.toJS({ maxAliasCount: -1 });
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

/** Position of character `offset` of the string value at `path`, or of the value itself when it cannot be told. */
export function locateInScalar(source: SourceDocument, path: YamlPath, offset: number): { line: number; col: number } {
  const at = locate(source, path);
  if (!at.node || !isScalar(at.node)) return at;
  const found = scalarSourceOffset(source.text, at.node, offset);
  return found === undefined ? at : source.lineCounter.linePos(found);
}

/** Collects issues, turning YAML paths into positions. */
export class Reporter {
  readonly issues: WorkflowIssue[] = [];
  constructor(readonly source: SourceDocument) {}
  at(p: YamlPath, code: string, message: string, target: 'key' | 'value' = 'value'): void {
    const { line, col } = locate(this.source, p, target);
    this.issues.push({ file: this.source.file, line, col, code, message });
  }
  /** At character `offset` of the string value at `p` (a template inside a scalar). */
  atOffset(p: YamlPath, offset: number, code: string, message: string): void {
    const { line, col } = locateInScalar(this.source, p, offset);
    this.issues.push({ file: this.source.file, line, col, code, message });
  }
}
