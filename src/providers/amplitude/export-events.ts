import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, open as openFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import { pipeline as pipelineAsync } from 'node:stream/promises';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Dispatcher } from 'undici';
import type yauzl from 'yauzl';
import { ActionInputError, ProviderError } from '../../errors.js';
import { defineAction } from '../define.js';
import { answeredMessage, answerOf, networkError, notReadable, statusError, undici } from '../http.js';
import { exportAuth, type AmplitudeConfig, type AmplitudeContext, type AmplitudeHost } from './client.js';

const HOUR = 3_600_000;

/** `YYYYMMDDTHH` or any ISO-8601 time, floored to its UTC hour. */
export function parseHour(value: string, field: string): number {
  const compact = /^(\d{4})(\d{2})(\d{2})T(\d{2})$/.exec(value);
  const ms = compact ? Date.UTC(Number(compact[1]), Number(compact[2]) - 1, Number(compact[3]), Number(compact[4])) : Date.parse(value);
  if (Number.isNaN(ms)) throw new ActionInputError(`\`${field}\` ${JSON.stringify(value)} is neither YYYYMMDDTHH nor an ISO-8601 time`, field);
  return Math.floor(ms / HOUR) * HOUR;
}

export function formatHour(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T${p(d.getUTCHours())}`;
}

/** Thrown when Amplitude says a range is too large or timed out: the range is split in two. */
class SplitRange extends Error {}

interface ExportInput {
  start: string;
  end: string;
  output: string;
}

export const exportEvents = defineAction<ExportInput, { count: number; path: string }, AmplitudeConfig, AmplitudeHost>({
  name: 'export_events',
  description: 'Exports raw events for an hour range (UTC, inclusive) to an NDJSON file, streamed: never held in memory. Needs `secret_key` in the provider block.',
  input: {
    type: 'object',
    additionalProperties: false,
    required: ['start', 'end', 'output'],
    properties: {
      start: { type: 'string', description: 'First hour: `YYYYMMDDTHH` or an ISO-8601 time (UTC).', examples: ['20260101T00'] },
      end: { type: 'string', description: 'Last hour, inclusive.', examples: ['20260101T23'] },
      output: { type: 'string', minLength: 1, description: 'NDJSON file to write, relative to the workflow file. A path from a template must stay inside the workflow\'s folder or the state dir.', examples: ['exports/<<run.id>>.ndjson'] },
    },
  },
  output: { type: 'object', properties: { count: { type: 'integer', description: 'Events written.' }, path: { type: 'string', description: 'Absolute path of the NDJSON file.' } } },
  async run(input, context) {
    const start = parseHour(input.start, 'start');
    const end = parseHour(input.end, 'end');
    if (end < start) throw new ActionInputError('`end` is before `start`', 'end');
    if (end - start > 365 * 24 * HOUR) throw new ActionInputError('an export covers at most 365 days; split the range', 'end');
    if (!context.config.secret_key) throw new ActionInputError('amplitude.export_events needs `secret_key` in `providers.amplitude`', 'secret_key');
    const target = await context.resolveDataPath(input.output, 'output');
    await mkdir(path.dirname(target), { recursive: true });
    const partial = `${target}.partial`;
    const out = createWriteStream(partial);
    let count = 0;
    try {
      count = await exportRange(start, end, context, out, target);
      await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
      await rename(partial, target);
    } catch (error) {
      out.destroy();
      await rm(partial, { force: true });
      throw error;
    }
    return { count, path: target };
  },
});

async function exportRange(start: number, end: number, context: AmplitudeContext, out: WriteStream, target: string): Promise<number> {
  const zip = `${target}.${formatHour(start)}-${formatHour(end)}.zip`;
  try {
    const found = await context.call((http) => download(http, context, start, end, zip), { streamed: true });
    if (!found) return 0;
    return await appendZip(zip, out);
  } catch (error) {
    if (!(error instanceof SplitRange)) throw error;
    const hours = (end - start) / HOUR + 1;
    const mid = start + Math.floor(hours / 2) * HOUR;
    context.log('info', `export ${formatHour(start)}..${formatHour(end)} is too large for one request; splitting it`);
    return (await exportRange(start, mid - HOUR, context, out, target)) + (await exportRange(mid, end, context, out, target));
  } finally {
    await rm(zip, { force: true });
  }
}

/** Downloads one range's zip to disk. False when Amplitude has no data for it (404). */
async function download(http: Dispatcher, context: AmplitudeContext, start: number, end: number, file: string): Promise<boolean> {
  const url = `${context.urls.export}/api/2/export?start=${formatHour(start)}&end=${formatHour(end)}`;
  const auth = exportAuth(context.config).header;
  let res: Dispatcher.ResponseData;
  try {
    res = await undici().request(url, { dispatcher: http, method: 'GET', headers: { authorization: auth }, headersTimeout: context.timeoutMs, bodyTimeout: context.timeoutMs, ...(context.signal === undefined ? {} : { signal: context.signal }) });
  } catch (error) {
    throw networkError('amplitude', error);
  }
  if (res.statusCode === 200) {
    try {
      await pipelineAsync(res.body, createWriteStream(file));
    } catch (error) {
      throw networkError('amplitude', error);
    }
    return true;
  }
  const text = await res.body.text().catch(() => '');
  if (res.statusCode === 404) return false;
  // The Export API's documented 400 is a range over 4 GB, and its 504 a range that timed out
  // (PROVIDERS.md): split it, unless it is one hour. Decided by status, not by the text: ferry
  // builds every range itself (hours checked, in order, at most 365 days), and the halves are
  // fetched first half first, so a 400 of another kind fails the export after one request per
  // halving (about log2 of the hours), at the single hour it reaches.
  if (start !== end && (res.statusCode === 504 || res.statusCode === 400)) throw new SplitRange();
  // The Export API answers errors in plain text: that text is Amplitude's own words.
  const said = answerOf(res.statusCode, text, { textIsError: true });
  if (res.statusCode === 401 || res.statusCode === 403) {
    throw new ProviderError('amplitude', answeredMessage('amplitude export', said, 'check api_key and secret_key'), { status: res.statusCode, body: text.slice(0, 500), answer: said });
  }
  throw statusError('amplitude', { status: res.statusCode, headers: res.headers, text }, undefined, undefined, said);
}

/** Streams every entry of the zip (gzipped NDJSON per hour) onto `out`; returns the lines written. */
async function appendZip(file: string, out: WriteStream): Promise<number> {
  // yauzl is loaded by the first export, not by every process that loads the actions.
  const { open } = (await import('yauzl')).default;
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) => open(file, { lazyEntries: true, autoClose: true }, (error, z) => (error ? reject(error) : resolve(z)))).catch(async (error: unknown) => {
    // A 200 that is not a zip (a proxy's page, garbage) says so, with what came instead.
    const head = await fileHead(file, 200);
    throw notReadable('amplitude', 200, 'a zip archive', head, error);
  });
  let count = 0;
  try {
    for await (const entry of entries(zip)) {
      if (entry.fileName.endsWith('/')) continue;
      const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) => zip.openReadStream(entry, (error, s) => (error ? reject(error) : resolve(s))));
      count += await appendLines(entry.fileName.endsWith('.gz') ? streamPipeline(stream, createGunzip(), () => undefined) : stream, out);
    }
  } finally {
    zip.close();
  }
  return count;
}

async function fileHead(file: string, bytes: number): Promise<string> {
  const handle = await openFile(file).catch(() => undefined);
  if (!handle) return '';
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(bytes), 0, bytes, 0);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await handle.close();
  }
}

async function* entries(zip: yauzl.ZipFile): AsyncGenerator<yauzl.Entry> {
  while (true) {
    const entry = await new Promise<yauzl.Entry | null>((resolve, reject) => {
      const onEntry = (e: yauzl.Entry): void => {
        cleanup();
        resolve(e);
      };
      const onEnd = (): void => {
        cleanup();
        resolve(null);
      };
      const onError = (error: Error): void => {
        cleanup();
        reject(error);
      };
      const cleanup = (): void => {
        zip.off('entry', onEntry);
        zip.off('end', onEnd);
        zip.off('error', onError);
      };
      zip.on('entry', onEntry);
      zip.on('end', onEnd);
      zip.on('error', onError);
      zip.readEntry();
    });
    if (!entry) return;
    yield entry;
  }
}

const streamPipeline = pipeline as unknown as (...args: unknown[]) => NodeJS.ReadableStream;

/**
 * Copies one entry's NDJSON onto `out` with backpressure, counting lines, and ends a last
 * line that lacks its newline. `out` stays open for the next entry and the next range.
 */
async function appendLines(source: NodeJS.ReadableStream, out: WriteStream): Promise<number> {
  let count = 0;
  let last = 0x0a;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    if (chunk.length === 0) continue;
    for (let i = chunk.indexOf(0x0a); i !== -1; i = chunk.indexOf(0x0a, i + 1)) count++;
    last = chunk[chunk.length - 1] as number;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  if (last !== 0x0a) {
    count++;
    if (!out.write('\n')) await once(out, 'drain');
  }
  return count;
}
