import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { FerryError } from '../errors.js';
import { fileError, JsonLines, type ReadPosition, type RowSource } from './jsonl-rows.js';

export type { ReadPosition, RowSource } from './jsonl-rows.js';

/**
 * Loop items read from a file as a stream with backpressure: a loop over a million rows
 * holds only the rows in flight. CSV (header row gives the keys), JSONL, or a JSON array.
 */
export async function* readItems(file: string, position?: ReadPosition): AsyncIterable<unknown> {
  for await (const row of readRows(file, position)) yield row.value;
}

/** One item of a loop file and the 1-based line of the file it starts on (CSV counts the header; none for a .json array). */
export interface SourceRow {
  value: unknown;
  line: number | undefined;
}

/**
 * `readItems` with each item's line in the file, for the messages and `failed.jsonl` of a file
 * loop; `position`, when given, follows the bytes read (for progress).
 */
export function readRows(file: string, position?: ReadPosition): AsyncIterable<SourceRow> {
  if (/\.csv$/i.test(file)) return csvRows(file, position);
  if (/\.(jsonl|ndjson)$/i.test(file)) return jsonLines(file, position);
  if (/\.json$/i.test(file)) return jsonArray(file, position);
  throw new FerryError('FERRY_LOOP_FILE_TYPE', `loop.file ${file}: use a .csv, .jsonl, .ndjson or .json file`);
}


/** The rows of a loop file as a RowSource; `position`, when given, follows the bytes read. */
export function openRows(file: string, position?: ReadPosition): RowSource {
  if (/\.(jsonl|ndjson)$/i.test(file)) return new JsonLines(file, position);
  const rows = readRows(file, position)[Symbol.asyncIterator]();
  const source = {
    line: undefined as number | undefined,
    async next(): Promise<IteratorResult<unknown>> {
      const next = await rows.next();
      if (next.done) return next;
      source.line = next.value.line;
      return { done: false, value: next.value.value };
    },
    close: () => void rows.return?.(),
  };
  return source;
}



async function* csvRows(file: string, position: ReadPosition | undefined): AsyncIterable<SourceRow> {
  // The CSV parser is loaded by the first CSV loop only.
  const { parse: parseCsv } = await import('csv-parse');
  const input = createReadStream(file);
  const lines = new RecordLines();
  const parser = input.pipe(lines).pipe(parseCsv({ columns: true, bom: true, skip_empty_lines: true, trim: false }));
  // pipe() does not pass a read error on: unhandled, it would end the process.
  input.on('error', (error) => parser.destroy(error));
  try {
    let header = true;
    let taken = 0;
    for await (const record of parser) {
      // The header's line comes first.
      if (header) {
        lines.next();
        header = false;
      }
      if (position) {
        // The parser runs up to a chunk ahead of the loop (its bytes would say 100% of a small
        // file before the first row is sent): the rows taken times its bytes per row so far.
        // csv-parse's per-record `info` option would be exact but doubles the parse time.
        const info = parser.info as { bytes: number; records: number };
        position.bytes = info.records > 0 ? Math.round((info.bytes * ++taken) / info.records) : info.bytes;
      }
      yield { value: record as unknown, line: lines.next() };
    }
  } catch (error) {
    throw fileError(file, `line ${(parser.info as { lines?: number }).lines ?? '?'}`, (error as Error).message);
  }
}

/**
 * The line each CSV record starts on, found by a scan of the bytes on their way to the
 * parser: a record starts at the first character of a line outside quotes; blank lines,
 * which the parser skips, start none. The parser runs ahead of the loop (and its
 * per-record `info` costs more than the parsing itself), so the lines wait here in order,
 * as many as the records parsed and not yet taken.
 */
class RecordLines extends Transform {
  #starts: number[] = [];
  #head = 0;
  #line = 1;
  #quoted = false;
  #open = false;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const starts = this.#starts;
    let line = this.#line;
    let quoted = this.#quoted;
    let open = this.#open;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (c === 0x0a) {
        line++;
        if (!quoted) open = false;
      } else if (c !== 0x0d) {
        if (!open) {
          open = true;
          starts.push(line);
        }
        // An escaped quote ("") flips twice: the state after it is right.
        if (c === 0x22) quoted = !quoted;
      }
    }
    this.#line = line;
    this.#quoted = quoted;
    this.#open = open;
    done(null, chunk);
  }

  /** The start line of the next record, in file order. */
  next(): number | undefined {
    const line = this.#starts[this.#head++];
    if (this.#head >= 1024 && this.#head * 2 >= this.#starts.length) {
      this.#starts = this.#starts.slice(this.#head);
      this.#head = 0;
    }
    return line;
  }
}

async function* jsonLines(file: string, position: ReadPosition | undefined): AsyncIterable<SourceRow> {
  const rows = new JsonLines(file, position);
  try {
    for (;;) {
      const pulled = rows.next();
      const next = pulled instanceof Promise ? await pulled : pulled;
      if (next.done) return;
      yield { value: next.value, line: rows.line };
    }
  } finally {
    rows.close();
  }
}


/**
 * The elements of a top-level JSON array, one at a time: a small scanner finds where each
 * element ends (outside strings, at depth 1) and JSON.parse reads just that element.
 */
async function* jsonArray(file: string, position: ReadPosition | undefined): AsyncIterable<SourceRow> {
  let depth = 0;
  let inString = false;
  let escaped = false;
  let started = false;
  let element = '';
  let index = 0;
  const emit = (): unknown => {
    const text = element.trim();
    element = '';
    if (text === '') return undefined;
    try {
      return JSON.parse(text);
    } catch (error) {
      throw fileError(file, `element ${index}`, `not JSON (${(error as Error).message})`);
    }
  };
  let before = 0;
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 256 * 1024 })) {
    const text = chunk as string;
    // Bytes within a chunk are estimated from the character index: exact for ASCII.
    const chunkBytes = position ? Buffer.byteLength(text) : 0;
    const at = (i: number): void => {
      if (position) position.bytes = before + Math.round((i / text.length) * chunkBytes);
    };
    let from = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (inString) {
        if (escaped) escaped = false;
        else if (ch === 0x5c) escaped = true;
        else if (ch === 0x22) inString = false;
        continue;
      }
      if (ch === 0x22) inString = true;
      else if (ch === 0x5b || ch === 0x7b) {
        depth++;
        if (!started) {
          if (ch !== 0x5b) throw fileError(file, 'start', 'a .json loop file must hold an array');
          started = true;
          from = i + 1;
        }
      } else if (ch === 0x5d || ch === 0x7d) {
        depth--;
        if (depth === 0) {
          element += text.slice(from, i);
          const value = emit();
          at(i + 1);
          if (value !== undefined) yield { value, line: undefined };
          return;
        }
      } else if (ch === 0x2c && depth === 1) {
        element += text.slice(from, i);
        const value = emit();
        at(i + 1);
        if (value !== undefined) {
          yield { value, line: undefined };
          index++;
        }
        from = i + 1;
      }
    }
    if (started) element += text.slice(from);
    before += chunkBytes;
  }
  if (!started) throw fileError(file, 'start', 'a .json loop file must hold an array');
  throw fileError(file, 'end', 'the array is not closed');
}

/** What a run remembers of a loop file, to tell on retry whether it is still the same file. */
export interface SourceFingerprint {
  path: string;
  size: number;
  mtimeMs: number;
  /** sha256 of the size, the first and the last SAMPLE bytes (the whole file when it is smaller). */
  hash: string;
}

/**
 * Bytes hashed at each end of a loop file. A retry checks the file before reading a row, so
 * this must stay cheap for a 1 GB file: two 64 KiB reads instead of reading it all. An edit
 * that keeps the size and touches only the middle is caught by the mtime instead (see
 * sourceChange).
 */
const SAMPLE = 64 * 1024;

export async function fingerprint(file: string): Promise<SourceFingerprint> {
  const handle = await open(file, 'r');
  try {
    const { size, mtimeMs } = await handle.stat();
    const hash = createHash('sha256').update(`${size}\n`);
    const head = Buffer.alloc(Math.min(size, 2 * SAMPLE));
    await handle.read(head, 0, Math.min(size, SAMPLE), 0);
    if (size > SAMPLE) await handle.read(head, SAMPLE, head.length - SAMPLE, size - (head.length - SAMPLE));
    hash.update(head);
    return { path: file, size, mtimeMs, hash: hash.digest('hex') };
  } finally {
    await handle.close();
  }
}

/**
 * How the loop file a run read differs from it now, or undefined when it is the same. A file
 * small enough to be hashed whole is compared by content alone (a `touch` or a fresh checkout
 * does not count as a change); a larger one also by its mtime, since its middle is not hashed.
 */
export async function sourceChange(recorded: SourceFingerprint, file = recorded.path): Promise<string | undefined> {
  if (file !== recorded.path) return `loop.file now names ${file}, but the run read ${recorded.path}`;
  let now: SourceFingerprint;
  try {
    now = await fingerprint(file);
  } catch (error) {
    return `${file} cannot be read any more (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
  if (now.size !== recorded.size) return `${file} changed since the run read it (${recorded.size} bytes then, ${now.size} now)`;
  if (now.hash !== recorded.hash) return `${file} changed since the run read it (same size, other content)`;
  if (now.size > 2 * SAMPLE && now.mtimeMs !== recorded.mtimeMs) {
    return `${file} was modified since the run read it (mtime ${new Date(recorded.mtimeMs).toISOString()} then, ${new Date(now.mtimeMs).toISOString()} now)`;
  }
  return undefined;
}

/** The error for a loop file that changed under a run: its rows are resumed by position. */
export function sourceChangedError(change: string, runId: string): FerryError {
  return new FerryError(
    'FERRY_LOOP_FILE_CHANGED',
    `cannot resume run ${runId}: ${change}. A resumed loop skips the rows that finished by their position in the file, so it must be the same file; start a new run with \`ferry run\` instead.`,
  );
}

/**
 * The first change among the loop files a run read (`ResumeState.sources`), checked before a
 * retry sends anything. A file read by many items of an outer loop is checked once.
 */
export async function firstSourceChange(sources: Iterable<SourceFingerprint>): Promise<string | undefined> {
  const seen = new Set<string>();
  for (const recorded of sources) {
    const key = `${recorded.path}\0${recorded.size}\0${recorded.mtimeMs}\0${recorded.hash}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const change = await sourceChange(recorded);
    if (change !== undefined) return change;
  }
  return undefined;
}
