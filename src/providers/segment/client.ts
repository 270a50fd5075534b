import type { Dispatcher } from 'undici';
import { ActionInputError } from '../../errors.js';
import type { ActionContext, BatchContext, BatchDeclaration, BatchSpec } from '../define.js';
import { send, statusError } from '../http.js';

export interface SegmentConfig {
  [field: string]: unknown;
  write_key: string;
}

/** Segment's tracking API by region; a block's `base_url` replaces it (the engine resolves `context.urls.api`). */
export const HOSTS = { api: { us: 'https://api.segment.io', eu: 'https://events.eu1.segmentapis.com' } };
export type SegmentHost = keyof typeof HOSTS;

export type SegmentContext = ActionContext<SegmentConfig, SegmentHost>;

/** Segment refuses a message over 32 KB (PROVIDERS.md); checked before sending. */
export const MAX_MESSAGE_BYTES = 32 * 1024;
export const MAX_MESSAGE_ID = 100;

/** Fields every Segment call takes. */
export const commonProperties = {
  userId: { type: 'string', minLength: 1, description: 'The user id. `userId` or `anonymousId` is required.', examples: ['<<user.id>>'] },
  anonymousId: { type: 'string', minLength: 1, description: 'An anonymous id, when the user is not known.', examples: ['<<trigger.body.anonymous_id>>'] },
  timestamp: { type: ['string', 'integer'], description: 'When it happened: ISO-8601, or milliseconds since epoch (sent as ISO-8601).', examples: ['<<user.created_at>>', '2026-01-01T12:00:00Z'] },
  messageId: { type: 'string', minLength: 1, maxLength: MAX_MESSAGE_ID, description: 'Deduplication id (at most 100 characters). Default: derived from run id, step and loop item.', examples: ['signup-<<user.id>>'] },
  context: { type: 'object', description: 'Segment context object.', examples: [{ ip: '203.0.113.7', locale: 'en-US' }] },
  integrations: { type: 'object', description: 'Which destinations receive the call.', examples: [{ All: true, Mixpanel: false }] },
};

export const needsIdentity = [{ required: ['userId'] }, { required: ['anonymousId'] }];

/**
 * The Authorization header: Basic auth with the write key as user name and an empty
 * password. Its forms are declared for redaction (see `credentialForms`) from this same function.
 */
export function basicAuth(writeKey: unknown): { header: string; encoded: string } {
  const encoded = Buffer.from(`${String(writeKey)}:`).toString('base64');
  return { header: `Basic ${encoded}`, encoded };
}

/**
 * Sends one message to `/v1/<type>` with Basic auth (write key, empty password). Not async: a
 * message waiting for its batch keeps no frame of this function alive.
 */
export function sendMessage(context: SegmentContext, type: 'identify' | 'track', message: Record<string, unknown>): Promise<{ success: true }> {
  // Object.assign, not a spread: V8 promotes a spread copy that gets a property added (the
  // messageId) at many times the rate of an assigned one, and a loop of a million messages
  // pays for it in old-generation growth (docs/BENCHMARKS.md, rss-loop).
  const full: Record<string, unknown> = Object.assign({}, message);
  full.type = type;
  full.messageId ??= context.idempotencyKey();
  if (typeof full.timestamp === 'number') full.timestamp = new Date(full.timestamp).toISOString();
  const body = JSON.stringify(full);
  const bytes = Buffer.byteLength(body);
  if (bytes > MAX_MESSAGE_BYTES) {
    return Promise.reject(new ActionInputError(`the ${type} message is ${bytes} bytes; Segment accepts at most ${MAX_MESSAGE_BYTES} bytes per call`, type === 'track' ? 'properties' : 'traits'));
  }
  return context.batch(messagesBatch, { type, body, bytes });
}

/** Every item of an accepted batch has this outcome; one object shared by all, never changed. */
const ACCEPTED = Object.freeze({ kind: 'ok' as const, value: Object.freeze({ success: true as const }) });

const BATCH_OPEN = '{"batch":[';
const BATCH_CLOSE = ']}';

/**
 * `{"batch":[<message>,…]}` written straight into a Buffer: a batch of 2500 messages would
 * otherwise be one string of up to 500 KB, joined, then copied again into bytes to send. Such
 * a string lives in the old generation until a full collection; the Buffer's bytes are
 * outside the JavaScript heap and go as soon as the request is answered.
 */
function batchBody(items: readonly Message[]): Buffer {
  let size = BATCH_OPEN.length + BATCH_CLOSE.length + items.length - 1;
  for (const m of items) size += m.bytes;
  const out = Buffer.allocUnsafe(size);
  let at = out.write(BATCH_OPEN, 0, 'latin1');
  items.forEach((m, i) => {
    if (i > 0) out[at++] = 0x2c;
    at += out.write(m.body, at);
  });
  out.write(BATCH_CLOSE, at, 'latin1');
  return out;
}

interface Message {
  type: 'identify' | 'track';
  /** The message as JSON: sent alone, or joined into a batch. Only this is kept while it waits. */
  body: string;
  bytes: number;
}

/**
 * Concurrent messages go to `/v1/batch` together (at most 2500 and 500 KB); a lone message
 * goes to its own endpoint. Segment's 400 does not say which message was bad, so a failed
 * batch is split until the bad one stands alone.
 */
const messagesBatch: BatchDeclaration<Message, { success: true }, SegmentConfig, SegmentHost> = { spec: messagesSpec };

function messagesSpec(context: BatchContext<SegmentConfig, SegmentHost>): BatchSpec<Message, { success: true }> {
  const base = context.urls.api;
  const auth = basicAuth(context.config.write_key).header;
  return {
    key: `${base} ${auth}`,
    maxItems: 2500,
    maxBytes: 500 * 1024 - 100,
    sizeOf: (m) => m.bytes + 1,
    async send(items, http: Dispatcher) {
      const only = items.length === 1 ? items[0] : undefined;
      const url = only ? `${base}/v1/${only.type}` : `${base}/v1/batch`;
      const body = only ? only.body : batchBody(items);
      const answer = await send('segment', http, { method: 'POST', url, body, headers: { 'content-type': 'application/json', authorization: auth }, timeoutMs: context.timeoutMs, signal: context.signal });
      if (answer.status !== 200) {
        const error = statusError('segment', answer);
        // Segment's 400 (invalid JSON, an oversized body) names no message: halves find the one at fault.
        if (answer.status === 400) return { kind: 'split', error };
        throw error;
      }
      return items.map(() => ACCEPTED);
    },
  };
}
