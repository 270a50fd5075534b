import type { ServerResponse } from 'node:http';
import type { FaultDecision } from './faults.js';
import { EmulatorBase, json, retryAfterHeader, type Answer, type EmulatorOptions, type Incoming } from './server.js';
import { writeZip } from './zip.js';
import { applyUserProperties, checkIdentification, checkEvent, type EventProblems } from './amplitude-rules.js';

export interface AmplitudeEmulatorOptions extends EmulatorOptions {
  /** Accepted api keys. @default ['sandbox-amplitude-key'] */
  apiKeys?: string[];
  /** Secret key for export Basic auth. @default 'sandbox-amplitude-secret' */
  secretKey?: string;
}

/** Export data: events per hour (`YYYYMMDDTHH`), or a function yielding NDJSON lines per hour (null: none). */
export type ExportSource = Map<string, object[]> | ((hour: string) => Iterable<string> | AsyncIterable<string> | null);

const HOUR = 3_600_000;
const PROJECT = 187520;

/**
 * Amplitude's Identify, HTTP V2, Batch and Export APIs as PROVIDERS.md describes them:
 * same rules, same status codes and bodies. Where the real API is undocumented the choice
 * is the strict one and says so.
 */
export class AmplitudeEmulator extends EmulatorBase {
  protected readonly maxBody = 20 * 1024 * 1024;
  /** Accepted events, once per insert_id. */
  events = new Map<string, Record<string, unknown>>();
  /** Every accepted event, dedup hits included, as Amplitude counts `events_ingested`. */
  eventsIngested = 0;
  duplicateInsertIds = 0;
  identifications: Record<string, unknown>[] = [];
  users = new Map<string, Record<string, unknown>>();
  readonly #apiKeys: Set<string>;
  readonly #secretKey: string;
  #export: ExportSource = new Map();
  #exportLimit = Number.POSITIVE_INFINITY;
  #generated = 0;

  constructor(options: AmplitudeEmulatorOptions = {}) {
    super(options);
    this.#apiKeys = new Set(options.apiKeys ?? ['sandbox-amplitude-key']);
    this.#secretKey = options.secretKey ?? 'sandbox-amplitude-secret';
  }

  setExportData(source: ExportSource): void {
    this.#export = source;
  }

  /** Ranges holding more uncompressed bytes than this answer 400 (the real limit is 4 GB). */
  setExportLimitBytes(bytes: number): void {
    this.#exportLimit = bytes;
  }

  protected clearState(): void {
    this.events.clear();
    this.eventsIngested = 0;
    this.duplicateInsertIds = 0;
    this.identifications = [];
    this.users.clear();
  }

  protected parse(req: Incoming): { body: unknown; users: string[] } {
    const text = req.raw.toString('utf8');
    if (req.path === '/identify') {
      const form = Object.fromEntries(new URLSearchParams(text));
      let identification: unknown = form.identification;
      try {
        if (typeof identification === 'string') identification = JSON.parse(identification);
      } catch {
        // answered 400 in handle
      }
      const list = Array.isArray(identification) ? identification : [identification];
      return { body: { ...form, identification }, users: list.map(userOf).filter((u): u is string => u !== undefined) };
    }
    if (req.method !== 'POST') return { body: text, users: [] };
    try {
      const body = JSON.parse(text) as { events?: unknown };
      const events = Array.isArray(body.events) ? body.events : [];
      return { body, users: events.map(userOf).filter((u): u is string => u !== undefined) };
    } catch {
      return { body: text, users: [] };
    }
  }

  protected faultAnswer(decision: Exclude<FaultDecision, { kind: 'none' } | { kind: 'reset' }>, body: unknown): Answer {
    const events = eventsOf(body);
    if (decision.kind === 'reject-user') {
      const indexes = events.map((e, i) => (userOf(e) === decision.userId ? i : -1)).filter((i) => i >= 0);
      return json(decision.status, { code: decision.status, error: `Invalid field values on some events`, events_with_invalid_fields: { user_id: indexes } });
    }
    if (decision.kind === 'throttle-user') {
      // The other events of the request are taken: only the throttled ones are to be resent.
      const throttled = events.map((e, i) => (userOf(e) === decision.userId ? i : -1)).filter((i) => i >= 0);
      this.#store(events.filter((_, i) => !throttled.includes(i)));
      return json(429, { code: 429, error: 'Too many requests for some devices and users', eps_threshold: 30, throttled_devices: {}, throttled_users: { [decision.userId]: 31 }, throttled_events: throttled });
    }
    if (decision.status === 429 && decision.body === undefined) {
      const users = Object.fromEntries(events.map((e) => [userOf(e) ?? '', 31]));
      return json(429, { code: 429, error: 'Too many requests for some devices and users', eps_threshold: 30, throttled_devices: {}, throttled_users: users, throttled_events: events.map((_, i) => i) }, retryAfterHeader(decision.retryAfter));
    }
    return json(decision.status, decision.body ?? { code: decision.status, error: 'Service unavailable' }, retryAfterHeader(decision.retryAfter));
  }

  protected handle(req: Incoming, body: unknown): Answer {
    if (req.path === '/identify' && req.method === 'POST') return this.#identify(req, body as Record<string, unknown>);
    if ((req.path === '/2/httpapi' || req.path === '/batch') && req.method === 'POST') return this.#events(req, body);
    if (req.path === '/api/2/export' && req.method === 'GET') return this.#exportAnswer(req);
    return json(404, { code: 404, error: 'Not found' });
  }

  #identify(req: Incoming, form: Record<string, unknown>): Answer {
    const key = form.api_key;
    // The Identify API has no 401: a bad key is a 400 (PROVIDERS.md). Body text undocumented.
    if (typeof key !== 'string' || !this.#apiKeys.has(key)) return text(400, `invalid_api_key: Invalid API key: ${String(key ?? '')}`);
    if (form.identification === undefined) return text(400, 'missing_identification: the identification field is required');
    const raw = form.identification;
    if (typeof raw === 'string') return text(400, 'invalid_json: identification is not valid JSON');
    const list = Array.isArray(raw) ? raw : [raw];
    if (list.length > 2000 || req.raw.length > 1_000_000) return text(413, 'Payload too large');
    for (const [i, id] of list.entries()) {
      const problem = checkIdentification(id);
      if (problem) return text(400, `invalid_identification: identification ${i}: ${problem}`);
    }
    for (const id of list as Record<string, unknown>[]) {
      this.identifications.push(id);
      const who = userOf(id) as string;
      this.users.set(who, applyUserProperties(this.users.get(who) ?? {}, id.user_properties as Record<string, unknown> | undefined));
    }
    return text(200, 'success');
  }

  #events(req: Incoming, body: unknown): Answer {
    if (typeof body !== 'object' || body === null) return json(400, { code: 400, error: 'Invalid JSON request body' });
    const { api_key: key, events, options } = body as { api_key?: unknown; events?: unknown; options?: { min_id_length?: number } };
    if (typeof key !== 'string' || !this.#apiKeys.has(key)) return json(400, { code: 400, error: `Invalid API key: ${String(key ?? '')}` });
    if (!Array.isArray(events) || events.length === 0) return json(400, { code: 400, error: 'Request missing required field', missing_field: 'events' });
    const limit = req.path === '/batch' ? 20 * 1024 * 1024 : 1024 * 1024;
    if (events.length > 2000 || req.raw.length > limit) return json(413, { code: 413, error: 'Payload too large' });
    const problems: EventProblems = { invalid: {}, missing: {} };
    events.forEach((e, i) => checkEvent(e, i, options?.min_id_length ?? 5, problems));
    if (Object.keys(problems.invalid).length > 0 || Object.keys(problems.missing).length > 0) {
      // One bad event rejects the whole request: nothing is stored.
      return json(400, {
        code: 400,
        error: Object.keys(problems.missing).length > 0 ? 'Request missing required field' : 'Invalid field values on some events',
        ...(Object.keys(problems.missing).length > 0 ? { missing_field: Object.keys(problems.missing)[0], events_with_missing_fields: problems.missing } : {}),
        ...(Object.keys(problems.invalid).length > 0 ? { events_with_invalid_fields: problems.invalid } : {}),
      });
    }
    this.#store(events as Record<string, unknown>[]);
    return json(200, { code: 200, events_ingested: events.length, payload_size_bytes: req.raw.length, server_upload_time: Date.now() });
  }

  #store(events: Record<string, unknown>[]): void {
    for (const event of events) {
      this.eventsIngested++;
      const id = typeof event.insert_id === 'string' ? `${userOf(event)}\0${event.insert_id}` : `generated-${this.#generated++}`;
      if (this.events.has(id)) this.duplicateInsertIds++;
      else this.events.set(id, event);
    }
  }

  #exportAnswer(req: Incoming): Answer {
    const auth = req.headers.authorization ?? '';
    const expected = [...this.#apiKeys].map((k) => `Basic ${Buffer.from(`${k}:${this.#secretKey}`).toString('base64')}`);
    if (!expected.includes(auth)) return json(401, { error: 'Invalid credentials' });
    const start = parseHour(req.query.start);
    const end = parseHour(req.query.end);
    if (start === undefined || end === undefined) return text(400, 'start and end must be YYYYMMDDTHH');
    if (end < start) return text(400, 'end is before start');
    if (end - start > 365 * 24 * HOUR) return text(400, 'The date range exceeds 365 days');
    const hours: string[] = [];
    for (let h = start; h <= end; h += HOUR) hours.push(formatHour(h));
    const source = this.#export;
    const lines = (hour: string): Iterable<string> | AsyncIterable<string> | null => {
      if (typeof source === 'function') return source(hour);
      const events = source.get(hour);
      return events && events.length > 0 ? events.map((e) => JSON.stringify(e)) : null;
    };
    const present = hours.map((h) => ({ hour: h, lines: lines(h) })).filter((x): x is { hour: string; lines: Iterable<string> | AsyncIterable<string> } => x.lines !== null);
    if (present.length === 0) return text(404, 'No data for the requested range');
    if (source instanceof Map && Number.isFinite(this.#exportLimit)) {
      let bytes = 0;
      for (const { lines: l } of present) for (const line of l as Iterable<string>) bytes += Buffer.byteLength(line) + 1;
      if (bytes > this.#exportLimit) return text(400, 'Raw data size exceeds the 4GB limit for this range; request a smaller range');
    }
    return {
      status: 200,
      headers: { 'content-type': 'application/zip' },
      stream: (res: ServerResponse) =>
        writeZip(res, present.map(({ hour, lines: l }) => ({ name: `${PROJECT}/${PROJECT}_${hour.slice(0, 4)}-${hour.slice(4, 6)}-${hour.slice(6, 8)}_${Number(hour.slice(9))}#0.json.gz`, lines: l }))).then(() => void res.end()),
    };
  }
}

const text = (status: number, body: string): Answer => ({ status, headers: { 'content-type': 'text/plain; charset=utf-8' }, body });

function userOf(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const v = value as { user_id?: unknown; device_id?: unknown };
  if (typeof v.user_id === 'string' && v.user_id !== '') return v.user_id;
  return typeof v.device_id === 'string' && v.device_id !== '' ? v.device_id : undefined;
}

function eventsOf(body: unknown): Record<string, unknown>[] {
  if (body === null || typeof body !== 'object') return [];
  const b = body as { events?: unknown; identification?: unknown };
  const list = b.events ?? b.identification;
  return (Array.isArray(list) ? list : list === undefined ? [] : [list]) as Record<string, unknown>[];
}

function parseHour(value: string | undefined): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})$/.exec(value ?? '');
  return m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4])) : undefined;
}

function formatHour(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T${p(d.getUTCHours())}`;
}
