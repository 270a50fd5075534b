import type { AmplitudeEmulator } from './amplitude.js';
import type { SegmentEmulator } from './segment.js';
import { isObject, type RecordedRequest } from './server.js';

/** Longest body shown per request; the rest is counted, not printed. */
const MAX_BODY_CHARS = 2000;
/** Stored users, events or messages listed per provider; the rest is counted. */
const MAX_STORED = 50;

/** Fields that carry a credential in a request body: never shown, whatever their value. */
const CREDENTIAL_FIELDS = new Set(['api_key', 'writeKey', 'secret_key']);

function withoutCredentials(value: unknown): unknown {
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.entries(value).filter(([k]) => !CREDENTIAL_FIELDS.has(k)));
}

const cut = (text: string): string => (text.length > MAX_BODY_CHARS ? `${text.slice(0, MAX_BODY_CHARS)}… (${text.length} characters)` : text);

/**
 * One line per request an emulator received: method, path, status and the body as parsed,
 * with credential fields left out (headers, which carry the Basic auth, are never shown).
 * The caller's redactor still applies: a secret inside the data is hidden there.
 */
export function describeRequest(provider: string, request: RecordedRequest): string {
  const query = Object.keys(request.query).length > 0 ? `?${new URLSearchParams(request.query).toString()}` : '';
  const status = request.status === 0 ? 'no answer' : String(request.status);
  const body = request.body === undefined ? '' : `  ${cut(typeof request.body === 'string' ? request.body : JSON.stringify(withoutCredentials(request.body)))}`;
  return `${provider} ${request.method} ${request.path}${query} -> ${status}${body}`;
}

function capped(lines: string[], total: number, what: string): string[] {
  return total > lines.length ? [...lines, `  … and ${total - lines.length} more ${what}`] : lines;
}

/** What the emulators hold after a run: Amplitude's users with their properties and its events, Segment's messages. */
export function describeStored(sandbox: { amplitude: AmplitudeEmulator; segment: SegmentEmulator }): string[] {
  const lines: string[] = [];
  const { amplitude, segment } = sandbox;
  const users = [...amplitude.users].slice(0, MAX_STORED).map(([id, props]) => `  amplitude user ${id}: ${cut(JSON.stringify(props))}`);
  lines.push(...capped(users, amplitude.users.size, 'users'));
  const events: string[] = [];
  for (const event of amplitude.events.values()) {
    if (events.length === MAX_STORED) break;
    const who = typeof event.user_id === 'string' ? event.user_id : `device ${String(event.device_id)}`;
    const props = isObject(event.event_properties) ? ` ${cut(JSON.stringify(event.event_properties))}` : '';
    events.push(`  amplitude event ${JSON.stringify(event.event_type)} of ${who}${props}`);
  }
  lines.push(...capped(events, amplitude.events.size, 'events'));
  const messages: string[] = [];
  for (const m of segment.messages.values()) {
    if (messages.length === MAX_STORED) break;
    const who = typeof m.userId === 'string' ? m.userId : `anonymous ${String(m.anonymousId)}`;
    const what = m.type === 'track' ? ` ${JSON.stringify(m.event)}` : '';
    const data = isObject(m.traits) ? m.traits : isObject(m.properties) ? m.properties : undefined;
    messages.push(`  segment ${String(m.type)}${what} of ${who}${data ? ` ${cut(JSON.stringify(data))}` : ''}`);
  }
  lines.push(...capped(messages, segment.messages.size, 'messages'));
  return lines;
}
