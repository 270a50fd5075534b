import { afterEach, describe, expect, it } from 'vitest';
import { createFerry, type Ferry } from '../../src/engine/runtime.js';
import { runWorkflow } from '../../src/engine/run.js';
import { json, startServer, type Seen } from '../helpers/server.js';
import { registryWith, workflowFrom } from '../helpers/workflow.js';
import type { ServerResponse } from 'node:http';

const registry = registryWith();
let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

const fastRetry = 'retry: { attempts: 3, backoff: { initial: 5ms, max: 10ms } }';

/** A server whose first `throttled` answers are 429 with `retryAfter`, then 200 `ok`. */
async function throttling(retryAfter: string | undefined, ok: (req: Seen, res: ServerResponse) => void, throttled = 1, body: unknown = { error: 'slow down' }) {
  const server = await startServer((req, res, i) => {
    if (i < throttled) json(res, 429, body, retryAfter === undefined ? {} : { 'retry-after': retryAfter });
    else ok(req, res);
  });
  close = server.close;
  return server;
}

const okJson = (_req: Seen, res: ServerResponse): void => json(res, 200, {});

function single(url: string, provider = ''): string {
  return `
name: stall
${fastRetry}
${provider}
steps:
  - id: get
    action: http.request
    with: { url: "${url}/x" }
`;
}

async function run(yaml: string, options: { ferry?: Ferry; signal?: AbortSignal; inputs?: Record<string, unknown> } = {}) {
  const ferry = options.ferry ?? createFerry({ registry });
  return runWorkflow(workflowFrom(yaml, registry), { ferry, ...(options.signal ? { signal: options.signal } : {}), ...(options.inputs ? { inputs: options.inputs } : {}) });
}

/** How long the provider's scope in `ferry` stays paused (0 when it has none). */
function pausedFor(ferry: Ferry, provider: string): number {
  return ferry.limits.scopes.find((scope) => scope.provider === provider)?.pausedForMs ?? 0;
}

describe('a wait longer than the provider cap', () => {
  it('fails the call at once, naming the provider, the wait and the cap, without pausing the queue', async () => {
    const server = await throttling('1000000000', okJson);
    const ferry = createFerry({ registry });
    const summary = await run(single(server.url), { ferry });
    expect(summary.status).toBe('failed');
    expect(summary.error).toMatchObject({ step: 'get', code: 'FERRY_PROVIDER_WAIT_TOO_LONG', status: 429 });
    expect(summary.error?.message).toBe(
      'step `get`: http asked to wait 277777h 46m (Retry-After: 1000000000); longer than the 15m this workflow allows (providers.http.max_wait); the run is paused — resume later with ferry retry',
    );
    expect(server.seen).toHaveLength(1);
    expect(pausedFor(ferry, 'http')).toBe(0);
  });

  it.each([
    { retryAfter: '5', status: 'failed', requests: 1 },
    { retryAfter: '1', status: 'succeeded', requests: 2 },
  ])('with `max_wait: 2s`, Retry-After: $retryAfter ends $status', async ({ retryAfter, status, requests }) => {
    const server = await throttling(retryAfter, okJson);
    const summary = await run(single(server.url, 'providers: { http: { max_wait: 2s } }'));
    expect(summary.status).toBe(status);
    expect(server.seen).toHaveLength(requests);
    if (status === 'failed') expect(summary.error?.message).toContain('http asked to wait 5s (Retry-After: 5); longer than the 2s this workflow allows (providers.http.max_wait)');
  });

  it('refuses a `max_wait` that is not a duration, at its position in the file', () => {
    expect(() => workflowFrom(single('http://127.0.0.1:9', 'providers:\n  http: { max_wait: soon }'), registry)).toThrow(
      'test.yaml:4:21: `max_wait`: `soon` is not a duration',
    );
  });

  it('caps a Retry-After given as an HTTP date far in the future', async () => {
    const date = new Date(Date.now() + 400 * 86_400_000).toUTCString();
    const server = await throttling(date, okJson);
    const summary = await run(single(server.url));
    expect(summary.error).toMatchObject({ code: 'FERRY_PROVIDER_WAIT_TOO_LONG' });
    expect(summary.error?.message).toMatch(new RegExp(`http asked to wait 9\\d{3}h \\d+m \\(Retry-After: ${date}\\); longer than the 15m`));
    expect(server.seen).toHaveLength(1);
  });

  it("caps Amplitude's documented 30 s pause after a 429 when `max_wait` is shorter", async () => {
    const server = await throttling(undefined, okJson, 1, { code: 429, error: 'Too many requests for some devices and users' });
    const summary = await run(`
name: stall
${fastRetry}
providers: { amplitude: { api_key: k, base_url: "${server.url}", max_wait: 10s, batch: false } }
steps:
  - id: ev
    action: amplitude.send_event
    with: { user_id: user_10001, event_type: Signed }
`);
    expect(summary.error?.message).toContain("amplitude asked to wait 30s (amplitude's documented pause after a 429); longer than the 10s this workflow allows (providers.amplitude.max_wait)");
    expect(server.seen).toHaveLength(1);
  });

  it.each([
    { action: 'segment.track', provider: 'segment: { write_key: k', with: '{ userId: <<id>>, event: Signed }' },
    { action: 'amplitude.send_event', provider: 'amplitude: { api_key: k', with: '{ user_id: <<id>>, event_type: Signed }' },
  ])('fails every item of a batched $action loop at once, and pauses nothing', async ({ action, provider, with: withBlock }) => {
    const server = await throttling('1000000000', okJson);
    const ferry = createFerry({ registry });
    const summary = await run(
      `
name: stall
${fastRetry}
providers: { ${provider}, base_url: "${server.url}" } }
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 20 }
    steps:
      - { id: call, action: ${action}, with: ${withBlock} }
`,
      { ferry, inputs: { ids: Array.from({ length: 20 }, (_, i) => `user_${10_000 + i}`) } },
    );
    expect(summary.status).toBe('failed');
    expect(summary.error).toMatchObject({ step: 'call', code: 'FERRY_PROVIDER_WAIT_TOO_LONG' });
    expect(summary.error?.message).toContain(`${action.split('.')[0]} asked to wait 277777h 46m (Retry-After: 1000000000)`);
    expect(server.seen).toHaveLength(1);
    expect(pausedFor(ferry, action.split('.')[0] as string)).toBe(0);
  });
});

describe('a stopping run', () => {
  /** Runs `yaml`, stops it once the server has seen `requests` requests, and returns the summary. */
  async function stopWhileWaiting(yaml: string, seen: () => number, inputs?: Record<string, unknown>) {
    const stop = new AbortController();
    const ferry = createFerry({ registry });
    const done = run(yaml, { ferry, signal: stop.signal, ...(inputs ? { inputs } : {}) });
    while (seen() === 0 || !(pausedFor(ferry, yaml.includes('segment.') ? 'segment' : 'http') > 0)) await new Promise((r) => setTimeout(r, 5));
    stop.abort('SIGTERM');
    return done;
  }

  it('ends a Retry-After wait at once and sends nothing more; the loop items waiting fail as interrupted', async () => {
    const server = await throttling('600', okJson, Infinity);
    const summary = await stopWhileWaiting(
      `
name: stall
${fastRetry}
providers: { http: { concurrency: 1 } }
steps:
  - id: each
    loop: { over: [1, 2, 3, 4, 5], concurrency: 5 }
    steps:
      - { id: get, action: http.request, with: { url: "${server.url}/<<item>>" } }
`,
      () => server.seen.length,
    );
    expect(summary.status).toBe('failed');
    expect(summary.error?.message).toBe('run interrupted by SIGTERM before it finished');
    // The first call got the 429; the other items waited in the paused queue and never left.
    expect(server.seen.length).toBeLessThan(5);
    expect(summary.steps.each?.steps?.get).toMatchObject({ succeeded: 0, failed: 5 });
    const sentAfterStop = server.seen.length;
    await new Promise((r) => setTimeout(r, 50));
    expect(server.seen.length).toBe(sentAfterStop);
  });

  it('waits on the run\'s stop with many calls at once without a listener-leak warning', async () => {
    const server = await throttling('600', okJson, Infinity);
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.name);
    process.on('warning', onWarning);
    try {
      const summary = await stopWhileWaiting(
        `
name: stall
${fastRetry}
providers: { http: { concurrency: 1 } }
steps:
  - id: each
    loop: { over: <<inputs.items>>, concurrency: 40 }
    steps:
      - { id: get, action: http.request, with: { url: "${server.url}/<<item>>" } }
`,
        () => server.seen.length,
        { items: Array.from({ length: 40 }, (_, i) => i) },
      );
      expect(summary.steps.each?.steps?.get).toMatchObject({ succeeded: 0, failed: 40 });
      await new Promise((r) => setImmediate(r));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('ends a backoff sleep at once', async () => {
    const server = await startServer((_req, res) => json(res, 503, {}));
    close = server.close;
    const stop = new AbortController();
    const done = run(
      `
name: stall
retry: { attempts: 3, backoff: { initial: 10m, max: 10m, jitter: none } }
steps:
  - { id: get, action: http.request, with: { url: "${server.url}/x" } }
`,
      { signal: stop.signal },
    );
    while (server.seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    stop.abort('SIGINT');
    const summary = await done;
    expect(summary.error?.message).toBe('run interrupted by SIGINT before it finished');
    expect(server.seen).toHaveLength(1);
  });

  it("ends the batcher's Retry-After wait at once: batched items fail as interrupted, unsent", async () => {
    const server = await throttling('600', okJson);
    const ids = Array.from({ length: 10 }, (_, i) => `user_${10_000 + i}`);
    const summary = await stopWhileWaiting(
      `
name: stall
${fastRetry}
providers: { segment: { write_key: k, base_url: "${server.url}" } }
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 10 }
    steps:
      - { id: call, action: segment.track, with: { userId: <<id>>, event: Signed } }
`,
      () => server.seen.length,
      { ids },
    );
    expect(summary.error?.message).toBe('run interrupted by SIGTERM before it finished');
    expect(summary.steps.each?.steps?.call).toMatchObject({ succeeded: 0, failed: 10 });
    expect(server.seen).toHaveLength(1);
  });
});
