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

/*
 * Segment answers 200 for almost everything and drops bad messages later (PROVIDERS.md); this
 * emulator refuses them with a 400 instead, so that a ferry bug shows up in tests rather than
 * as silently missing data. Every 400 body here is undocumented and shaped
 * {"success":false,"error":"<text>"}, the text naming the field:
 *   missing write key: send HTTP Basic auth with the write key as user name, or writeKey in the body
 *   invalid JSON: <parser message>
 *   invalid body: expected a JSON object
 *   request body is over 32 KB (<n> bytes)            (500 KB for /v1/batch)
 *   batch: must be an array of messages | batch: is empty | batch: holds <n> messages, at most 2500
 *   batch[<i>].<field>: <reason>                       (the first bad message of a batch)
 *   <field>: <reason>                                  (a single call), e.g. event: track requires event (a string)
 */
export class SegmentEmulator extends EmulatorBase {
  /** Accepted messages, once per messageId (messages without one under a generated key). */
  readonly messages = new Map<string, Record<string, unknown>>();
  /** Every accepted message, duplicates included. */
  received = 0;
  duplicateMessageIds = 0;
  /** Accepted requests whose write key is not a configured one (Segment answers 200 anyway). */
  unknownWriteKeys = 0;
  /** Stored messages per type. */
  readonly messagesPerType = new Map<string, number>();
  readonly #writeKeys: Set<string>;
  #generated = 0;

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

    let accepted: Record<string, unknown>[];
    if (type === 'batch') {
      const batch = body.batch;
      if (!Array.isArray(batch)) return fail('batch: must be an array of messages');
      if (batch.length === 0) return fail('batch: is empty');
      if (batch.length > MAX_MESSAGES) return fail(`batch: holds ${batch.length} messages, at most ${MAX_MESSAGES}`);
      const shared = checkShared(body);
      if (shared) return fail(shared);
      for (let i = 0; i < batch.length; i++) {
        const m: unknown = batch[i];
        const problem = isObject(m) ? checkMessage(typeof m.type === 'string' ? m.type : '', m, true) : ': must be an object';
        if (problem) return fail(`batch[${i}]${problem.startsWith(':') ? '' : '.'}${problem}`);
      }
      accepted = (batch as Record<string, unknown>[]).map((m) => withBatchDefaults(m, body));
    } else {
      const problem = checkMessage(type, body, false);
      if (problem) return fail(problem.startsWith(':') ? problem.slice(2) : problem);
      const { writeKey: _key, ...message } = body;
      accepted = [{ ...message, type }];
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

/** The first problem of one message, as `<field>: <reason>` (`: <reason>` when about the whole message). */
function checkMessage(type: string, m: Record<string, unknown>, inBatch: boolean): string | undefined {
  if (!inBatch && m.type !== undefined && m.type !== type) return `type: ${String(m.type)} does not match the endpoint /v1/${type}`;
  if (!TYPES.has(type)) return `type: must be one of ${[...TYPES].join(', ')}`;
  if (inBatch) {
    const size = Buffer.byteLength(JSON.stringify(m));
    if (size > MAX_MESSAGE) return `: message is over 32 KB (${size} bytes)`;
  }
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
