import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Faults, type AnsweredFault, type Fault } from './faults.js';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  /** Lower-case names, as node:http gives them. */
  headers: Record<string, string>;
  rawBody: string;
  /** Parsed JSON, or the form fields with `identification` parsed; the raw text when it does not parse. */
  body: unknown;
  /** The answer's status; 0 while unanswered, and for a socket destroyed by a `reset` fault. */
  status: number;
  /** Date.now() at arrival. */
  at: number;
  /** Segment only: the write key was one of the configured ones (Segment answers 200 either way). */
  writeKeyValid?: boolean;
}

export interface EmulatorOptions {
  /** Added delay before each answer, in ms. @default 0 */
  latencyMs?: number;
  /** Keep query, headers and bodies in `requests`; when false only method, path, status and at. @default true */
  recordBodies?: boolean;
}

/** What a handler answers; `stream` writes (and ends) the body itself, for the export. */
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
  /** The body was over `bodyLimit(path)`: it was drained, not kept, and `raw` is empty. */
  oversize: boolean;
  /** Body bytes received, oversize or not. */
  size: number;
  record: RecordedRequest;
}

export interface Parsed {
  body: unknown;
  /** The user and device ids the request carries, for the user faults. */
  users: ReadonlySet<string>;
}

const EMPTY: Record<string, string> = Object.freeze({}) as Record<string, string>;

/**
 * The common part of both emulators: a node:http server on 127.0.0.1 that records every
 * request, measures the requests in flight, adds latency and applies injected faults.
 */
export abstract class EmulatorBase {
  readonly requests: RecordedRequest[] = [];
  inFlight = 0;
  /** Told of each request once it is answered (what `ferry serve --sandbox --verbose` prints). */
  onAnswered: ((request: RecordedRequest) => void) | undefined;
  protected latencyMs: number;
  protected readonly recordBodies: boolean;
  protected readonly faults = new Faults();
  #maxInFlight = 0;
  #url = '';
  #server: Server | undefined;
  /** Requests per path, kept as they arrive so that a summary never walks `requests`. */
  readonly #perPath = new Map<string, number>();

  constructor(options: EmulatorOptions = {}) {
    this.latencyMs = options.latencyMs ?? 0;
    this.recordBodies = options.recordBodies ?? true;
  }

  /** Bytes of body kept for a path; a larger body is drained and handed over as `oversize`. */
  protected abstract bodyLimit(path: string): number;
  protected abstract parse(req: Incoming): Parsed;
  protected abstract handle(req: Incoming, parsed: Parsed): Answer | Promise<Answer>;
  /** The provider's answer to an injected status or user fault. */
  protected abstract faultAnswer(decision: AnsweredFault, req: Incoming, parsed: Parsed): Answer;
  protected abstract clearState(): void;

  get url(): string {
    return this.#url;
  }

  /** Highest number of requests handled at once, from arrival until the answer is written (latency included). */
  get maxInFlight(): number {
    return this.#maxInFlight;
  }

  /** Requests received per path since the last reset. */
  get requestsPerPath(): ReadonlyMap<string, number> {
    return this.#perPath;
  }

  async start(): Promise<this> {
    const server = createServer({ keepAlive: true }, (req, res) => void this.#onRequest(req, res));
    // Long enough that a client reusing an idle socket never races the server closing it.
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    this.#url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
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
    this.requests.length = 0;
    this.#perPath.clear();
    this.#maxInFlight = this.inFlight;
    this.faults.clear();
    this.clearState();
  }

  async close(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    this.inFlight++;
    if (this.inFlight > this.#maxInFlight) this.#maxInFlight = this.inFlight;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      this.inFlight--;
    };
    res.once('finish', finish);
    res.once('close', finish);

    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const method = req.method ?? 'GET';
    const record: RecordedRequest = this.recordBodies
      ? { method, path, query: q < 0 ? {} : Object.fromEntries(new URLSearchParams(target.slice(q + 1))), headers: flatHeaders(req), rawBody: '', body: undefined, status: 0, at }
      : { method, path, query: EMPTY, headers: EMPTY, rawBody: '', body: undefined, status: 0, at };
    this.requests.push(record);
    this.#perPath.set(path, (this.#perPath.get(path) ?? 0) + 1);

    try {
      const query = this.recordBodies ? record.query : q < 0 ? {} : Object.fromEntries(new URLSearchParams(target.slice(q + 1)));
      const headers = this.recordBodies ? record.headers : flatHeaders(req);
      const { raw, size, oversize } = await readBody(req, this.bodyLimit(path));
      const incoming: Incoming = { method, path, query, headers, raw, oversize, size, record };
      const parsed = this.parse(incoming);
      if (this.recordBodies) {
        record.rawBody = raw.toString('utf8');
        record.body = parsed.body;
      }
      if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
      const decision = this.faults.decide(path, parsed.users);
      if (decision.kind === 'reset') {
        req.socket.destroy();
        finish();
        return;
      }
      const answer = decision.kind === 'none' ? await this.handle(incoming, parsed) : this.faultAnswer(decision, incoming, parsed);
      record.status = answer.status;
      await send(res, answer);
      this.onAnswered?.(record);
    } catch (error) {
      // The client went away mid-body, or a handler broke: never leave the request hanging.
      if (!res.headersSent && !res.destroyed) {
        record.status = 500;
        await send(res, json(500, { code: 500, error: `sandbox emulator error: ${(error as Error).message}` }));
      } else {
        res.destroy();
      }
      finish();
    }
  }
}

function flatHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** Keeps at most `limit` bytes; the rest is read and dropped so that the connection stays usable. */
async function readBody(req: IncomingMessage, limit: number): Promise<{ raw: Buffer; size: number; oversize: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let oversize = Number(req.headers['content-length'] ?? 0) > limit;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) oversize = true;
    if (!oversize) chunks.push(chunk);
  }
  if (oversize) return { raw: Buffer.alloc(0), size, oversize };
  return { raw: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size), size, oversize };
}

async function send(res: ServerResponse, answer: Answer): Promise<void> {
  if (res.destroyed) return;
  if (answer.stream) {
    res.writeHead(answer.status, answer.headers ?? {});
    try {
      await answer.stream(res);
    } catch {
      res.destroy();
    }
    return;
  }
  const body = answer.body ?? '';
  res.writeHead(answer.status, { ...answer.headers, 'content-length': String(Buffer.byteLength(body)) });
  res.end(body);
}

export const json = (status: number, body: unknown, headers: Record<string, string> = {}): Answer => ({
  status,
  headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  body: JSON.stringify(body),
});

export const text = (status: number, body: string, headers: Record<string, string> = {}): Answer => ({
  status,
  headers: { 'content-type': 'text/plain; charset=utf-8', ...headers },
  body,
});

/** A fault's `body` override: a string goes out as text, anything else as JSON. */
export const custom = (status: number, body: unknown, headers: Record<string, string> = {}): Answer =>
  typeof body === 'string' ? text(status, body, headers) : json(status, body, headers);

export function retryAfterHeader(value: number | string | undefined): Record<string, string> {
  return value === undefined ? {} : { 'retry-after': String(value) };
}

export const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Reason phrases for default fault bodies. */
export const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  413: 'Payload too large',
  414: 'URI Too Long',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};
