import { Agent, request, type Dispatcher } from 'undici';
import { ProviderError } from '../errors.js';

/** One keep-alive Agent for every provider call of the process. */
let agent: Agent | undefined;
export function sharedAgent(): Agent {
  agent ??= new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 120_000, connections: 256 });
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
  headers: Record<string, string>;
  text: string;
}

/** Sends one request and reads the whole answer as text. Network failures become ProviderErrors. */
export async function send(provider: string, http: Dispatcher, req: HttpRequest): Promise<HttpAnswer> {
  // One deadline for the whole call (headers and body): a per-call AbortSignal is exact,
  // where undici's own header/body timers are coarse.
  const deadline = AbortSignal.timeout(req.timeoutMs);
  const signal = req.signal ? AbortSignal.any([req.signal, deadline]) : deadline;
  try {
    const res = await request(req.url, { dispatcher: http, method: req.method, headers: req.headers ?? {}, body: req.body ?? null, signal });
    const text = await res.body.text();
    return { status: res.statusCode, headers: flattenHeaders(res.headers), text };
  } catch (error) {
    if (deadline.aborted && !req.signal?.aborted) {
      throw new ProviderError(provider, `${provider} did not answer within ${req.timeoutMs}ms`, { code: 'FERRY_PROVIDER_TIMEOUT', cause: error });
    }
    throw networkError(provider, error);
  }
}

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
  const wait = retryAfterMs ?? parseRetryAfter(answer.headers['retry-after']);
  return new ProviderError(provider, `${provider} answered ${answer.status}${detail ? `: ${detail}` : body ? `: ${body}` : ''}`, {
    status: answer.status,
    body,
    retryAfterMs: wait,
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
