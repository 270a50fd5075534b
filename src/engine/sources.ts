import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { FerryError } from '../errors.js';

/**
 * Loop items read from a file as a stream with backpressure: a loop over a million rows
 * holds only the rows in flight. CSV (header row gives the keys), JSONL, or a JSON array.
 */
export function readItems(file: string): AsyncIterable<unknown> {
  if (/\.csv$/i.test(file)) return csvRows(file);
  if (/\.(jsonl|ndjson)$/i.test(file)) return jsonLines(file);
  if (/\.json$/i.test(file)) return jsonArray(file);
  throw new FerryError('FERRY_LOOP_FILE_TYPE', `loop.file ${file}: use a .csv, .jsonl, .ndjson or .json file`);
}

function fileError(file: string, where: string, message: string): FerryError {
  return new FerryError('FERRY_LOOP_FILE', `loop.file ${file}, ${where}: ${message}`);
}

async function* csvRows(file: string): AsyncIterable<unknown> {
  // The CSV parser is loaded by the first CSV loop only.
  const { parse: parseCsv } = await import('csv-parse');
  const parser = createReadStream(file).pipe(parseCsv({ columns: true, bom: true, skip_empty_lines: true, trim: false }));
  try {
    for await (const row of parser) yield row;
  } catch (error) {
    throw fileError(file, `line ${(parser.info as { lines?: number }).lines ?? '?'}`, (error as Error).message);
  }
}

async function* jsonLines(file: string): AsyncIterable<unknown> {
  const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    try {
      yield JSON.parse(line);
    } catch (error) {
      throw fileError(file, `line ${n}`, `not JSON (${(error as Error).message})`);
    }
  }
}

/**
 * The elements of a top-level JSON array, one at a time: a small scanner finds where each
 * element ends (outside strings, at depth 1) and JSON.parse reads just that element.
 */
async function* jsonArray(file: string): AsyncIterable<unknown> {
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
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 256 * 1024 })) {
    const text = chunk as string;
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
          if (value !== undefined) yield value;
          return;
        }
      } else if (ch === 0x2c && depth === 1) {
        element += text.slice(from, i);
        const value = emit();
        if (value !== undefined) {
          yield value;
          index++;
        }
        from = i + 1;
      }
    }
    if (started) element += text.slice(from);
  }
  if (!started) throw fileError(file, 'start', 'a .json loop file must hold an array');
  throw fileError(file, 'end', 'the array is not closed');
}
