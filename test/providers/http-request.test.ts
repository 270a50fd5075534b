import { afterEach, describe, expect, it } from 'vitest';
import { runWorkflow } from '../../src/engine/run.js';
import { createFerry } from '../../src/engine/runtime.js';
import { registryWith, workflowFrom } from '../helpers/workflow.js';
import { json, startServer } from '../helpers/server.js';

const registry = registryWith();
let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

const fastRetry = `retry: { attempts: 3, backoff: { initial: 10ms, max: 20ms } }`;

describe('http.request', () => {
  it('sends method, headers, query and a JSON body, and maps the answer to {status, headers, body}', async () => {
    const server = await startServer((_req, res) => json(res, 201, { ok: true, id: 7 }, { 'x-trace': 'abc' }));
    close = server.close;
    const wf = workflowFrom(`
name: req
steps:
  - id: post
    action: http.request
    with:
      method: POST
      url: ${server.url}/users
      headers: { x-api-key: "<<inputs.key>>" }
      query: { dry: true, page: 2 }
      json: { name: <<inputs.name>>, tags: [a, b] }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), inputs: { key: 'abc', name: 'Ada' } });
    expect(summary.status).toBe('succeeded');
    const req = server.seen[0];
    expect(req?.method).toBe('POST');
    expect(req?.url).toBe('/users?dry=true&page=2');
    expect(req?.headers['x-api-key']).toBe('abc');
    expect(req?.headers['content-type']).toBe('application/json');
    expect(JSON.parse(req?.body ?? '')).toEqual({ name: 'Ada', tags: ['a', 'b'] });
    expect(summary.steps.post?.output).toMatchObject({ status: 201, body: { ok: true, id: 7 }, headers: { 'x-trace': 'abc' } });
  });

  it('treats a status listed in `expect` as success', async () => {
    const server = await startServer((_req, res) => json(res, 404, { error: 'no such user' }));
    close = server.close;
    const wf = workflowFrom(`
name: expect
steps:
  - id: get
    action: http.request
    with: { url: "${server.url}/users/1", expect: [200, 404] }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.steps.get?.output).toMatchObject({ status: 404, body: { error: 'no such user' } });
  });

  it('fails at once on a 4xx outside `expect`, with the status and the body in the error', async () => {
    const server = await startServer((_req, res) => json(res, 422, { error: 'email is invalid' }));
    close = server.close;
    const wf = workflowFrom(`
name: fail4xx
${fastRetry}
steps:
  - id: get
    action: http.request
    with: { url: "${server.url}/x" }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.status).toBe('failed');
    expect(summary.error).toMatchObject({ step: 'get', status: 422, code: 'FERRY_PROVIDER_STATUS' });
    expect(summary.error?.message).toContain('email is invalid');
    expect(server.seen).toHaveLength(1);
    expect(summary.steps.get?.calls).toMatchObject({ calls: 1, attempts: 1, failures: { 422: 1 } });
  });

  it('retries 503 and 500 and then succeeds, recording the attempts', async () => {
    const server = await startServer((_req, res, i) => (i === 0 ? json(res, 503, {}) : i === 1 ? json(res, 500, {}) : json(res, 200, { ok: 1 })));
    close = server.close;
    const wf = workflowFrom(`
name: retry5xx
${fastRetry}
steps:
  - id: get
    action: http.request
    with: { url: "${server.url}/x" }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.status).toBe('succeeded');
    expect(server.seen).toHaveLength(3);
    expect(summary.steps.get?.calls).toMatchObject({ calls: 1, attempts: 3, failures: { 500: 1, 503: 1 } });
  });

  it('does not retry 501', async () => {
    const server = await startServer((_req, res) => json(res, 501, {}));
    close = server.close;
    const wf = workflowFrom(`
name: no501
${fastRetry}
steps:
  - { id: get, action: http.request, with: { url: "${server.url}/x" } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.status).toBe('failed');
    expect(server.seen).toHaveLength(1);
  });

  it('retries a reset connection', async () => {
    const server = await startServer((_req, res, i) => {
      if (i === 0) res.socket?.destroy();
      else json(res, 200, {});
    });
    close = server.close;
    const wf = workflowFrom(`
name: reset
${fastRetry}
steps:
  - { id: get, action: http.request, with: { url: "${server.url}/x" } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.status).toBe('succeeded');
    expect(server.seen).toHaveLength(2);
    expect(summary.steps.get?.calls?.failures).toEqual({ FERRY_PROVIDER_NETWORK: 1 });
  });

  it('times out a call that takes longer than `timeout` and retries it', async () => {
    const server = await startServer((_req, res, i) => {
      if (i === 0) setTimeout(() => json(res, 200, { late: true }), 500);
      else json(res, 200, { late: false });
    });
    close = server.close;
    const wf = workflowFrom(`
name: timeout
${fastRetry}
timeout: 100ms
steps:
  - { id: get, action: http.request, with: { url: "${server.url}/x" } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.steps.get?.output).toMatchObject({ body: { late: false } });
    expect(summary.steps.get?.calls?.failures).toEqual({ FERRY_PROVIDER_TIMEOUT: 1 });
  });

  it('waits for Retry-After and pauses every call to the provider meanwhile', async () => {
    let first = 0;
    const server = await startServer((_req, res, i) => {
      if (i === 0) {
        first = Date.now();
        json(res, 429, { error: 'slow down' }, { 'retry-after': '1' });
      } else json(res, 200, {});
    });
    close = server.close;
    const wf = workflowFrom(`
name: pause
${fastRetry}
steps:
  - id: each
    loop: { over: [1, 2, 3, 4, 5, 6], concurrency: 1 }
    steps:
      - { id: get, action: http.request, with: { url: "${server.url}/<<item>>" } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.status).toBe('succeeded');
    const after = server.seen.slice(1);
    expect(after).toHaveLength(6);
    for (const req of after) expect(req.at - first).toBeGreaterThanOrEqual(950);
  });

  it('keeps `http` calls within the provider concurrency', async () => {
    const server = await startServer((_req, res) => void setTimeout(() => json(res, 200, {}), 20));
    close = server.close;
    const wf = workflowFrom(`
name: conc
providers: { http: { concurrency: 3 } }
steps:
  - id: each
    loop: { over: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], concurrency: 12 }
    steps:
      - { id: get, action: http.request, with: { url: "${server.url}/<<item>>" } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.status).toBe('succeeded');
    expect(server.maxInFlight()).toBe(3);
  });
});
