import type { IncomingHttpHeaders } from 'node:http';
import { UsageError } from '../errors.js';
import { checkInputs } from '../engine/inputs.js';
import type { TriggerData } from '../engine/types.js';
import type { Workflow } from '../workflow/types.js';
import { FERRY_SIGNATURE, GITHUB_SIGNATURE, verifySignature } from './signature.js';

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
  /** The trigger declares `inputs:`: the JSON body is checked against them and becomes `inputs`. */
  checksInputs: boolean;
}

/** A delivery that passed every check, ready to be recorded as a run. */
export interface Delivery {
  route: Route;
  /** The sender's delivery id (X-GitHub-Delivery, X-Ferry-Delivery or Idempotency-Key), if any. */
  deliveryId: string | undefined;
  inputs: Record<string, unknown>;
  trigger: TriggerData;
}

/** What the handler needs from the run manager; a fake stands in for it in unit tests. */
export interface RunsService {
  /** Records the run (on disk before it resolves) and schedules it; a known delivery id returns its run. */
  accept(delivery: Delivery): Promise<{ runId: string; duplicate: boolean }>;
  /** The run summary, or undefined when there is no such run. */
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
}

export type Handler = (request: HandlerRequest) => Promise<HandlerResponse>;

export interface HandlerOptions {
  routes: readonly Route[];
  runs: RunsService;
  /** @default Date.now */
  now?: () => number;
}

/** Headers that prove who sent the request: checked here, never handed to the run. */
const CREDENTIAL_HEADERS = new Set([GITHUB_SIGNATURE, FERRY_SIGNATURE, 'x-hub-signature', 'authorization', 'proxy-authorization']);
/** Checked in this order; the first one sent names the delivery. */
const DELIVERY_HEADERS = ['x-github-delivery', 'x-ferry-delivery', 'idempotency-key'];
const RUN_PATH = /^\/runs\/([^/]+)$/;

// One body for every signature failure: a caller must not learn which part was wrong.
const UNAUTHORIZED: HandlerResponse = { status: 401, body: { error: 'invalid or missing signature' } };

const reply = (status: number, body: unknown, headers?: Record<string, string>): HandlerResponse => (headers ? { status, body, headers } : { status, body });
const notAllowed = (allow: string): HandlerResponse => reply(405, { error: `method not allowed; use ${allow}` }, { allow });

/** The request handler of `ferry serve`: request in, status and JSON body out, no socket in sight. */
export function createHandler(options: HandlerOptions): Handler {
  const routes = new Map(options.routes.map((r) => [r.path, r]));
  const now = options.now ?? Date.now;

  return async (request) => {
    const { path, query } = splitTarget(request.url);
    const reading = request.method === 'GET' || request.method === 'HEAD';
    const route = routes.get(path);
    if (route) return request.method === 'POST' ? deliver(route, request, query) : notAllowed('POST');
    if (path === '/healthz') return reading ? reply(200, { ok: true }) : notAllowed('GET');
    const run = RUN_PATH.exec(path);
    if (run) {
      if (!reading) return notAllowed('GET');
      const summary = await options.runs.summary(decodeURIComponentSafe(run[1] as string));
      return summary ? reply(200, summary) : reply(404, { error: 'no such run' });
    }
    return reply(404, { error: 'no webhook at this path' });
  };

  async function deliver(route: Route, request: HandlerRequest, query: Record<string, string>): Promise<HandlerResponse> {
    // The signature covers the raw bytes: nothing is parsed before it holds.
    if (route.secret !== undefined && !verifySignature(route.secret, request.body, request.headers, now())) return UNAUTHORIZED;
    let body: unknown;
    try {
      body = JSON.parse(request.body.toString('utf8'));
    } catch {
      return reply(400, { error: 'body is not JSON' });
    }
    let inputs: Record<string, unknown> = {};
    if (route.checksInputs) {
      const object = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
      try {
        inputs = checkInputs(route.served.workflow, 'webhook', object);
      } catch (error) {
        if (error instanceof UsageError) return reply(400, { error: error.message });
        throw error;
      }
    }
    const trigger: TriggerData = { type: 'webhook', body, headers: forwardedHeaders(request.headers), query };
    const { runId, duplicate } = await options.runs.accept({ route, deliveryId: deliveryIdOf(request.headers), inputs, trigger });
    return duplicate ? reply(200, { runId, duplicate: true }) : reply(202, { runId });
  }
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
