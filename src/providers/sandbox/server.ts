import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Faults, type Fault, type FaultDecision } from './faults.js';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  rawBody: string;
  /** Parsed JSON or form fields (with `identification` parsed), or the raw text. */
  body: unknown;
  status: number;
  /** Date.now() at arrival. */
  at: number;
}

export interface EmulatorOptions {
  /** Added delay before each answer, in ms. @default 0 */
  latencyMs?: number;
  /** Keep request bodies in `requests`; off for large benchmarks. @default true */
  recordBodies?: boolean;
}

/** What a handler answers; `stream` writes the body itself (export). */
export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  stream?: (res: ServerResponse) => Promise<void>;
}

export interface Incoming {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  raw: Buffer;
}

/**
 * The common part of the emulators: a node:http server on 127.0.0.1 that records every
 * request, measures requests in flight, adds latency and applies injected faults.
 */
export abstract class EmulatorBase {
  url = '';
  requests: RecordedRequest[] = [];
  inFlight = 0;
  maxInFlight = 0;
  protected latencyMs: number;
  protected readonly recordBodies: boolean;
  protected readonly faults = new Faults();
  #server: Server | undefined;
  readonly #sockets = new Set<Socket>();

  constructor(options: EmulatorOptions = {}) {
    this.latencyMs = options.latencyMs ?? 0;
    this.recordBodies = options.recordBodies ?? true;
  }

  /** Largest request body accepted before answering 413 without reading the rest. */
  protected abstract readonly maxBody: number;
  /** Parses a body for the record and for the fault matcher (user ids it carries). */
  protected abstract parse(req: Incoming): { body: unknown; users: string[] };
  protected abstract handle(req: Incoming, body: unknown): Answer | Promise<Answer>;
  /** The provider's answer to an injected status or user fault. */
  protected abstract faultAnswer(decision: Exclude<FaultDecision, { kind: 'none' } | { kind: 'reset' }>, body: unknown): Answer;
  protected abstract clearState(): void;

  async start(): Promise<this> {
    const server = createServer({ keepAlive: true }, (req, res) => void this.#onRequest(req, res));
    server.keepAliveTimeout = 60_000;
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.#server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  inject(fault: Fault): void {
    this.faults.inject(fault);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  setLatency(ms: number): void {
    this.latencyMs = ms;
  }

  reset(): void {
    this.requests = [];
    this.maxInFlight = 0;
    this.faults.clear();
    this.clearState();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    let done = false;
    const finish = (): void => {
      if (!done) {
        done = true;
        this.inFlight--;
      }
    };
    res.on('close', finish);
    const url = new URL(req.url ?? '/', 'http://x');
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
    const record: RecordedRequest = { method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams), headers, rawBody: '', body: undefined, status: 0, at };
    this.requests.push(record);
    const raw = await readBody(req, this.maxBody);
    if (raw === 'too-large') {
      record.status = 413;
      return this.#send(res, { status: 413, headers: { 'content-type': 'application/json', connection: 'close' }, body: '{"code":413,"error":"Payload too large"}' });
    }
    const incoming: Incoming = { method: record.method, path: record.path, query: record.query, headers, raw };
    const { body, users } = this.parse(incoming);
    if (this.recordBodies) {
      record.rawBody = raw.toString('utf8');
      record.body = body;
    }
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const decision = this.faults.decide(record.path, users);
    if (decision.kind === 'reset') {
      record.status = -1;
      req.socket.destroy();
      finish();
      return;
    }
    const answer = decision.kind === 'none' ? await this.handle(incoming, body) : this.faultAnswer(decision, body);
    record.status = answer.status;
    await this.#send(res, answer);
  }

  async #send(res: ServerResponse, answer: Answer): Promise<void> {
    if (answer.stream) {
      res.writeHead(answer.status, answer.headers ?? {});
      try {
        await answer.stream(res);
      } catch {
        res.destroy();
      }
      return;
    }
    res.writeHead(answer.status, { 'content-length': String(Buffer.byteLength(answer.body ?? '')), ...answer.headers });
    res.end(answer.body ?? '');
  }
}

async function readBody(req: IncomingMessage, max: number): Promise<Buffer | 'too-large'> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > max) {
    req.resume();
    return 'too-large';
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) {
      req.resume();
      return 'too-large';
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export const json = (status: number, body: unknown, headers: Record<string, string> = {}): Answer => ({
  status,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

export function retryAfterHeader(value: number | string | undefined): Record<string, string> {
  return value === undefined ? {} : { 'retry-after': String(value) };
}
