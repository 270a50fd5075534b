import type { AnsweredFault, Fault } from './faults.js';
import { custom, EmulatorBase, isObject, json, REASONS, retryAfterHeader, type Answer, type EmulatorOptions, type Incoming, type Parsed } from './server.js';

export interface SegmentEmulatorOptions extends EmulatorOptions {
  /** Write keys considered valid (others still get 200, as Segment answers). @default ['sandbox-segment-key'] */
  writeKeys?: string[];
}

const TYPES = new Set(['identify', 'track', 'page', 'screen', 'group', 'alias']);
// Segment's KB are 1024 bytes, as @segment/analytics-node counts them.
const MAX_MESSAGE = 32 * 1024;
const MAX_BATCH = 500 * 1024;
const MAX_MESSAGES = 2500;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;

interface SegmentParsed extends Parsed {
  error?: string;
  writeKey?: string;
}

const isId = (v: unknown): v is string => typeof v === 'string' && v !== '';
const isIsoTime = (v: unknown): boolean => typeof v === 'string' && ISO_8601.test(v) && !Number.isNaN(Date.parse(v));

/** A message Segment would take (200) and then drop: what ferry shows instead of losing it silently. */
export interface DroppedMessage {
  /** 1-based position among the messages received since the last reset (batch members counted one by one). */
  n: number;
  /** The endpoint it came to: `/v1/batch`, `/v1/track`, … */
  path: string;
  /** Its index in the batch, for `/v1/batch`. */
  batchIndex?: number;
  messageId?: string;
  /** `<field>: <reason>`, e.g. `event: track requires event (a string)`. */
  reason: string;
  /** The message as received. */
  message: unknown;
}

/*
 * Segment answers 200 for almost everything and drops bad messages later (PROVIDERS.md), and
 * so does this emulator: a message that is invalid but not oversized (no userId/anonymousId, a
 * track without event, a group without userId, an alias without userId or previousId, a
 * messageId over 100 characters, a timestamp that is not ISO-8601, …) is answered 200 with the
 * rest of its batch, is not stored, and is kept in `dropped` with the reason, so that `ferry
 * test` fails the case and `--sandbox --verbose` says "Segment would drop message N: <reason>".
 * A request that is broken as a whole is refused with 400 (the SDK then fails the whole batch).
 * The documented ones: invalid JSON, a body over 32 KB (500 KB for /v1/batch), a batch message
 * over 32 KB. Undocumented, strict side: no write key, a body or batch that is not the right
 * shape, an empty batch, over 2500 messages, a bad batch-level sentAt/context/integrations.
 * Every 400 body here is undocumented and shaped {"success":false,"error":"<text>"}:
 *   missing write key: send HTTP Basic auth with the write key as user name, or writeKey in the body
 *   invalid JSON: <parser message>
 *   invalid body: expected a JSON object
 *   request body is over 32 KB (<n> bytes)            (500 KB for /v1/batch)
 *   batch: must be an array of messages | batch: is empty | batch: holds <n> messages, at most 2500
 *   batch[<i>]: message is over 32 KB (<n> bytes)
 */
export class SegmentEmulator extends EmulatorBase {
  /** Accepted messages, once per messageId (messages without one under a generated key). */
  readonly messages = new Map<string, Record<string, unknown>>();
  /** Every accepted message, duplicates included. */
  received = 0;
  duplicateMessageIds = 0;
  /** Accepted requests whose write key is not a configured one (Segment answers 200 anyway). */
  unknownWriteKeys = 0;
  /** Messages answered 200 but not stored, as Segment would drop them, with why; in arrival order. */
  readonly dropped: DroppedMessage[] = [];
  /** Stored messages per type. */
  readonly messagesPerType = new Map<string, number>();
  readonly #writeKeys: Set<string>;
  #generated = 0;
  /** Messages received since the last reset, stored or dropped: the N of "message N". */
  #seen = 0;

  constructor(options: SegmentEmulatorOptions = {}) {
    super(options);
    this.#writeKeys = new Set(options.writeKeys ?? ['sandbox-segment-key']);
  }

  override inject(fault: Fault): void {
    if (fault.kind === 'throttle-user') throw new Error('throttle-user is an Amplitude fault: Segment has no per-user throttling answer');
    super.inject(fault);
  }

  protected clearState(): void {
    this.messages.clear();
    this.messagesPerType.clear();
    this.received = 0;
    this.duplicateMessageIds = 0;
    this.unknownWriteKeys = 0;
    this.dropped.length = 0;
    this.#seen = 0;
  }

  protected bodyLimit(path: string): number {
    return path === '/v1/batch' ? MAX_BATCH : MAX_MESSAGE;
  }

  protected parse(req: Incoming): SegmentParsed {
    let body: unknown;
    let error: string | undefined;
    if (!req.oversize) {
      try {
        body = JSON.parse(req.raw.toString('utf8'));
      } catch (e) {
        body = req.raw.toString('utf8');
        error = (e as Error).message;
      }
    }
    const writeKey = writeKeyOf(req.headers.authorization, isObject(body) ? body.writeKey : undefined);
    if (writeKey !== undefined) req.record.writeKeyValid = this.#writeKeys.has(writeKey);
    const users = new Set<string>();
    for (const m of messagesOf(req.path, body)) {
      if (isObject(m) && typeof m.userId === 'string') users.add(m.userId);
      if (isObject(m) && typeof m.anonymousId === 'string') users.add(m.anonymousId);
    }
    return { body, users, ...(error === undefined ? {} : { error }), ...(writeKey === undefined ? {} : { writeKey }) };
  }

  protected faultAnswer(decision: AnsweredFault, req: Incoming, parsed: Parsed): Answer {
    if (decision.kind === 'reject-user') {
      const messages = messagesOf(req.path, parsed.body);
      const i = messages.findIndex((m) => isObject(m) && (m.userId === decision.userId || m.anonymousId === decision.userId));
      const where = req.path === '/v1/batch' ? `batch[${i}].` : '';
      return json(decision.status, { success: false, error: `${where}userId: ${decision.userId} is rejected` });
    }
    if (decision.kind === 'throttle-user') return json(500, { success: false, error: 'throttle-user does not apply to Segment' });
    let headers = retryAfterHeader(decision.retryAfter);
    if (decision.status === 429) {
      // Segment's 429 carries both; X-RateLimit-Reset as unix seconds is our (undocumented) reading.
      const seconds = typeof decision.retryAfter === 'number' ? decision.retryAfter : decision.retryAfter === undefined ? 1 : Math.max(0, Math.ceil((Date.parse(decision.retryAfter) - Date.now()) / 1000) || 1);
      headers = { 'retry-after': String(decision.retryAfter ?? seconds), 'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + seconds) };
    }
    if (decision.body !== undefined) return custom(decision.status, decision.body, headers);
    return json(decision.status, { success: false, error: REASONS[decision.status] ?? 'Error' }, headers);
  }

  protected handle(req: Incoming, parsed: SegmentParsed): Answer {
    const type = /^\/v1\/([a-z]+)$/.exec(req.path)?.[1];
    if (req.method !== 'POST' || type === undefined || (type !== 'batch' && !TYPES.has(type))) {
      return json(404, { success: false, error: `Not Found: ${req.method} ${req.path}` });
    }
    const fail = (error: string): Answer => json(400, { success: false, error });
    if (req.oversize) return fail(`request body is over ${type === 'batch' ? 500 : 32} KB (${req.size} bytes)`);
    if (parsed.error !== undefined) return fail(`invalid JSON: ${parsed.error}`);
    const body = parsed.body;
    if (!isObject(body)) return fail('invalid body: expected a JSON object');
    // Undocumented: a call with no write key at all. The safe side is to refuse it.
    if (parsed.writeKey === undefined) return fail('missing write key: send HTTP Basic auth with the write key as user name, or writeKey in the body');

    const messages: unknown[] = type === 'batch' ? (Array.isArray(body.batch) ? body.batch : []) : [body];
    if (type === 'batch') {
      if (!Array.isArray(body.batch)) return fail('batch: must be an array of messages');
      if (messages.length === 0) return fail('batch: is empty');
      if (messages.length > MAX_MESSAGES) return fail(`batch: holds ${messages.length} messages, at most ${MAX_MESSAGES}`);
      const shared = checkShared(body);
      if (shared) return fail(shared);
      // An oversized message refuses the batch (Segment's 400 for a size over its limits).
      for (let i = 0; i < messages.length; i++) {
        const size = Buffer.byteLength(JSON.stringify(messages[i]) ?? '');
        if (size > MAX_MESSAGE) return fail(`batch[${i}]: message is over 32 KB (${size} bytes)`);
      }
    }
    const accepted: Record<string, unknown>[] = [];
    for (const [i, m] of messages.entries()) {
      const n = ++this.#seen;
      const problem = !isObject(m) ? 'message: must be an object' : type === 'batch' ? checkMessage(typeof m.type === 'string' ? m.type : '', m, true) : checkMessage(type, m, false);
      if (problem) {
        // Segment answers 200 and drops the message later; ferry keeps why, for `ferry test` and --verbose.
        const messageId = isObject(m) && typeof m.messageId === 'string' ? m.messageId : undefined;
        this.dropped.push({ n, path: req.path, ...(type === 'batch' ? { batchIndex: i } : {}), ...(messageId === undefined ? {} : { messageId }), reason: problem, message: m });
        continue;
      }
      if (type === 'batch') accepted.push(withBatchDefaults(m as Record<string, unknown>, body));
      else {
        const { writeKey: _key, ...message } = m as Record<string, unknown>;
        accepted.push({ ...message, type });
      }
    }
    this.#accept(parsed.writeKey, accepted);
    return json(200, { success: true });
  }

  #accept(writeKey: string, messages: Record<string, unknown>[]): void {
    if (!this.#writeKeys.has(writeKey)) this.unknownWriteKeys++;
    for (const m of messages) {
      this.received++;
      const id = typeof m.messageId === 'string' ? m.messageId : `generated:${this.#generated++}`;
      if (this.messages.has(id)) {
        this.duplicateMessageIds++;
        continue;
      }
      this.messages.set(id, m);
      const type = String(m.type);
      this.messagesPerType.set(type, (this.messagesPerType.get(type) ?? 0) + 1);
    }
  }
}

function messagesOf(path: string, body: unknown): unknown[] {
  if (!isObject(body)) return [];
  if (path === '/v1/batch') return Array.isArray(body.batch) ? body.batch : [];
  return [body];
}

/** Basic auth user name first (the password is ignored, as Segment does), then `writeKey` in the body. */
function writeKeyOf(authorization: string | undefined, bodyKey: unknown): string | undefined {
  const basic = /^Basic\s+(\S+)$/i.exec(authorization ?? '')?.[1];
  if (basic !== undefined) {
    const decoded = Buffer.from(basic, 'base64').toString('utf8');
    const user = decoded.slice(0, decoded.includes(':') ? decoded.indexOf(':') : undefined);
    if (user !== '') return user;
  }
  return isId(bodyKey) ? bodyKey : undefined;
}

/** Batch-level fields the SDK sends next to `batch`. */
function checkShared(body: Record<string, unknown>): string | undefined {
  if (body.sentAt !== undefined && !isIsoTime(body.sentAt)) return 'sentAt: must be an ISO-8601 string';
  if (body.context !== undefined && !isObject(body.context)) return 'context: must be an object';
  if (body.integrations !== undefined && !isObject(body.integrations)) return 'integrations: must be an object';
  return undefined;
}

/** Batch-level context and integrations apply to every message; the message's own keys win. */
function withBatchDefaults(m: Record<string, unknown>, body: Record<string, unknown>): Record<string, unknown> {
  if (!isObject(body.context) && !isObject(body.integrations)) return m;
  const out = { ...m };
  if (isObject(body.context)) out.context = { ...body.context, ...(isObject(m.context) ? m.context : {}) };
  if (isObject(body.integrations)) out.integrations = { ...body.integrations, ...(isObject(m.integrations) ? m.integrations : {}) };
  return out;
}

/** The first problem of one message (its size aside), as `<field>: <reason>`. */
function checkMessage(type: string, m: Record<string, unknown>, inBatch: boolean): string | undefined {
  if (!inBatch && m.type !== undefined && m.type !== type) return `type: ${String(m.type)} does not match the endpoint /v1/${type}`;
  if (!TYPES.has(type)) return `type: must be one of ${[...TYPES].join(', ')}`;
  if (!isId(m.userId) && !isId(m.anonymousId)) {
    if (m.userId !== undefined && m.userId !== null) return 'userId: must be a non-empty string';
    if (m.anonymousId !== undefined && m.anonymousId !== null) return 'anonymousId: must be a non-empty string';
    return 'userId: userId or anonymousId is required';
  }
  if (type === 'track' && !isId(m.event)) return 'event: track requires event (a string)';
  if (type === 'group' && !isId(m.groupId)) return 'groupId: group requires groupId (a string)';
  if (type === 'alias' && !isId(m.previousId)) return 'previousId: alias requires previousId (a string)';
  if (m.traits !== undefined && !isObject(m.traits)) return 'traits: must be an object';
  if (m.properties !== undefined && !isObject(m.properties)) return 'properties: must be an object';
  if (m.context !== undefined && !isObject(m.context)) return 'context: must be an object';
  if (m.integrations !== undefined && !isObject(m.integrations)) return 'integrations: must be an object';
  if (m._metadata !== undefined && !isObject(m._metadata)) return '_metadata: must be an object';
  if (m.messageId !== undefined && (typeof m.messageId !== 'string' || m.messageId === '' || m.messageId.length > 100)) return 'messageId: must be a string of 1 to 100 characters';
  if (m.timestamp !== undefined && !isIsoTime(m.timestamp)) return 'timestamp: must be an ISO-8601 string';
  if (m.sentAt !== undefined && !isIsoTime(m.sentAt)) return 'sentAt: must be an ISO-8601 string';
  if ((type === 'page' || type === 'screen') && m.name !== undefined && typeof m.name !== 'string') return 'name: must be a string';
  return undefined;
}
