import type { Dispatcher } from 'undici';
import { ProviderError } from '../errors.js';
import { undici } from '../providers/http.js';
import { Redactor } from '../redact.js';
import type { CallRequest } from './secrets.js';

/** One queued call: one HTTP request, its secrets replaced by markers (secrets.ts). */
export interface CallJob {
  provider: string;
  origin: string;
  path: string;
  method: string;
  headers: Record<string, string>;
  basic?: string[];
  /** A Buffer body travels as base64. */
  body: null | { text: string } | { base64: string };
  headersTimeout?: number;
  bodyTimeout?: number;
  /** Names of the secrets the sender fills in from its environment. */
  secrets: string[];
  /** The list the answer is pushed to: the queuing process's replies. */
  reply?: string;
}

/** What a call job returns: the answer, or the network error with undici's code. */
export type CallResult =
  | { status: number; headers: Record<string, string | string[]>; body: string }
  | { error: { code: string; message: string; name: string } };

/**
 * The request of a `dispatch()` as a CallRequest, or undefined when it has a form a queued
 * call cannot carry (a stream or FormData body, a query object, repeated headers, an upgrade):
 * such a request is sent from this process.
 */
export function callRequest(opts: Dispatcher.DispatchOptions): CallRequest | undefined {
  if (opts.origin === undefined || opts.query != null || (opts.upgrade != null && opts.upgrade !== false)) return undefined;
  const { body } = opts;
  let payload: string | Buffer | null;
  if (body === undefined || body === null) payload = null;
  else if (typeof body === 'string' || Buffer.isBuffer(body)) payload = body;
  else if (body instanceof Uint8Array) payload = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  else return undefined;
  const headers: Record<string, string> = {};
  const raw = opts.headers;
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = String(raw[i]);
      if (name in headers) return undefined;
      headers[name] = String(raw[i + 1]);
    }
  } else if (raw != null) {
    const entries = Symbol.iterator in raw ? [...(raw as Iterable<[string, string | string[] | undefined]>)] : Object.entries(raw);
    for (const [name, value] of entries) {
      if (value === undefined) continue;
      if (typeof value !== 'string' || name in headers) return undefined;
      headers[name] = value;
    }
  }
  return { origin: String(opts.origin).replace(/\/$/, ''), path: opts.path, method: opts.method, headers, body: payload };
}

/** The job data of a stripped request. */
export function toJob(provider: string, request: CallRequest, names: string[], opts: Dispatcher.DispatchOptions): CallJob {
  const { body } = request;
  return {
    provider,
    origin: request.origin,
    path: request.path,
    method: request.method,
    headers: request.headers,
    ...(request.basic ? { basic: request.basic } : {}),
    body: body === null ? null : typeof body === 'string' ? { text: body } : { base64: body.toString('base64') },
    ...(typeof opts.headersTimeout === 'number' ? { headersTimeout: opts.headersTimeout } : {}),
    ...(typeof opts.bodyTimeout === 'number' ? { bodyTimeout: opts.bodyTimeout } : {}),
    secrets: names,
  };
}

/** The request a job carries, still with its markers. */
export function fromJob(job: CallJob): CallRequest {
  const body = job.body === null ? null : 'text' in job.body ? job.body.text : Buffer.from(job.body.base64, 'base64');
  return { origin: job.origin, path: job.path, method: job.method, headers: job.headers, body, ...(job.basic ? { basic: job.basic } : {}) };
}

/**
 * Sends `request` with the process's own dispatcher and reads the whole answer. A network
 * failure is a result too (its code as undici or Node gave it), not a thrown error: the run
 * side rebuilds it so that engine/retry.ts judges it as it judges a direct call.
 */
export function exchange(local: Dispatcher, request: CallRequest, timeouts: { headersTimeout?: number; bodyTimeout?: number }): Promise<CallResult> {
  return new Promise((resolve) => {
    let status = 0;
    let headers: Record<string, string | string[]> = {};
    const chunks: Buffer[] = [];
    const fail = (error: Error): void => {
      const err = error as Error & { code?: string; cause?: { code?: string } };
      resolve({ error: { code: err.code ?? err.cause?.code ?? 'UNKNOWN', message: err.message, name: err.name } });
    };
    const handler: Dispatcher.DispatchHandler = {
      // undici tells the two handler APIs apart by this method.
      onRequestStart: () => undefined,
      onResponseStart: (_c, statusCode, responseHeaders) => {
        status = statusCode;
        headers = responseHeaders as Record<string, string | string[]>;
      },
      onResponseData: (_c, chunk) => {
        chunks.push(chunk);
      },
      onResponseEnd: () => resolve({ status, headers, body: Buffer.concat(chunks).toString('utf8') }),
      onResponseError: (_c, error) => fail(error),
    };
    try {
      local.dispatch(
        {
          origin: request.origin,
          path: request.path,
          method: request.method as Dispatcher.HttpMethod,
          headers: request.headers,
          body: request.body,
          ...(timeouts.headersTimeout === undefined ? {} : { headersTimeout: timeouts.headersTimeout }),
          ...(timeouts.bodyTimeout === undefined ? {} : { bodyTimeout: timeouts.bodyTimeout }),
        },
        handler,
      );
    } catch (error) {
      fail(error instanceof Error ? error : new Error(String(error)));
    }
  });
}

/** What a queued call's caller is told: its answer, or an error; once. */
export interface CallWaiter {
  answer(result: CallResult): void;
  fail(error: Error): void;
}

/**
 * The controller a queued call gives its handler: `abort` settles the call at once with the
 * reason (the run's timeout or stop) and `onAbort` takes the job back if it still waits.
 */
class QueuedController implements Dispatcher.DispatchController {
  #reason: Error | null = null;
  constructor(private readonly onAbort: (reason: Error) => void) {}
  get aborted(): boolean {
    return this.#reason !== null;
  }
  get paused(): boolean {
    return false;
  }
  get reason(): Error | null {
    return this.#reason;
  }
  abort(reason: Error): void {
    if (this.#reason !== null) return;
    this.#reason = reason;
    this.onAbort(reason);
  }
  // The whole answer is in memory already: there is nothing to hold back.
  pause(): void {}
  resume(): void {}
}

/**
 * Starts `handler` (undici 7's controller API, or the older onConnect/onHeaders one) on a
 * queued call; the returned waiter feeds it the answer once. `cancel` runs when the handler
 * aborts first.
 */
export function startHandler(raw: Dispatcher.DispatchHandler, cancel: () => void): CallWaiter {
  const handler = raw.onRequestStart || raw.onResponseStart ? raw : legacy(raw);
  let settled = false;
  const controller = new QueuedController((reason) => {
    if (settled) return;
    settled = true;
    cancel();
    handler.onResponseError?.(controller, reason);
  });
  handler.onRequestStart?.(controller, {});
  const fail = (error: Error): void => {
    if (settled) return;
    settled = true;
    handler.onResponseError?.(controller, error);
  };
  return {
    answer(result) {
      if (settled) return;
      if ('error' in result) return fail(Object.assign(new Error(result.error.message), { code: result.error.code, name: result.error.name }));
      settled = true;
      handler.onResponseStart?.(controller, result.status, result.headers, '');
      if (result.body !== '' && !controller.aborted) handler.onResponseData?.(controller, Buffer.from(result.body, 'utf8'));
      if (!controller.aborted) handler.onResponseEnd?.(controller, {});
    },
    fail,
  };
}

/** undici's older handler API on the controller API (what undici's own `request()` still uses). */
function legacy(old: Dispatcher.DispatchHandler): Dispatcher.DispatchHandler {
  return {
    onRequestStart: (controller) => old.onConnect?.((reason) => controller.abort(reason ?? new Error('aborted'))),
    onResponseStart: (_c, status, headers, message) => {
      const raw: Buffer[] = [];
      for (const [name, value] of Object.entries(headers)) for (const v of Array.isArray(value) ? value : [value]) if (v !== undefined) raw.push(Buffer.from(name, 'latin1'), Buffer.from(v, 'latin1'));
      old.onHeaders?.(status, raw, () => undefined, message ?? '');
    },
    onResponseData: (_c, chunk) => void old.onData?.(chunk),
    onResponseEnd: () => old.onComplete?.([]),
    onResponseError: (_c, error) => old.onError?.(error),
  };
}

/**
 * A Dispatcher (undici's base class, so `request()` and friends work on it too) whose
 * `dispatch` is `send`. Closing it closes nothing: the pool owns the queues.
 */
export function queuedDispatcher(send: (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => boolean): Dispatcher {
  const Base = undici().Dispatcher;
  class QueuedDispatcher extends Base {
    override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      return send(opts, handler);
    }
    override close(callback: () => void): void;
    override close(): Promise<void>;
    override close(callback?: () => void): Promise<void> | void {
      if (callback) return void queueMicrotask(callback);
      return Promise.resolve();
    }
    override destroy(err: Error | null, callback: () => void): void;
    override destroy(callback: () => void): void;
    override destroy(err: Error | null): Promise<void>;
    override destroy(): Promise<void>;
    override destroy(a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
      const callback = typeof a === 'function' ? a : b;
      if (callback) return void queueMicrotask(callback);
      return Promise.resolve();
    }
  }
  return new QueuedDispatcher();
}

/** The run side's error for a failed call job. */
export function jobError(provider: string, reason: string | undefined): Error {
  const match = /^(FERRY_[A-Z_]+) ([\s\S]*)$/.exec(reason ?? '');
  if (match?.[1] === 'FERRY_BACKEND_SECRET_MISSING') return new ProviderError(provider, match[2] as string, { code: match[1] });
  // A worker died twice on it, or something else broke: a network-like failure, retried as one.
  return Object.assign(new Error(`the queued call failed in the worker: ${reason ?? 'no reason given'}`), { code: 'FERRY_BACKEND_CALL_LOST' });
}

/** A result without any of the secrets the sender filled in (a provider may echo a key back). */
export function redactResult(result: CallResult, values: string[]): CallResult {
  const redactor = new Redactor();
  for (const value of values) redactor.add(value);
  if (redactor.size === 0) return result;
  if ('error' in result) return { error: { ...result.error, message: redactor.redact(result.error.message) } };
  let body = redactor.redact(result.body);
  if (body !== result.body) {
    // A JSON body stays JSON: a secret that is a whole value becomes the string `[redacted]`.
    try {
      body = JSON.stringify(redactor.redactValue(JSON.parse(result.body) as unknown));
    } catch {
      // Not JSON: the text with its secrets replaced.
    }
  }
  return { status: result.status, headers: redactor.redactValue(result.headers), body };
}

/** A Basic header's value and its base64 part, as sent. */
export function basicForms(headers: Record<string, string>, name: string): string[] {
  const value = Object.entries(headers).find(([key]) => key.toLowerCase() === name)?.[1];
  return value === undefined ? [] : [value, value.replace(/^Basic /, '')];
}
