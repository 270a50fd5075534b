import type { AnsweredFault } from './faults.js';
import { ExportEndpoint, formatHour, type ExportSizeOf, type ExportSource } from './amplitude-export.js';
import { applyUserProperties, checkEvent, checkIdentification, cutLongStrings, minIdLengthOf, type EventProblems } from './amplitude-rules.js';
import { custom, EmulatorBase, isObject, json, REASONS, retryAfterHeader, text, type Answer, type EmulatorOptions, type Incoming, type Parsed } from './server.js';

export interface AmplitudeEmulatorOptions extends EmulatorOptions {
  /** Accepted api keys. @default ['sandbox-amplitude-key'] */
  apiKeys?: string[];
  /** Secret key for the export's Basic auth. @default 'sandbox-amplitude-secret' */
  secretKey?: string;
  /** Project id in export entry names. @default 187520 */
  projectId?: number;
}

/** 1 MB read as 1,000,000 bytes: the stricter reading, so that a client passing here passes there. */
const MB = 1_000_000;
const MAX_ITEMS = 2000;
const EPS_THRESHOLD = 30;
const INGEST_PATHS = new Set(['/2/httpapi', '/batch']);
const TOP_LEVEL_KEYS = new Set(['api_key', 'events', 'options', 'client_upload_time', 'request_metadata']);

interface AmplitudeParsed extends Parsed {
  /** Why the body did not parse, when it did not. */
  error?: string;
}

const idsOf = (item: unknown): string[] => {
  if (!isObject(item)) return [];
  const out: string[] = [];
  if (typeof item.user_id === 'string') out.push(item.user_id);
  if (typeof item.device_id === 'string') out.push(item.device_id);
  return out;
};

/** The id a user's properties and dedup are keyed by: user_id, else device_id. */
const whoOf = (item: Record<string, unknown>): string =>
  typeof item.user_id === 'string' && item.user_id !== '' ? item.user_id : String(item.device_id ?? '');

/** The events (or identifications) a parsed body carries, for faults. */
function itemsOf(path: string, body: unknown): unknown[] {
  if (!isObject(body)) return [];
  const list = path === '/identify' ? body.identification : body.events;
  return Array.isArray(list) ? list : list === undefined || typeof list === 'string' ? [] : [list];
}

/**
 * Amplitude's Identify, HTTP V2, Batch and Export APIs, with PROVIDERS.md's rules, status
 * codes and bodies. Where the real answer is undocumented the choice is the strict one and
 * the code says so.
 */
export class AmplitudeEmulator extends EmulatorBase {
  /** Accepted events, once per (user or device, insert_id); events without insert_id under a generated key. */
  readonly events = new Map<string, Record<string, unknown>>();
  /** Every accepted event, dedup hits included, as Amplitude counts `events_ingested`. */
  eventsIngested = 0;
  /** Accepted events whose insert_id was already stored for the same user or device. */
  duplicateInsertIds = 0;
  /** Accepted identifications, in order. */
  readonly identifications: Record<string, unknown>[] = [];
  /** User properties after the operators of identifications and events, by user_id (else device_id). */
  readonly users = new Map<string, Record<string, unknown>>();
  readonly #apiKeys: Set<string>;
  readonly #secretKey: string;
  readonly #export: ExportEndpoint;
  /** Stored events as export rows, by the UTC hour they arrived; kept only after `exportReceived()`. */
  #received: Map<string, object[]> | undefined;
  #generated = 0;

  constructor(options: AmplitudeEmulatorOptions = {}) {
    super(options);
    this.#apiKeys = new Set(options.apiKeys ?? ['sandbox-amplitude-key']);
    this.#secretKey = options.secretKey ?? 'sandbox-amplitude-secret';
    this.#export = new ExportEndpoint(options.projectId ?? 187520);
  }

  /** What the export serves; `sizeOf` gives a range's raw size for `setExportLimitBytes` when `source` is a function. */
  setExportData(source: ExportSource, sizeOf?: ExportSizeOf): void {
    this.#export.setData(source, sizeOf);
  }

  /**
   * From now on the export serves the events this emulator stores, by the UTC hour they
   * arrived (Amplitude exports by upload time; the sandbox has no two-hour delay), after the
   * `seed` rows of each hour. What `ferry run --sandbox` uses: a workflow that sends events
   * and then exports them gets them back.
   */
  exportReceived(seed: ReadonlyMap<string, readonly object[]> = new Map()): void {
    const received = (this.#received ??= new Map());
    this.#export.setData((hour) => {
      const rows = [...(seed.get(hour) ?? []), ...(received.get(hour) ?? [])];
      return rows.length === 0 ? null : rows.map((row) => JSON.stringify(row));
    });
  }

  /** A range over this many raw bytes answers 400, as Amplitude does over 4 GB. */
  setExportLimitBytes(bytes: number): void {
    this.#export.setLimit(bytes);
  }

  protected clearState(): void {
    this.events.clear();
    this.eventsIngested = 0;
    this.duplicateInsertIds = 0;
    this.identifications.length = 0;
    this.users.clear();
    this.#received = undefined;
    this.#export.reset();
  }

  protected bodyLimit(path: string): number {
    if (path === '/batch') return 20 * MB;
    if (path === '/2/httpapi' || path === '/identify') return MB;
    return 64 * 1024;
  }

  protected parse(req: Incoming): AmplitudeParsed {
    const none = new Set<string>();
    if (req.oversize || req.raw.length === 0) return { body: undefined, users: none };
    const raw = req.raw.toString('utf8');
    if (req.path === '/identify') {
      const form = Object.fromEntries(new URLSearchParams(raw)) as Record<string, unknown>;
      let error: string | undefined;
      if (typeof form.identification === 'string') {
        try {
          form.identification = JSON.parse(form.identification);
        } catch (e) {
          error = (e as Error).message;
        }
      }
      const users = new Set(itemsOf(req.path, form).flatMap(idsOf));
      return error === undefined ? { body: form, users } : { body: form, users, error };
    }
    try {
      const body: unknown = JSON.parse(raw);
      return { body, users: new Set(itemsOf(req.path, body).flatMap(idsOf)) };
    } catch (e) {
      return { body: raw, users: none, error: (e as Error).message };
    }
  }

  protected handle(req: Incoming, parsed: AmplitudeParsed): Answer | Promise<Answer> {
    if (req.path === '/identify' && req.method === 'POST') return this.#identify(req, parsed);
    if (INGEST_PATHS.has(req.path) && req.method === 'POST') return this.#ingest(req, parsed);
    if (req.path === '/api/2/export' && req.method === 'GET') {
      return this.#export.answer(req, (user, password) => this.#apiKeys.has(user) && password === this.#secretKey);
    }
    return json(404, { code: 404, error: `Not found: ${req.method} ${req.path}` });
  }

  protected faultAnswer(decision: AnsweredFault, req: Incoming, parsed: Parsed): Answer {
    const items = itemsOf(req.path, parsed.body);
    const identify = req.path === '/identify';
    if (decision.kind === 'reject-user') {
      const field = items.some((e) => isObject(e) && e.user_id === decision.userId) ? 'user_id' : 'device_id';
      const indexes = indexesOf(items, decision.userId);
      if (identify) return text(decision.status, `invalid identification[${indexes[0] ?? 0}].${field}: ${decision.userId} is rejected`);
      return json(decision.status, { code: decision.status, error: 'Invalid field values on some events', events_with_invalid_fields: { [field]: indexes } });
    }
    if (decision.kind === 'throttle-user') {
      const throttled = indexesOf(items, decision.userId);
      // Amplitude takes the events it did not throttle: only `throttled_events` are to be resent.
      // An identify is refused whole (undocumented): resending it all must not apply operators twice.
      // A request Amplitude would refuse anyway gets that refusal, not a throttle that stores half of it.
      const checked = identify ? undefined : this.#check(req, parsed);
      if (checked !== undefined && !Array.isArray(checked)) return checked;
      const skip = new Set(throttled);
      if (checked) this.#store(checked.filter((_, i) => !skip.has(i)));
      const byUser = items.some((e) => isObject(e) && e.user_id === decision.userId);
      return json(429, throttledBody(byUser ? { [decision.userId]: EPS_THRESHOLD + 1 } : {}, byUser ? {} : { [decision.userId]: EPS_THRESHOLD + 1 }, throttled), retryAfterHeader(decision.retryAfter));
    }
    const headers = retryAfterHeader(decision.retryAfter);
    if (decision.body !== undefined) return custom(decision.status, decision.body, headers);
    if (decision.status === 429 && (identify || INGEST_PATHS.has(req.path))) {
      const users: Record<string, number> = {};
      const devices: Record<string, number> = {};
      for (const e of items) {
        if (!isObject(e)) continue;
        if (typeof e.user_id === 'string') users[e.user_id] = EPS_THRESHOLD + 1;
        else if (typeof e.device_id === 'string') devices[e.device_id] = EPS_THRESHOLD + 1;
      }
      return json(429, throttledBody(users, devices, items.map((_, i) => i)), headers);
    }
    const reason = REASONS[decision.status] ?? 'Error';
    return identify ? text(decision.status, reason, headers) : json(decision.status, { code: decision.status, error: reason }, headers);
  }

  /*
   * Identify API answers are plain text. Its 400 texts are undocumented; ours are
   * `<missing|invalid> <field>: <reason>` so that the offending field is named:
   *   missing api_key: the form field api_key is required
   *   invalid api_key: Invalid API key: <the key, echoed on purpose: ferry must redact it>
   *   invalid body: Content-Type must be application/x-www-form-urlencoded
   *   missing identification: the form field identification is required
   *   invalid identification: not valid JSON (<parser message>)
   *   invalid identification: must be a JSON object or an array of objects
   *   missing identification[<i>].user_id: user_id or device_id is required
   *   invalid identification[<i>].<field>: <reason>, e.g.
   *     invalid identification[0].user_properties: unknown operator $set_once (operators are camelCase: $setOnce)
   *     invalid identification[0].user_properties: mixes operators ($set) with plain keys (plan)
   * 413 answers `Payload too large` (over 2000 identifications or 1 MB).
   */
  #identify(req: Incoming, parsed: AmplitudeParsed): Answer {
    if (req.oversize) return text(413, 'Payload too large');
    if (!/^application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
      return text(400, 'invalid body: Content-Type must be application/x-www-form-urlencoded');
    }
    const form = isObject(parsed.body) ? parsed.body : {};
    const key = form.api_key;
    if (typeof key !== 'string' || key === '') return text(400, 'missing api_key: the form field api_key is required');
    if (!this.#apiKeys.has(key)) return text(400, `invalid api_key: Invalid API key: ${key}`);
    if (form.identification === undefined || form.identification === '') return text(400, 'missing identification: the form field identification is required');
    if (parsed.error !== undefined) return text(400, `invalid identification: not valid JSON (${parsed.error})`);
    const raw = form.identification;
    const list = Array.isArray(raw) ? raw : [raw];
    if (!isObject(raw) && !(Array.isArray(raw) && raw.length > 0)) return text(400, 'invalid identification: must be a JSON object or an array of objects');
    if (list.length > MAX_ITEMS) return text(413, 'Payload too large');
    for (const [i, id] of list.entries()) {
      const problem = checkIdentification(id);
      if (problem) return text(400, `${problem.missing ? 'missing' : 'invalid'} identification[${i}]${problem.field === undefined ? '' : `.${problem.field}`}: ${problem.reason}`);
    }
    for (const item of list as Record<string, unknown>[]) {
      const id = cutLongStrings(item);
      this.identifications.push(id);
      if (!this.users.has(whoOf(id))) this.users.set(whoOf(id), {});
      this.#applyUser(id);
    }
    return text(200, 'success');
  }

  /*
   * HTTP V2 and Batch. Documented bodies: 200, 413, and the 400 shape with
   * `missing_field` (a request field: api_key, events) / `events_with_invalid_fields` /
   * `events_with_missing_fields` (event indexes by field).
   * Undocumented texts chosen here (safe side: refuse):
   *   {"code":400,"error":"Some events are missing required fields","events_with_missing_fields":{...}}
   *   {"code":400,"error":"Invalid JSON request body: <parser message>"}
   *   {"code":400,"error":"Invalid request body: Content-Type must be application/json"}
   *   {"code":400,"error":"Invalid request body: unknown field <name>"}   (top level)
   *   {"code":400,"error":"Invalid request body: <options problem | client_upload_time | request_metadata>"}
   */
  #ingest(req: Incoming, parsed: AmplitudeParsed): Answer {
    const events = this.#check(req, parsed);
    if (!Array.isArray(events)) return events;
    this.#store(events);
    return json(200, { code: 200, events_ingested: events.length, payload_size_bytes: req.size, server_upload_time: Date.now() });
  }

  /** The request's events when it is valid, else Amplitude's refusal. */
  #check(req: Incoming, parsed: AmplitudeParsed): Record<string, unknown>[] | Answer {
    if (req.oversize) return json(413, { code: 413, error: 'Payload too large' });
    if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
      return json(400, { code: 400, error: 'Invalid request body: Content-Type must be application/json' });
    }
    if (parsed.error !== undefined) return json(400, { code: 400, error: `Invalid JSON request body: ${parsed.error}` });
    const body = parsed.body;
    if (!isObject(body)) return json(400, { code: 400, error: 'Invalid request body: expected a JSON object' });
    if (typeof body.api_key !== 'string' || body.api_key === '') return json(400, { code: 400, error: 'Request missing required field', missing_field: 'api_key' });
    // Amplitude echoes the key; so do we, deliberately: ferry must redact it before printing.
    if (!this.#apiKeys.has(body.api_key)) return json(400, { code: 400, error: `Invalid API key: ${body.api_key}` });
    const unknown = Object.keys(body).find((k) => !TOP_LEVEL_KEYS.has(k));
    if (unknown !== undefined) return json(400, { code: 400, error: `Invalid request body: unknown field ${unknown}` });
    const events = body.events;
    if (!Array.isArray(events) || events.length === 0) return json(400, { code: 400, error: 'Request missing required field', missing_field: 'events' });
    if (events.length > MAX_ITEMS) return json(413, { code: 413, error: 'Payload too large' });
    const minIdLength = minIdLengthOf(body.options);
    if (typeof minIdLength === 'string') return json(400, { code: 400, error: `Invalid request body: ${minIdLength}` });
    if (body.client_upload_time !== undefined && typeof body.client_upload_time !== 'string') {
      return json(400, { code: 400, error: 'Invalid request body: client_upload_time must be an ISO-8601 string' });
    }
    if (body.request_metadata !== undefined && !isObject(body.request_metadata)) {
      return json(400, { code: 400, error: 'Invalid request body: request_metadata must be an object' });
    }
    const problems: EventProblems = { invalid: {}, missing: {} };
    for (let i = 0; i < events.length; i++) checkEvent(events[i], i, minIdLength, problems);
    const missing = Object.keys(problems.missing);
    const invalid = Object.keys(problems.invalid);
    if (missing.length > 0 || invalid.length > 0) {
      // One bad event refuses the whole request: nothing is stored. The bad events are named by
      // index; `missing_field` stays for the request's own fields (api_key, events): the official
      // SDK reads it as "the whole request is bad" and drops every event, where Amplitude's
      // answer to a bad event is to drop that one and resend the rest.
      return json(400, {
        code: 400,
        error: invalid.length > 0 ? 'Invalid field values on some events' : 'Some events are missing required fields',
        ...(invalid.length > 0 ? { events_with_invalid_fields: problems.invalid } : {}),
        ...(missing.length > 0 ? { events_with_missing_fields: problems.missing } : {}),
      });
    }
    return events as Record<string, unknown>[];
  }

  #store(events: Record<string, unknown>[]): void {
    for (const event of events) {
      this.eventsIngested++;
      const key = typeof event.insert_id === 'string' ? `${whoOf(event)}\u0000${event.insert_id}` : `generated:${this.#generated++}`;
      if (this.events.has(key)) {
        this.duplicateInsertIds++;
        continue;
      }
      const stored = cutLongStrings(event);
      this.events.set(key, stored);
      this.#applyUser(stored);
      if (this.#received) this.#keepForExport(stored);
    }
  }

  /** The row as Amplitude's export writes it: the event with its times as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC). */
  #keepForExport(event: Record<string, unknown>): void {
    const now = Date.now();
    const time = typeof event.time === 'number' ? event.time : now;
    const row = { ...event, event_time: exportTime(time), server_upload_time: exportTime(now), ...(typeof event.insert_id === 'string' ? { $insert_id: event.insert_id } : {}) };
    const hour = formatHour(now);
    const rows = this.#received?.get(hour);
    if (rows) rows.push(row);
    else this.#received?.set(hour, [row]);
  }

  #applyUser(item: Record<string, unknown>): void {
    if (item.user_properties === undefined) return;
    const who = whoOf(item);
    let user = this.users.get(who);
    if (!user) this.users.set(who, (user = {}));
    applyUserProperties(user, item.user_properties);
  }
}

const exportTime = (ms: number): string => `${new Date(ms).toISOString().slice(0, 23).replace('T', ' ')}000`;

function indexesOf(items: unknown[], id: string): number[] {
  const out: number[] = [];
  items.forEach((e, i) => {
    if (isObject(e) && (e.user_id === id || e.device_id === id)) out.push(i);
  });
  return out;
}

function throttledBody(users: Record<string, number>, devices: Record<string, number>, events: number[]): Record<string, unknown> {
  return { code: 429, error: 'Too many requests for some devices and users', eps_threshold: EPS_THRESHOLD, throttled_devices: devices, throttled_users: users, throttled_events: events };
}
