import type { FaultDecision } from './faults.js';
import { EmulatorBase, json, retryAfterHeader, type Answer, type EmulatorOptions, type Incoming } from './server.js';

export interface SegmentEmulatorOptions extends EmulatorOptions {
  /** Write keys considered valid. @default ['sandbox-segment-key'] */
  writeKeys?: string[];
}

const TYPES = new Set(['identify', 'track', 'page', 'screen', 'group', 'alias']);
const MAX_MESSAGE = 32 * 1024;
const MAX_BATCH = 500 * 1024;
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Segment's HTTP Tracking API (PROVIDERS.md), strict where Segment is lenient only in the answer. */
export class SegmentEmulator extends EmulatorBase {
  protected readonly maxBody = 1024 * 1024;
  /** Accepted messages, once per messageId. */
  messages = new Map<string, Record<string, unknown>>();
  /** Every accepted message, duplicates included. */
  received = 0;
  duplicateMessageIds = 0;
  /** Requests accepted with a write key that is not one of ours (Segment answers 200 anyway). */
  unknownWriteKeys = 0;
  readonly #writeKeys: Set<string>;
  #generated = 0;

  constructor(options: SegmentEmulatorOptions = {}) {
    super(options);
    this.#writeKeys = new Set(options.writeKeys ?? ['sandbox-segment-key']);
  }

  protected clearState(): void {
    this.messages.clear();
    this.received = 0;
    this.duplicateMessageIds = 0;
    this.unknownWriteKeys = 0;
  }

  protected parse(req: Incoming): { body: unknown; users: string[] } {
    try {
      const body = JSON.parse(req.raw.toString('utf8')) as Record<string, unknown>;
      const list = Array.isArray(body.batch) ? body.batch : [body];
      return { body, users: list.map((m) => (isObject(m) ? String(m.userId ?? m.anonymousId ?? '') : '')).filter(Boolean) };
    } catch {
      return { body: req.raw.toString('utf8'), users: [] };
    }
  }

  protected faultAnswer(decision: Exclude<FaultDecision, { kind: 'none' } | { kind: 'reset' }>): Answer {
    if (decision.kind === 'reject-user') return json(decision.status, { success: false, error: `rejected message for user ${decision.userId}` });
    if (decision.kind === 'throttle-user') return json(429, { success: false, error: 'Too Many Requests' }, { 'retry-after': '1', 'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + 1) });
    const headers = decision.status === 429 ? { ...retryAfterHeader(decision.retryAfter ?? 1), 'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + Number(decision.retryAfter ?? 1)) } : retryAfterHeader(decision.retryAfter);
    return json(decision.status, decision.body ?? { success: false, error: decision.status === 429 ? 'Too Many Requests' : 'Service Unavailable' }, headers);
  }

  protected handle(req: Incoming, body: unknown): Answer {
    const type = /^\/v1\/([a-z]+)$/.exec(req.path)?.[1];
    if (req.method !== 'POST' || !type || (type !== 'batch' && !TYPES.has(type))) return json(404, { success: false, error: 'Not Found' });
    if (!isObject(body)) return json(400, { success: false, error: 'Invalid JSON' });
    const key = writeKeyOf(req.headers.authorization, body.writeKey);
    // Undocumented: a call with no write key at all. The safe side is to refuse it.
    if (key === undefined) return json(400, { success: false, error: 'missing write key: send HTTP Basic auth or writeKey' });
    if (type === 'batch') {
      if (req.raw.length > MAX_BATCH) return json(400, { success: false, error: 'batch is over 500 KB' });
      if (!Array.isArray(body.batch)) return json(400, { success: false, error: 'batch must be an array' });
      if (body.batch.length > 2500) return json(400, { success: false, error: 'batch holds over 2500 messages' });
      for (const [i, m] of body.batch.entries()) {
        const problem = isObject(m) ? checkMessage(String(m.type), m) : 'must be an object';
        if (problem) return json(400, { success: false, error: `batch[${i}]: ${problem}` });
      }
      this.#accept(key, body.batch as Record<string, unknown>[]);
    } else {
      if (req.raw.length > MAX_MESSAGE) return json(400, { success: false, error: 'message is over 32 KB' });
      const problem = checkMessage(type, body);
      if (problem) return json(400, { success: false, error: problem });
      this.#accept(key, [{ ...body, type }]);
    }
    return json(200, { success: true });
  }

  #accept(key: string, messages: Record<string, unknown>[]): void {
    if (!this.#writeKeys.has(key)) this.unknownWriteKeys++;
    for (const m of messages) {
      this.received++;
      const id = typeof m.messageId === 'string' ? m.messageId : `generated-${this.#generated++}`;
      if (this.messages.has(id)) this.duplicateMessageIds++;
      else this.messages.set(id, m);
    }
  }
}

function writeKeyOf(authorization: string | undefined, bodyKey: unknown): string | undefined {
  const basic = /^Basic (.+)$/i.exec(authorization ?? '')?.[1];
  if (basic) {
    const user = Buffer.from(basic, 'base64').toString('utf8').split(':')[0];
    if (user) return user;
  }
  return typeof bodyKey === 'string' && bodyKey !== '' ? bodyKey : undefined;
}

function checkMessage(type: string, m: Record<string, unknown>): string | undefined {
  if (!TYPES.has(type)) return `unknown type ${type}`;
  if (Buffer.byteLength(JSON.stringify(m)) > MAX_MESSAGE) return 'message is over 32 KB';
  const id = (v: unknown): boolean => typeof v === 'string' && v !== '';
  if (!id(m.userId) && !id(m.anonymousId)) return 'userId or anonymousId is required';
  if (type === 'track' && !id(m.event)) return 'track needs event';
  if (type === 'identify' && m.traits !== undefined && !isObject(m.traits)) return 'traits must be an object';
  if (type === 'group' && !id(m.groupId)) return 'group needs groupId';
  if (type === 'alias' && !id(m.previousId)) return 'alias needs previousId';
  if (m.properties !== undefined && !isObject(m.properties)) return 'properties must be an object';
  if (m.messageId !== undefined && (typeof m.messageId !== 'string' || m.messageId.length > 100)) return 'messageId must be a string of at most 100 characters';
  if (m.timestamp !== undefined && (typeof m.timestamp !== 'string' || Number.isNaN(Date.parse(m.timestamp)))) return 'timestamp must be ISO-8601';
  return undefined;
}
