import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { UsageError } from '../errors.js';
import { InputChecker, runInputs } from '../engine/inputs.js';
import type { TriggerData } from '../types.js';
import type { Workflow } from '../workflow/types.js';
import { checkSignature, FERRY_SIGNATURE, GITHUB_SIGNATURE, STANDARD_SIGNATURE, type ReplayKey, type SignedDelivery } from './signature.js';

/** A workflow the listener serves, with what a run of it needs from the environment. */
export interface ServedWorkflow {
  workflow: Workflow;
  /** The file as the user named it (relative to the working directory), for messages. */
  file: string;
  /** Values of the workflow's declared secrets. */
  secrets: Record<string, string>;
}

/** One webhook trigger: `POST path` starts a run of `served`. */
export interface Route {
  path: string;
  served: ServedWorkflow;
  /** The rendered `secret:`; undefined only for an unsigned trigger on a loopback listener. */
  secret: string | undefined;
}

/** A delivery that passed every check, ready to be recorded as a run. */
export interface Delivery {
  route: Route;
  /** The signed `webhook-id`, else the sender's delivery id (X-GitHub-Delivery, X-Ferry-Delivery, Idempotency-Key, webhook-id), if any. */
  deliveryId: string | undefined;
  /** What was signed, where no signed id names the delivery: a repeat within its window is a duplicate. */
  replays: ReplayKey[];
  inputs: Record<string, unknown>;
  trigger: TriggerData;
}

/** What the handler needs from the run manager; a fake stands in for it in unit tests. */
export interface RunsService {
  /** Records the run (on disk before it resolves) and schedules it; a known delivery id returns its run. */
  accept(delivery: Delivery): Promise<{ runId: string; duplicate: boolean }>;
  /** The run summary, or undefined when there is no such run of a served workflow. */
  summary(runId: string): Promise<object | undefined>;
}

export interface HandlerRequest {
  method: string;
  /** The request target as sent: path and query. */
  url: string;
  headers: IncomingHttpHeaders;
  /** The raw body, already bounded by the listener. */
  body: Buffer;
}

export interface HandlerResponse {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Why a request was refused, for the listener's log: never a value from the body, never a secret. @default the body's `error` */
  reason?: string;
}

export type Handler = (request: HandlerRequest) => Promise<HandlerResponse>;

export interface HandlerOptions {
  routes: readonly Route[];
  runs: RunsService;
  /** The bearer token `GET /runs/<id>` asks for (FERRY_API_TOKEN); without one that endpoint is off (404). */
  apiToken?: string | undefined;
  /** @default Date.now */
  now?: () => number;
  /** Checks a body against a trigger's `inputs:` (the runtime's, in `ferry serve`). @default a checker of this handler's own */
  inputs?: InputChecker;
}

/** Headers that prove who sent the request: checked here, never handed to the run. */
const CREDENTIAL_HEADERS = new Set([GITHUB_SIGNATURE, FERRY_SIGNATURE, STANDARD_SIGNATURE, 'x-hub-signature', 'authorization', 'proxy-authorization']);
/** Checked in this order; the first one sent names the delivery. */
const DELIVERY_HEADERS = ['x-github-delivery', 'x-ferry-delivery', 'idempotency-key', 'webhook-id'];
/**
 * How deep a JSON body may nest. Webhook payloads nest a few levels; every later step (inputs
 * check, journal, templates) walks values recursively, and a 1 MiB body of `[` would overflow
 * the stack there after the run was already on its way to disk.
 */
export const MAX_BODY_DEPTH = 128;
const RUN_PATH = /^\/runs\/([^/]+)$/;

// One body for every signature failure: a caller must not learn which part was wrong.
const UNAUTHORIZED: HandlerResponse = { status: 401, body: { error: 'invalid or missing signature' } };
const NO_TOKEN: HandlerResponse = { status: 401, body: { error: 'invalid or missing API token: send Authorization: Bearer <FERRY_API_TOKEN>' }, headers: { 'www-authenticate': 'Bearer' } };
const RUNS_OFF: HandlerResponse = { status: 404, body: { error: 'GET /runs/<id> is off: start ferry serve with FERRY_API_TOKEN set to turn it on' } };

const reply = (status: number, body: unknown, headers?: Record<string, string>): HandlerResponse => (headers ? { status, body, headers } : { status, body });
const notAllowed = (allow: string): HandlerResponse => reply(405, { error: `method not allowed; use ${allow}` }, { allow });

/** The request handler of `ferry serve`: request in, status and JSON body out, no socket in sight. */
export function createHandler(options: HandlerOptions): Handler {
  const routes = new Map(options.routes.map((r) => [r.path, r]));
  const now = options.now ?? Date.now;
  const checker = options.inputs ?? new InputChecker();
  const token = options.apiToken ? tokenDigest(options.apiToken) : undefined;

  return async (request) => {
    const { path, query } = splitTarget(request.url);
    const reading = request.method === 'GET' || request.method === 'HEAD';
    const route = routes.get(path);
    if (route) return request.method === 'POST' ? deliver(route, request, query) : notAllowed('POST');
    if (path === '/healthz') return reading ? reply(200, { ok: true }) : notAllowed('GET');
    const run = RUN_PATH.exec(path);
    if (run) {
      if (!reading) return notAllowed('GET');
      if (!token) return RUNS_OFF;
      if (!bearerMatches(token, request.headers.authorization)) return NO_TOKEN;
      const summary = await options.runs.summary(decodeURIComponentSafe(run[1] as string));
      return summary ? reply(200, summary) : reply(404, { error: 'no such run' });
    }
    return reply(404, { error: 'no webhook at this path' });
  };

  async function deliver(route: Route, request: HandlerRequest, query: Record<string, string>): Promise<HandlerResponse> {
    // The signature covers the raw bytes: nothing is parsed before it holds.
    let signed: SignedDelivery | undefined;
    if (route.secret !== undefined) {
      signed = checkSignature(route.secret, request.body, request.headers, now());
      if (!signed) return UNAUTHORIZED;
    }
    let body: unknown;
    try {
      body = JSON.parse(request.body.toString('utf8'));
    } catch {
      return reply(400, { error: 'body is not JSON' });
    }
    if (nestsDeeper(body, MAX_BODY_DEPTH)) return reply(400, { error: `body nests deeper than ${MAX_BODY_DEPTH} levels` });
    const trigger: TriggerData = { type: 'webhook', body, headers: forwardedHeaders(request.headers), query };
    // The one body -> inputs rule, here for an early 400; the run's session applies it again.
    let inputs: Record<string, unknown>;
    try {
      inputs = runInputs(route.served.workflow, trigger, {}, route.path, checker);
    } catch (error) {
      // The message may quote a value of the body: the sender gets it, the log does not.
      if (error instanceof UsageError) return { ...reply(400, { error: error.message }), reason: 'the body does not match the trigger\'s `inputs:`' };
      throw error;
    }
    // A signed id names the delivery; an unsigned header only helps an honest sender's retries.
    const deliveryId = signed?.id ?? deliveryIdOf(request.headers);
    const { runId, duplicate } = await options.runs.accept({ route, deliveryId, replays: signed?.replays ?? [], inputs, trigger });
    return duplicate ? reply(200, { runId, duplicate: true }) : reply(202, { runId });
  }
}

/** True when `value` has arrays or objects nested more than `limit` deep; walks without recursion. */
export function nestsDeeper(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop() as [unknown, number];
    if (item === null || typeof item !== 'object') continue;
    if (depth >= limit) return true;
    for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push([child, depth + 1]);
  }
  return false;
}

// Both sides hashed first: equal lengths for timingSafeEqual, and the time says nothing about the token's length.
const tokenDigest = (text: string): Buffer => createHash('sha256').update(text).digest();

function bearerMatches(expected: Buffer, header: string | undefined): boolean {
  const match = header === undefined ? null : /^Bearer +(\S+) *$/i.exec(header);
  return match !== null && timingSafeEqual(expected, tokenDigest(match[1] as string));
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Path and query of a request target; an absolute-form target (`http://host/p`) counts by its path. */
export function splitTarget(url: string): { path: string; query: Record<string, string> } {
  let target = url;
  if (!target.startsWith('/')) {
    try {
      const parsed = new URL(target);
      target = parsed.pathname + parsed.search;
    } catch {
      return { path: '', query: {} };
    }
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  // fromEntries defines own properties: a `__proto__` key stays a plain key.
  const query = Object.fromEntries(new URLSearchParams(q < 0 ? '' : target.slice(q + 1)));
  return { path, query };
}

/** Request headers for `trigger.headers`: lower-case names, repeated values joined, credentials left out. */
export function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const entries: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || CREDENTIAL_HEADERS.has(name)) continue;
    entries.push([name, Array.isArray(value) ? value.join(', ') : value]);
  }
  return Object.fromEntries(entries);
}

function deliveryIdOf(headers: IncomingHttpHeaders): string | undefined {
  for (const name of DELIVERY_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string' && value.trim() !== '') return value.trim();
  }
  return undefined;
}
