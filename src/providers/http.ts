import { createRequire } from 'node:module';
import type { Agent, Dispatcher } from 'undici';
import type * as UndiciModule from 'undici';
import { ProviderError } from '../errors.js';

// undici is loaded on the first call, not at start-up: `ferry validate` never needs it,
// and loading it is a large share of a short command's time.
type Undici = typeof UndiciModule;
let undiciModule: Undici | undefined;
export function undici(): Undici {
  undiciModule ??= createRequire(import.meta.url)('undici') as Undici;
  return undiciModule;
}

/** One keep-alive Agent for every provider call of the process. */
let agent: Agent | undefined;
export function sharedAgent(): Agent {
  agent ??= new (undici().Agent)({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 120_000, connections: 256 });
  return agent;
}

export async function closeSharedAgent(): Promise<void> {
  const a = agent;
  agent = undefined;
  await a?.close();
}

export interface HttpRequest {
  method: Dispatcher.HttpMethod;
  url: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface HttpAnswer {
  status: number;
  /** As undici gives them: lower-case names, repeated headers as arrays. */
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One header of an answer as text (repeated headers joined). */
export function header(answer: HttpAnswer, name: string): string | undefined {
  const value = answer.headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

/**
 * Sends one request and reads the whole answer as text. Network failures become ProviderErrors.
 *
 * It speaks undici's dispatcher protocol (the one undici's own `request()` uses) and keeps
 * the body's chunks as they come: no stream object and no URL parsing per call, which is
 * most of what a call costs on our side once the provider answers fast.
 */
export async function send(provider: string, http: Dispatcher, req: HttpRequest): Promise<HttpAnswer> {
  // undici's own header/body timers cost nothing per call but tick about once a second:
  // fine for the usual timeouts of seconds. A short timeout gets an exact timer of its own.
  const outer = req.signal === NEVER_ABORTED ? undefined : req.signal;
  const exact = req.timeoutMs < EXACT_TIMEOUT_BELOW_MS || outer !== undefined;
  const call = new BufferedCall();
  let timedOut = false;
  const timer = exact
    ? setTimeout(() => {
        timedOut = true;
        call.abort(new DOMException('timed out', 'AbortError'));
      }, req.timeoutMs)
    : undefined;
  const onAbort = (): void => call.abort(outer?.reason instanceof Error ? outer.reason : new DOMException('aborted', 'AbortError'));
  if (outer?.aborted) onAbort();
  else outer?.addEventListener('abort', onAbort, { once: true });
  const { origin, path } = target(req.url);
  try {
    http.dispatch(
      {
        origin,
        path,
        method: req.method,
        headers: req.headers ?? {},
        body: req.body ?? null,
        ...(exact ? {} : { headersTimeout: req.timeoutMs, bodyTimeout: req.timeoutMs }),
      },
      call,
    );
    return await call.answer;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (timedOut || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      throw new ProviderError(provider, `${provider} did not answer within ${req.timeoutMs}ms`, { code: 'FERRY_PROVIDER_TIMEOUT', cause: error });
    }
    throw networkError(provider, error);
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener('abort', onAbort);
  }
}

/** One request's dispatch handler: collects status, headers and body, settles `answer`. */
class BufferedCall implements Dispatcher.DispatchHandler {
  readonly answer: Promise<HttpAnswer>;
  #resolve!: (answer: HttpAnswer) => void;
  #reject!: (error: unknown) => void;
  #abort: ((reason: Error) => void) | undefined;
  #abortReason: Error | undefined;
  #status = 0;
  #headers: HttpAnswer['headers'] = {};
  #chunks: Buffer[] = [];

  constructor() {
    this.answer = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  abort(reason: Error): void {
    this.#abortReason ??= reason;
    this.#abort?.(reason);
  }

  onConnect(abort: (reason?: Error) => void): void {
    this.#abort = abort;
    if (this.#abortReason !== undefined) abort(this.#abortReason);
  }

  onHeaders(status: number, rawHeaders: Buffer[] | string[] | null): boolean {
    this.#status = status;
    this.#headers = rawHeaders ? (undici().util.parseHeaders(rawHeaders as Buffer[]) as HttpAnswer['headers']) : {};
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.#chunks.push(chunk);
    return true;
  }

  onComplete(): void {
    const chunks = this.#chunks;
    const text = chunks.length === 0 ? '' : chunks.length === 1 ? (chunks[0] as Buffer).toString('utf8') : Buffer.concat(chunks).toString('utf8');
    this.#resolve({ status: this.#status, headers: this.#headers, text });
  }

  onError(error: Error): void {
    this.#reject(error);
  }
}

/** `origin` and `path` of a URL, remembered: a workflow calls the same few URLs many times. */
function target(url: string): { origin: string; path: string } {
  let found = targets.get(url);
  if (!found) {
    const parsed = new URL(url);
    found = { origin: parsed.origin, path: `${parsed.pathname}${parsed.search}` };
    if (targets.size >= MAX_TARGETS) targets.clear();
    targets.set(url, found);
  }
  return found;
}
const targets = new Map<string, { origin: string; path: string }>();
const MAX_TARGETS = 1000;

/** Below this, a call's timeout gets its own exact timer instead of undici's 1-second tick. */
const EXACT_TIMEOUT_BELOW_MS = 5_000;

/** A signal that never aborts: calls that carry it skip the abort wiring. */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;

export function flattenHeaders(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}

/** `Retry-After` as seconds or an HTTP date, in ms from now; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

const MAX_BODY_IN_ERROR = 2000;

/** A non-success answer as a ProviderError that carries status, body and the wait asked for. */
export function statusError(provider: string, answer: HttpAnswer, detail?: string, retryAfterMs?: number): ProviderError {
  const body = answer.text.length > MAX_BODY_IN_ERROR ? `${answer.text.slice(0, MAX_BODY_IN_ERROR)}…` : answer.text;
  const fromHeader = retryAfterMs === undefined ? header(answer, 'retry-after') : undefined;
  const wait = retryAfterMs ?? parseRetryAfter(fromHeader);
  return new ProviderError(provider, `${provider} answered ${answer.status}${detail ? `: ${detail}` : body ? `: ${body}` : ''}`, {
    status: answer.status,
    body,
    retryAfterMs: wait,
    retryAfterHeader: wait === undefined ? undefined : fromHeader,
  });
}

const NETWORK_CODES: Record<string, string> = {
  UND_ERR_HEADERS_TIMEOUT: 'FERRY_PROVIDER_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'FERRY_PROVIDER_TIMEOUT',
  UND_ERR_CONNECT_TIMEOUT: 'FERRY_PROVIDER_TIMEOUT',
};

export function networkError(provider: string, error: unknown): ProviderError {
  if (error instanceof ProviderError) return error;
  const err = error as { code?: string; message?: string; name?: string; cause?: { code?: string } };
  if (err.name === 'AbortError') {
    return new ProviderError(provider, `${provider} call aborted`, { code: 'FERRY_ABORTED', cause: error });
  }
  const code = err.code ?? err.cause?.code ?? 'UNKNOWN';
  return new ProviderError(provider, `${provider} could not be reached (${code}): ${err.message ?? String(error)}`, {
    code: NETWORK_CODES[code] ?? 'FERRY_PROVIDER_NETWORK',
    cause: error,
  });
}
