import type { ServerResponse } from 'node:http';
import { text, type Answer, type Incoming } from './server.js';
import { writeZip, type ZipEntrySource } from './zip.js';

/**
 * Export data: events per hour (`YYYYMMDDTHH`, UTC), or a function giving one hour's NDJSON
 * lines (null when the hour has no data). A function is read lazily, while the answer streams.
 */
export type ExportSource = Map<string, object[]> | ((hour: string) => Iterable<string> | AsyncIterable<string> | null);

/** Uncompressed bytes of the range `start..end` (inclusive hours, `YYYYMMDDTHH`), for the 4 GB rule. */
export type ExportSizeOf = (start: string, end: string) => number;

const HOUR = 3_600_000;
const MAX_RANGE = 365 * 24 * HOUR;

export function parseHour(value: string | undefined): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})$/.exec(value ?? '');
  if (!m) return undefined;
  const [y, mo, d, h] = [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
  const ms = Date.UTC(y, mo - 1, d, h);
  // Date.UTC rolls 20260230 over to March: refuse what does not round-trip.
  return formatHour(ms) === value ? ms : undefined;
}

export function formatHour(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T${p(d.getUTCHours())}`;
}

/** The entry name Amplitude uses: `<project>/<project>_<YYYY-MM-DD>_<hour without zero pad>#<part>.json.gz`. */
export function entryName(projectId: number, hour: string): string {
  return `${projectId}/${projectId}_${hour.slice(0, 4)}-${hour.slice(4, 6)}-${hour.slice(6, 8)}_${Number(hour.slice(9))}#0.json.gz`;
}

function* jsonLines(events: readonly object[]): Generator<string> {
  for (const e of events) yield JSON.stringify(e);
}

/**
 * Pulls the first line, so that an hour whose generator yields nothing counts as no data. A sync
 * source stays sync: iterating it without an await per line is what keeps a big export fast.
 */
async function peek(lines: Iterable<string> | AsyncIterable<string>): Promise<Iterable<string> | AsyncIterable<string> | undefined> {
  if (Symbol.asyncIterator in lines) {
    const it = lines[Symbol.asyncIterator]();
    const first = await it.next();
    if (first.done) {
      await it.return?.();
      return undefined;
    }
    return (async function* () {
      try {
        yield first.value;
        for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
      } finally {
        await it.return?.();
      }
    })();
  }
  const it = lines[Symbol.iterator]();
  const first = it.next();
  if (first.done) {
    it.return?.();
    return undefined;
  }
  return (function* () {
    try {
      yield first.value;
      for (let r = it.next(); !r.done; r = it.next()) yield r.value;
    } finally {
      it.return?.();
    }
  })();
}

export class ExportEndpoint {
  #source: ExportSource = new Map();
  #sizeOf: ExportSizeOf | undefined;
  #limit = Number.POSITIVE_INFINITY;

  readonly #projectId: number;

  constructor(projectId: number) {
    this.#projectId = projectId;
  }

  setData(source: ExportSource, sizeOf?: ExportSizeOf): void {
    this.#source = source;
    this.#sizeOf = sizeOf;
  }

  setLimit(bytes: number): void {
    this.#limit = bytes;
  }

  reset(): void {
    this.#source = new Map();
    this.#sizeOf = undefined;
    this.#limit = Number.POSITIVE_INFINITY;
  }

  async answer(req: Incoming, authorized: (user: string, password: string) => boolean): Promise<Answer> {
    // Undocumented bodies: Amplitude's export errors are short texts; these name what is wrong.
    const basic = /^Basic\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const decoded = basic === undefined ? '' : Buffer.from(basic, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0 || !authorized(decoded.slice(0, colon), decoded.slice(colon + 1))) {
      return text(401, 'Invalid credentials: the export needs HTTP Basic auth with api_key:secret_key', { 'www-authenticate': 'Basic realm="amplitude"' });
    }
    const { start: startText, end: endText } = req.query;
    const start = parseHour(startText);
    const end = parseHour(endText);
    if (start === undefined) return text(400, `Invalid start: expected an hour formatted YYYYMMDDTHH, got ${JSON.stringify(startText ?? null)}`);
    if (end === undefined) return text(400, `Invalid end: expected an hour formatted YYYYMMDDTHH, got ${JSON.stringify(endText ?? null)}`);
    if (end < start) return text(400, `Invalid range: end ${endText} is before start ${startText}`);
    if (end - start > MAX_RANGE) return text(400, 'Invalid range: an export covers at most 365 days');

    const source = this.#source;
    const size = this.#rangeSize(start, end);
    if (size !== undefined && size > this.#limit) {
      // Amplitude's rule is 4 GB of raw data per request; the text says so whatever limit the test set.
      return text(400, `Raw data size exceeds 4GB limit for this range (${size} bytes); request a shorter time range`);
    }
    const hourLines = (hour: string): Iterable<string> | AsyncIterable<string> | null => {
      if (typeof source === 'function') return source(hour);
      const events = source.get(hour);
      return events && events.length > 0 ? jsonLines(events) : null;
    };
    // Only the first hour with data is looked for before answering: 404 needs it, the rest streams.
    const projectId = this.#projectId;
    const entries = (async function* (): AsyncGenerator<ZipEntrySource> {
      for (let h = start; h <= end; h += HOUR) {
        const hour = formatHour(h);
        const raw = hourLines(hour);
        const lines = raw === null ? undefined : await peek(raw);
        if (lines) yield { name: entryName(projectId, hour), lines };
      }
    })();
    const first = await entries.next();
    if (first.done) return text(404, `No data for ${startText}..${endText}`);
    const all = (async function* () {
      yield first.value;
      yield* entries;
    })();
    return {
      status: 200,
      headers: { 'content-type': 'application/zip' },
      stream: (res: ServerResponse) => writeZip(res, all),
    };
  }

  #rangeSize(start: number, end: number): number | undefined {
    if (!Number.isFinite(this.#limit)) return undefined;
    if (this.#sizeOf) return this.#sizeOf(formatHour(start), formatHour(end));
    const source = this.#source;
    if (typeof source === 'function') return undefined;
    let bytes = 0;
    for (let h = start; h <= end; h += HOUR) {
      const events = source.get(formatHour(h));
      if (!events) continue;
      for (const e of events) bytes += Buffer.byteLength(JSON.stringify(e)) + 1;
    }
    return bytes;
  }
}
