import { ActionInputError, ProviderError, type ProviderAnswer } from '../../errors.js';
import { defineAction, type BatchSpec, type ItemOutcome, type RequestOutcome } from '../define.js';
import { answeredMessage, parseAnswer, type HttpAnswer } from '../http.js';
import { amplitudeError, postAnswer, THROTTLE_WAIT_MS, type AmplitudeBatch, type AmplitudeBatchContext, type AmplitudeConfig, type AmplitudeHost } from './client.js';
import { FIELD_EXAMPLES, normalizeUserProperties } from './identify-user.js';
import { checkIds, DEFAULT_MIN_ID_LENGTH, idSchema, toMillis } from './ids.js';

const STRING_FIELDS = ['app_version', 'platform', 'os_name', 'os_version', 'device_brand', 'device_manufacturer', 'device_model', 'carrier', 'country', 'region', 'city', 'dma', 'language', 'ip', 'idfa', 'idfv', 'adid', 'android_id', 'productId', 'revenueType', 'library', 'currency'] as const;
const NUMBER_FIELDS = ['session_id', 'event_id', 'price', 'quantity', 'revenue', 'location_lat', 'location_lng'] as const;

interface EventInput {
  user_id?: string;
  device_id?: string;
  event_type: string;
  time?: string | number;
  insert_id?: string;
  event_properties?: Record<string, unknown>;
  user_properties?: Record<string, unknown>;
  groups?: Record<string, unknown>;
  group_properties?: Record<string, unknown>;
  min_id_length?: number;
  [field: string]: unknown;
}

/** Amplitude caps insert_id length; ours are 38 characters. */
const MAX_INSERT_ID = 128;

export const sendEvent = defineAction<EventInput, { events_ingested: number; server_upload_time: number }, AmplitudeConfig, AmplitudeHost>({
  name: 'send_event',
  description: 'Sends one event to Amplitude (HTTP V2 API). Every event carries an insert_id, so retries and resumed runs never count twice.',
  input: {
    type: 'object',
    additionalProperties: false,
    required: ['event_type'],
    properties: {
      user_id: { ...idSchema, description: 'The user id (at least 5 characters). `user_id` or `device_id` is required.', examples: ['<<user.id>>'] },
      device_id: { ...idSchema, description: 'The device id (at least 5 characters).', examples: ['<<user.device_id>>'] },
      event_type: { type: 'string', minLength: 1, description: 'The event name.', examples: ['Signed Up'] },
      time: { type: ['string', 'integer'], description: 'When it happened: an ISO-8601 time or milliseconds since epoch (sent as milliseconds).', examples: ['<<trigger.body.created_at>>'] },
      insert_id: { type: 'string', minLength: 1, maxLength: MAX_INSERT_ID, description: 'Deduplication id. Default: derived from run id, step and loop item.', examples: ['order-<<order.id>>'] },
      event_properties: { type: 'object', description: 'Event properties.', examples: [{ plan: '<<user.plan>>', source: 'ads' }] },
      user_properties: { type: 'object', description: 'User properties to set with the event (plain keys or operators).', examples: [{ $set: { plan: 'pro' } }] },
      groups: { type: 'object', description: 'Group memberships.', examples: [{ company: 'acme' }] },
      group_properties: { type: 'object', description: 'Group properties.', examples: [{ industry: 'retail' }] },
      min_id_length: { type: 'integer', minimum: 1, description: 'Accept ids shorter than 5 characters (sent as options.min_id_length).', examples: [3] },
      ...Object.fromEntries(STRING_FIELDS.map((f) => [f, { type: 'string', description: `Event field \`${f}\`.`, examples: [FIELD_EXAMPLES[f]] }])),
      ...Object.fromEntries(NUMBER_FIELDS.map((f) => [f, { type: 'number', description: `Event field \`${f}\`.`, examples: [FIELD_EXAMPLES[f]] }])),
    },
    anyOf: [{ required: ['user_id'] }, { required: ['device_id'] }],
  },
  output: {
    type: 'object',
    properties: { events_ingested: { type: 'integer' }, server_upload_time: { type: 'integer' } },
  },
  checks: [
    { reads: ['user_id', 'device_id', 'min_id_length'], check: (input) => checkIds(input, input.min_id_length ?? DEFAULT_MIN_ID_LENGTH) },
    { reads: ['time'], check: (input) => void (input.time === undefined || toMillis(input.time)) },
    { reads: ['user_properties'], check: (input) => void (input.user_properties && normalizeUserProperties(input.user_properties, 'user_properties')) },
  ],
  prepare(input) {
    const out: EventInput = { ...input };
    if (input.time !== undefined) out.time = toMillis(input.time);
    if (input.user_properties) out.user_properties = normalizeUserProperties(input.user_properties, 'user_properties');
    return out;
  },
  async run(input, context) {
    const { min_id_length: minIdLength, ...event } = input;
    event.insert_id ??= context.idempotencyKey();
    if (event.insert_id.length > MAX_INSERT_ID) throw new ActionInputError(`\`insert_id\` is longer than ${MAX_INSERT_ID} characters`, 'insert_id');
    return context.batch(eventsBatch, event, minIdLength);
  },
});

type Output = { events_ingested: number; server_upload_time: number };

interface EventsAnswer {
  error?: unknown;
  missing_field?: unknown;
  server_upload_time?: number;
  events_with_invalid_fields?: Record<string, number[]>;
  events_with_missing_fields?: Record<string, number[]>;
  throttled_events?: number[];
}

/** What an Amplitude 400 says about one event of the batch: the fields at fault, by kind. */
interface EventFaults {
  invalid_fields?: string[];
  missing_fields?: string[];
}

/** The events of a request of `count` that an Amplitude 400 answer names, by index, with the fields at fault. */
function namedEvents(answer: EventsAnswer, count: number): Map<number, EventFaults> {
  const named = new Map<number, EventFaults>();
  for (const [kind, fields] of [['invalid_fields', answer.events_with_invalid_fields], ['missing_fields', answer.events_with_missing_fields]] as const) {
    for (const [field, indexes] of Object.entries(fields ?? {})) {
      if (!Array.isArray(indexes)) continue;
      for (const i of indexes) {
        // An index outside the request names none of its events.
        if (!Number.isInteger(i) || i < 0 || i >= count) continue;
        const faults = named.get(i) ?? {};
        (faults[kind] ??= []).push(field);
        named.set(i, faults);
      }
    }
  }
  return named;
}

/**
 * One event's share of a batch answer: Amplitude's error text, with only this event's detail
 * (`{ invalid_fields: ["time"] }`), never the other events' indexes.
 */
function itemError(error: ProviderError, detail: Record<string, unknown> | undefined, explanation: string, retryAfterMs?: number): ProviderError {
  const words = error.answer?.error;
  const said: ProviderAnswer = { status: error.status ?? 400, ...(words === undefined ? {} : { error: words }), ...(detail === undefined ? {} : { detail }) };
  return new ProviderError('amplitude', answeredMessage('amplitude', said, explanation), { status: said.status, body: error.body, retryAfterMs, answer: said });
}

const describeFaults = (faults: EventFaults): string =>
  [...(faults.invalid_fields ?? []).map((f) => `invalid \`${f}\``), ...(faults.missing_fields ?? []).map((f) => `missing \`${f}\``)].join(', ');

/**
 * HTTP V2 takes an `events` array: concurrent events share a request. Amplitude rejects a
 * whole request when any event is invalid and names the bad ones, so only those fail and
 * the rest are sent again (their insert_ids make that safe); a 429 names the throttled
 * events, which alone wait and go again.
 */
const eventsBatch: AmplitudeBatch<Record<string, unknown>, Output, number | undefined> = { spec: eventsSpec };

function eventsSpec(context: AmplitudeBatchContext, minIdLength: number | undefined): BatchSpec<Record<string, unknown>, Output> {
  const url = `${context.urls.ingest}/2/httpapi`;
  const apiKey = context.config.api_key;
  const options = minIdLength === undefined ? '' : `,"options":{"min_id_length":${minIdLength}}`;
  return {
    key: `events ${url} ${apiKey} ${minIdLength ?? ''}`,
    maxItems: 2000,
    maxBytes: 1_000_000 - 200,
    sizeOf: (event) => Buffer.byteLength(JSON.stringify(event)) + 1,
    async send(events, http) {
      const body = `{"api_key":${JSON.stringify(apiKey)},"events":${JSON.stringify(events)}${options}}`;
      const answer = await postAnswer(http, context, url, body, 'application/json');
      if (answer.status !== 200) return eventOutcomes(answer, events.length);
      const parsed = parseAnswer('amplitude', answer);
      const at = (parsed !== null && typeof parsed === 'object' ? (parsed as EventsAnswer).server_upload_time : undefined) ?? Date.now();
      return events.map(() => ({ kind: 'ok' as const, value: { events_ingested: 1, server_upload_time: at } }));
    },
  };
}

/**
 * What an HTTP V2 answer other than 200 means for a request of `count` events, read from its
 * status and JSON fields (PROVIDERS.md), never by searching its text. A status not handled
 * here is thrown, for the engine to judge by status (5xx retryable, others final).
 */
export function eventOutcomes(answer: HttpAnswer, count: number): ItemOutcome<Output>[] | RequestOutcome {
  const error = amplitudeError(answer, THROTTLE_WAIT_MS.events);
  const parsed = jsonObject(answer.text);
  switch (answer.status) {
    case 413:
      // Over 1 MB or 2000 events: split and resend.
      return { kind: 'split', error };
    case 429: {
      const throttled = new Set(parsed?.throttled_events ?? []);
      if (throttled.size === 0) return { kind: 'throttled', error, afterMs: error.retryAfterMs };
      // Only the named events were throttled; the others were taken.
      const at = parsed?.server_upload_time ?? Date.now();
      const mine = itemError(error, undefined, 'this event was throttled', error.retryAfterMs);
      return Array.from({ length: count }, (_, i) => (throttled.has(i) ? { kind: 'throttled' as const, error: mine, afterMs: error.retryAfterMs } : { kind: 'ok' as const, value: { events_ingested: 1, server_upload_time: at } }));
    }
    case 400: {
      // Not Amplitude's JSON (a proxy's page): nothing says which event, if any, is at fault.
      if (parsed === undefined) return { kind: 'final', error };
      if (refusesKey(parsed)) return { kind: 'auth', error };
      const named = namedEvents(parsed, count);
      // A 400 that names no event of this request: find the bad one by halves.
      if (named.size === 0) return { kind: 'split', error };
      return Array.from({ length: count }, (_, i) => {
        const faults = named.get(i);
        if (!faults) return { kind: 'resend' as const, error };
        return { kind: 'item-fault' as const, error: itemError(error, { ...faults }, `this event has ${describeFaults(faults)}`) };
      });
    }
    default:
      throw error;
  }
}

/**
 * Whether a 400 refuses the key itself, which no split or retry can mend: Amplitude answers
 * `"missing_field": "api_key"` for a missing key and `"error": "Invalid API key: <key>"` for
 * a bad one (the emulator answers the same). The text before the colon is compared whole.
 */
function refusesKey(answer: EventsAnswer): boolean {
  if (answer.missing_field === 'api_key') return true;
  if (typeof answer.error !== 'string') return false;
  const colon = answer.error.indexOf(':');
  return (colon === -1 ? answer.error : answer.error.slice(0, colon)) === 'Invalid API key';
}

/** The answer's JSON object, or undefined when the body is something else. */
function jsonObject(text: string): EventsAnswer | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as EventsAnswer) : undefined;
  } catch {
    return undefined;
  }
}
