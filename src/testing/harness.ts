import { MockAgent } from 'undici';
import type { MockInterceptor } from 'undici/types/mock-interceptor.js';
import { UsageError } from '../errors.js';
import { Redactor } from '../redact.js';
import { createFerry } from '../engine/runtime.js';
import { envSecrets } from '../engine/secrets.js';
import { createRun, type RunSession } from '../engine/session.js';
import type { RunSummary, TriggerData } from '../types.js';
import type { Registry } from '../providers/registry.js';
import { startSandbox, type DroppedMessage, type Sandbox } from '../sandbox/index.js';
import { Faults } from '../sandbox/faults.js';
import type { Workflow } from '../workflow/types.js';
import { fastRetries, isolate } from './isolate.js';
import type { TestedProvider } from './schema.js';
import type { HttpResponseSpec, TestCase } from './spec.js';

/** One request a provider received, in the shape request expectations match against. */
export interface ReceivedRequest {
  method: string;
  path: string;
  url: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: unknown;
  /** The answer's status; 0 when the connection was dropped. */
  status: number;
}

/** What one case's run did and what the emulators kept. */
export interface CaseOutcome {
  summary: RunSummary | undefined;
  /** Set when the inputs were refused before the run started. */
  invalid: string | undefined;
  timedOut: boolean;
  logs: string[];
  received: Record<TestedProvider, ReceivedRequest[]>;
  stored: {
    events: Record<string, unknown>[];
    identifications: Record<string, unknown>[];
    users: Record<string, Record<string, unknown>>;
    messages: Record<string, unknown>[];
  };
  /** Messages Segment answered 200 but would drop, with why: each fails the case. */
  dropped: DroppedMessage[];
  durationMs: number;
}

const SANDBOX_KEYS = {
  amplitude: { api_key: 'sandbox-amplitude-key', secret_key: 'sandbox-amplitude-secret' },
  segment: { write_key: 'sandbox-segment-key' },
};

/**
 * Runs one case in-process against fresh emulators; nothing leaves 127.0.0.1. The case gets a
 * runtime of its own on the test run's registry: its dispatcher routes to its emulators, and
 * cases that run side by side share no queue or pause. Its run is a session like any other;
 * its log lines are recorded by a subscriber. `onRun` is told of the session before it runs.
 */
export async function runCase(original: Workflow, testCase: TestCase, registry: Registry, onRun?: (session: RunSession) => void): Promise<CaseOutcome> {
  const started = performance.now();
  const sandbox = await startSandbox();
  const http = httpFake(testCase.responses);
  const isolated = await isolate(fastRetries(original));
  const dispatcher = routeToSandbox(sandbox, http.reply);
  const ferry = createFerry({ registry, dispatcher, env: testCase.env });
  const outcome: CaseOutcome = { summary: undefined, invalid: undefined, timedOut: false, logs: [], received: { amplitude: [], segment: [], http: http.received }, stored: { events: [], identifications: [], users: {}, messages: [] }, dropped: [], durationMs: 0 };
  try {
    for (const fault of testCase.faults.amplitude ?? []) sandbox.amplitude.inject(fault);
    for (const fault of testCase.faults.segment ?? []) sandbox.segment.inject(fault);
    for (const fault of testCase.faults.http ?? []) http.faults.inject(fault);
    if (testCase.amplitudeExport) sandbox.amplitude.setExportData(new Map(Object.entries(testCase.amplitudeExport)));
    const workflow = isolated.workflow;
    const trigger: TriggerData = testCase.body ? { type: 'webhook', body: testCase.body.value, headers: testCase.headers, query: {} } : { type: 'manual' };
    const stop = new AbortController();
    const session = createRun(workflow, {
      ferry,
      inputs: testCase.inputs ?? {},
      trigger,
      // Declared secrets the case does not set get placeholders, as in `ferry run --sandbox`.
      secrets: envSecrets(testCase.secrets, { placeholders: true }),
      env: testCase.env,
      redactor: new Redactor(),
      signal: stop.signal,
      providerOverrides: {
        amplitude: { ...SANDBOX_KEYS.amplitude, base_url: sandbox.amplitude.url },
        segment: { ...SANDBOX_KEYS.segment, base_url: sandbox.segment.url },
      },
      subscribers: [(event) => void (event.type === 'log' && outcome.logs.push(event.message))],
    });
    onRun?.(session);
    try {
      await session.record();
    } catch (error) {
      // Inputs the trigger refuses are the case's outcome, as `ferry run` would refuse them.
      if (!(error instanceof UsageError)) throw error;
      outcome.invalid = error.message;
      return outcome;
    }
    const timer = setTimeout(() => {
      outcome.timedOut = true;
      stop.abort('timeout');
    }, testCase.timeoutMs);
    try {
      outcome.summary = await session.run();
    } finally {
      clearTimeout(timer);
    }
    outcome.received.amplitude = sandbox.amplitude.requests.map((r) => ({ ...r, url: `${sandbox.amplitude.url}${r.path}` }));
    outcome.received.segment = sandbox.segment.requests.map((r) => ({ ...r, url: `${sandbox.segment.url}${r.path}` }));
    outcome.stored = {
      events: [...sandbox.amplitude.events.values()],
      identifications: [...sandbox.amplitude.identifications],
      users: Object.fromEntries(sandbox.amplitude.users),
      messages: [...sandbox.segment.messages.values()],
    };
    outcome.dropped = [...sandbox.segment.dropped];
    return outcome;
  } finally {
    outcome.durationMs = Math.round(performance.now() - started);
    await Promise.all([sandbox.close(), ferry.close(), dispatcher.close(), isolated.cleanup()]);
  }
}

/** Emulator hosts go through to the emulators; every other origin is answered by the HTTP fake. */
function routeToSandbox(sandbox: Sandbox, reply: Reply): MockAgent {
  const local = new Set([sandbox.amplitude.url, sandbox.segment.url]);
  const agent = new MockAgent();
  agent.enableNetConnect((host) => local.has(`http://${host}`));
  agent
    .get((origin) => !local.has(origin))
    .intercept({ path: () => true, method: () => true })
    .reply(reply)
    .persist();
  return agent;
}

export type Reply = MockInterceptor.MockReplyOptionsCallback;

/** `http.request` calls answered in-process: the case's responses, faults, else 200 `{}`. */
export function httpFake(responses: readonly HttpResponseSpec[]): { reply: Reply; received: ReceivedRequest[]; faults: Faults } {
  const received: ReceivedRequest[] = [];
  const faults = new Faults();
  const reply: Reply = (opts) => {
    const url = new URL(opts.path, opts.origin);
    const text = typeof opts.body === 'string' ? opts.body : opts.body instanceof Buffer ? opts.body.toString('utf8') : '';
    const record: ReceivedRequest = { method: opts.method, path: url.pathname, url: `${url.origin}${url.pathname}`, query: Object.fromEntries(url.searchParams), headers: lowerHeaders(opts.headers), body: parseBody(text), status: 0 };
    received.push(record);
    const decision = faults.decide(url.pathname, new Set());
    if (decision.kind === 'reset') {
      record.status = 0;
      throw Object.assign(new Error('socket hang up (injected reset)'), { code: 'ECONNRESET' });
    }
    if (decision.kind === 'status') {
      record.status = decision.status;
      const headers = { 'content-type': 'application/json', ...(decision.retryAfter === undefined ? {} : { 'retry-after': String(decision.retryAfter) }) };
      return { statusCode: decision.status, data: JSON.stringify(decision.body ?? { error: `injected ${decision.status}` }), responseOptions: { headers } };
    }
    const found = responses.find((r) => (r.method === undefined || r.method === opts.method) && urlMatches(r.url, record.url));
    const status = found?.status ?? 200;
    record.status = status;
    const body = found ? found.body : {};
    const isText = typeof body === 'string';
    return { statusCode: status, data: isText ? body : JSON.stringify(body), responseOptions: { headers: { 'content-type': isText ? 'text/plain' : 'application/json', ...found?.headers } } };
  };
  return { reply, received, faults };
}

function urlMatches(pattern: string, url: string): boolean {
  return pattern.endsWith('*') ? url.startsWith(pattern.slice(0, -1)) : pattern === url;
}

export function lowerHeaders(headers: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) out[String(headers[i]).toLowerCase()] = String(headers[i + 1]);
  } else if (headers && typeof headers === 'object') {
    for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : String(v);
  }
  return out;
}

function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
