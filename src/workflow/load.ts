import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { MAX_FILE_BYTES, MAX_ISSUES } from '../limits.js';
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
  /**
   * Keys of the larger mappings, indexed on first lookup: a file may report a mistake at each
   * of tens of thousands of keys of one mapping.
   */
  keyIndexes: WeakMap<object, Map<unknown, Pair>>;
}

/**
 * Reads a workflow file, or says in one issue why it cannot be one: it is missing, a folder,
 * a FIFO or a device (opened without blocking, so a FIFO nobody writes to cannot hang the
 * read), larger than MAX_FILE_BYTES (refused before reading), or not UTF-8 (at the first bad
 * byte). `shown` is the name issues carry, e.g. the path as the user typed it.
 */
export async function readSource(file: string, shown = file): Promise<{ text: string } | { issue: WorkflowIssue }> {
  const refuse = (code: string, message: string, line = 1, col = 1): { issue: WorkflowIssue } => ({ issue: { file: shown, line, col, code, message } });
  let handle: FileHandle;
  try {
    handle = await open(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    return refuse('FERRY_FILE_UNREADABLE', `cannot read the workflow file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return refuse('FERRY_FILE_NOT_REGULAR', `${kindOf(info)}, not a workflow file; name a .yaml file${info.isDirectory() ? ' (`ferry validate` and `ferry serve --dir` take folders)' : ''}`);
    if (info.size > MAX_FILE_BYTES) return refuse('FERRY_FILE_TOO_LARGE', tooLarge(info.size));
    // Read one byte past the limit: a file that grew since `stat` is still refused, unread.
    const buffer = Buffer.alloc(Math.min(info.size, MAX_FILE_BYTES) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    if (length > MAX_FILE_BYTES) return refuse('FERRY_FILE_TOO_LARGE', tooLarge(length));
    const bytes = buffer.subarray(0, length);
    try {
      return { text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes) };
    } catch {
      const { line, col, byte } = firstInvalidUtf8(bytes);
      return refuse('FERRY_FILE_ENCODING', `the file is not UTF-8: byte 0x${byte.toString(16).padStart(2, '0')} here starts no UTF-8 character; save the file as UTF-8`, line, col);
    }
  } catch (error) {
    return refuse('FERRY_FILE_UNREADABLE', `cannot read the workflow file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  } finally {
    await handle.close();
  }
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'this is a folder';
  if (info.isFIFO()) return 'this is a named pipe (FIFO)';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'this is a device';
  if (info.isSocket()) return 'this is a socket';
  return 'this is not a regular file';
}

export function tooLarge(bytes: number): string {
  return `the file has ${bytes.toLocaleString('en-US')} bytes; a workflow file holds at most ${MAX_FILE_BYTES / 1024 / 1024} MiB (${MAX_FILE_BYTES.toLocaleString('en-US')} bytes): keep data in a file read with \`loop.file\`, or split the workflow`;
}

/** Line, column (in characters) and value of the first byte that is not part of valid UTF-8. */
function firstInvalidUtf8(bytes: Buffer): { line: number; col: number; byte: number } {
  let line = 1;
  let col = 1;
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i] as number;
    const need = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    let ok = need >= 0 && i + need < bytes.length;
    for (let k = 1; ok && k <= need; k++) ok = ((bytes[i + k] as number) & 0xc0) === 0x80;
    // Overlong forms, surrogates and code points past U+10FFFF (the second byte tells).
    const second = bytes[i + 1] as number;
    if (ok && ((b === 0xe0 && second < 0xa0) || (b === 0xed && second > 0x9f) || (b === 0xf0 && second < 0x90) || (b === 0xf4 && second > 0x8f))) ok = false;
    if (!ok) return { line, col, byte: b };
    if (b === 0x0a) {
      line++;
      col = 1;
    } else {
      col += need === 3 ? 2 : 1; // a character past U+FFFF is two UTF-16 units, as the YAML positions count
    }
    i += need + 1;
  }
  return { line, col, byte: 0 };
}

/**
 * Parses YAML text keeping node ranges. YAML mistakes (tabs, indentation, duplicate keys,
 * unclosed quotes, bad aliases, runaway nesting) become issues; with none, `doc.toJS()` is safe.
 */
export function parseSource(file: string, text: string): { source: SourceDocument; issues: WorkflowIssue[] } {
  const lineCounter = new LineCounter();
  // Duplicate keys are found by yamlIssues, in linear time.
  const doc = parseDocument(text, { lineCounter, uniqueKeys: false, prettyErrors: false, strict: true, keepSourceTokens: false });
  const source: SourceDocument = { file, text, doc, lineCounter, keyIndexes: new WeakMap() };
  return { source, issues: yamlIssues(source) };
}

/** The document as plain data; aliases were checked by parseSource, so none is counted again. */
export function sourceData(source: SourceDocument): unknown {
  return source.doc.toJS({ maxAliasCount: -1 });
}

function pairOf(source: SourceDocument, node: unknown, key: string | number): Pair | undefined {
  if (!isMap(node)) return undefined;
  const keyOf = (p: Pair): unknown => (isScalar(p.key) ? p.key.value : p.key);
  if (node.items.length < 32) return node.items.find((p) => keyOf(p) === key) as Pair | undefined;
  let index = source.keyIndexes.get(node);
  if (!index) {
    index = new Map();
    // The first of a repeated key wins, as `find` would have it.
    for (const p of node.items as Pair[]) if (!index.has(keyOf(p))) index.set(keyOf(p), p);
    source.keyIndexes.set(node, index);
  }
  return index.get(key);
}

function child(source: SourceDocument, node: unknown, key: string | number): unknown {
  if (isMap(node)) return pairOf(source, node, key)?.value ?? undefined;
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
    const pair = pairOf(source, node, key);
    if (pair && last && target === 'key') {
      best = { offset: rangeStart(pair.key) ?? best.offset, node: pair.key as Node };
      return position(source, best);
    }
    const next = child(source, node, key);
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

/** Collects issues, turning YAML paths into positions; past MAX_ISSUES, one more says so and the rest are dropped. */
export class Reporter {
  readonly issues: WorkflowIssue[] = [];
  constructor(readonly source: SourceDocument) {}
  /** True once MAX_ISSUES issues (and the one saying so) are in: callers may stop looking. */
  get full(): boolean {
    return this.issues.length > MAX_ISSUES;
  }
  at(p: YamlPath, code: string, message: string, target: 'key' | 'value' = 'value'): void {
    if (this.full) return;
    const { line, col } = locate(this.source, p, target);
    this.#push({ file: this.source.file, line, col, code, message });
  }
  /** At character `offset` of the string value at `p` (a template inside a scalar). */
  atOffset(p: YamlPath, offset: number, code: string, message: string): void {
    if (this.full) return;
    const { line, col } = locateInScalar(this.source, p, offset);
    this.#push({ file: this.source.file, line, col, code, message });
  }
  #push(issue: WorkflowIssue): void {
    if (this.issues.length < MAX_ISSUES) this.issues.push(issue);
    else this.issues.push({ ...issue, code: 'FERRY_TOO_MANY_ISSUES', message: `more than ${MAX_ISSUES} problems in this file; the rest are not listed: fix these and validate again` });
  }
}
