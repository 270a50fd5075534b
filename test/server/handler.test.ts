import { describe, expect, it } from 'vitest';
import { builtinRegistry } from '../../src/providers/index.js';
import { createHandler, forwardedHeaders, splitTarget, type Delivery, type HandlerRequest, type Route, type RunsService } from '../../src/server/handler.js';
import { ferrySignature, githubSignature } from '../../src/server/signature.js';
import { workflowFrom } from '../helpers/workflow.js';

const SECRET = 'hook-secret-value';
const RUN_ID = '01M8AH4T662WV7A529DS8VNP5D';

const registry = builtinRegistry();
const plain = workflowFrom(
  `
name: plain
triggers: [{ type: webhook, path: /hooks/plain, secret: ${SECRET} }]
steps: [{ id: say, action: core.log, with: { message: hi } }]
`,
  registry,
);
const typed = workflowFrom(
  `
name: typed
triggers:
  - type: webhook
    path: /hooks/typed
    inputs: { user: { type: string }, count: { type: integer, default: 1 } }
steps: [{ id: say, action: core.log, with: { message: "<<inputs.user>>" } }]
`,
  registry,
);

const routes: Route[] = [
  { path: '/hooks/plain', served: { workflow: plain, file: 'plain.yaml', secrets: {} }, secret: SECRET },
  { path: '/hooks/typed', served: { workflow: typed, file: 'typed.yaml', secrets: {} }, secret: undefined },
];

/** A run manager that keeps what it was given; redelivery is keyed like the real one. */
function fakeRuns(): RunsService & { accepted: Delivery[] } {
  const seen = new Map<string, string>();
  const accepted: Delivery[] = [];
  return {
    accepted,
    async accept(delivery) {
      const key = delivery.deliveryId === undefined ? undefined : `${delivery.route.path}\0${delivery.deliveryId}`;
      const prior = key === undefined ? undefined : seen.get(key);
      if (prior) return { runId: prior, duplicate: true };
      accepted.push(delivery);
      const runId = `run-${accepted.length}`;
      if (key) seen.set(key, runId);
      return { runId, duplicate: false };
    },
    async summary(runId) {
      return runId === RUN_ID ? { runId, status: 'succeeded' } : undefined;
    },
  };
}

function post(url: string, body: string, headers: Record<string, string> = {}): HandlerRequest {
  return { method: 'POST', url, headers, body: Buffer.from(body) };
}
const signed = (body: string, extra: Record<string, string> = {}): Record<string, string> => ({ 'x-hub-signature-256': githubSignature(SECRET, body), ...extra });

describe('request handler', () => {
  it('answers 202 with a run id and hands body, headers and query to the run', async () => {
    const runs = fakeRuns();
    const handle = createHandler({ routes, runs });
    const body = '{"user":"ada"}';
    const res = await handle(post('/hooks/plain?source=crm&x=1', body, signed(body, { 'x-custom': 'yes', authorization: 'Bearer t0ken', 'x-ferry-signature': 'x' })));
    expect(res).toEqual({ status: 202, body: { runId: 'run-1' } });
    const [delivery] = runs.accepted;
    expect(delivery?.trigger).toEqual({ type: 'webhook', body: { user: 'ada' }, headers: { 'x-custom': 'yes' }, query: { source: 'crm', x: '1' } });
    expect(delivery?.inputs).toEqual({});
  });

  it.each([
    ['no signature', {}],
    ['a wrong signature', { 'x-hub-signature-256': githubSignature('other', '{}') }],
    ['a stale timestamped signature', { 'x-ferry-signature': ferrySignature(SECRET, '{}', Date.now() - 301_000) }],
  ])('answers 401 with the same body for %s', async (_case, headers) => {
    const runs = fakeRuns();
    const res = await createHandler({ routes, runs })(post('/hooks/plain', '{}', headers));
    expect(res).toEqual({ status: 401, body: { error: 'invalid or missing signature' } });
    expect(runs.accepted).toEqual([]);
  });

  it('checks the signature before parsing: a bad signature on a non-JSON body is 401, a good one 400', async () => {
    const handle = createHandler({ routes, runs: fakeRuns() });
    expect((await handle(post('/hooks/plain', 'not json'))).status).toBe(401);
    expect(await handle(post('/hooks/plain', 'not json', signed('not json')))).toEqual({ status: 400, body: { error: 'body is not JSON' } });
  });

  it('checks a JSON body against the trigger inputs and passes them, defaults applied', async () => {
    const runs = fakeRuns();
    const handle = createHandler({ routes, runs });
    expect(await handle(post('/hooks/typed', '{"user":"ada"}'))).toEqual({ status: 202, body: { runId: 'run-1' } });
    expect(runs.accepted[0]?.inputs).toEqual({ user: 'ada', count: 1 });
    const bad = await handle(post('/hooks/typed', '{"user":3}'));
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({ error: expect.stringContaining('user') });
    expect((await handle(post('/hooks/typed', '[1,2]'))).status).toBe(400);
    expect(runs.accepted).toHaveLength(1);
  });

  it('answers a redelivery 200 with the first run id, for each delivery header', async () => {
    for (const header of ['x-github-delivery', 'x-ferry-delivery', 'idempotency-key']) {
      const handle = createHandler({ routes, runs: fakeRuns() });
      const first = await handle(post('/hooks/plain', '{}', signed('{}', { [header]: 'd-1' })));
      const again = await handle(post('/hooks/plain', '{}', signed('{}', { [header]: 'd-1' })));
      const other = await handle(post('/hooks/plain', '{}', signed('{}', { [header]: 'd-2' })));
      expect(first).toEqual({ status: 202, body: { runId: 'run-1' } });
      expect(again).toEqual({ status: 200, body: { runId: 'run-1', duplicate: true } });
      expect(other).toEqual({ status: 202, body: { runId: 'run-2' } });
    }
  });

  it.each([
    ['GET', '/hooks/plain', 405],
    ['PUT', '/hooks/plain', 405],
    ['POST', '/healthz', 405],
    ['DELETE', `/runs/${RUN_ID}`, 405],
    ['GET', '/healthz', 200],
    ['HEAD', '/healthz', 200],
    ['GET', `/runs/${RUN_ID}`, 200],
    ['GET', '/runs/NOPE', 404],
    ['GET', '/runs/', 404],
    ['POST', '/hooks/plain/', 404],
    ['POST', '/hooks/unknown', 404],
    ['GET', '/', 404],
    ['POST', 'http://example.test/hooks/unknown', 404],
    ['GET', '*', 404],
  ])('answers %s %s with %i', async (method, url, status) => {
    const res = await createHandler({ routes, runs: fakeRuns(), apiToken: 'api-token' })({ method, url, headers: { authorization: 'Bearer api-token' }, body: Buffer.alloc(0) });
    expect(res.status).toBe(status);
    if (status === 405) expect(res.headers?.allow).toMatch(/^(GET|POST)$/);
  });

  it('reads the path of an absolute-form target and keeps odd query keys as plain keys', () => {
    expect(splitTarget('http://h:1/hooks/a?b=2')).toEqual({ path: '/hooks/a', query: { b: '2' } });
    const { query } = splitTarget('/x?__proto__=1&bad=%ZZ');
    expect(Object.getPrototypeOf(query)).toBe(Object.prototype);
    expect(query).toEqual({ ['__proto__']: '1', bad: '%ZZ' });
  });

  it('leaves signature and authorization headers out of trigger.headers and joins repeated ones', () => {
    expect(
      forwardedHeaders({ 'x-hub-signature-256': 's', 'x-hub-signature': 's', 'x-ferry-signature': 's', 'webhook-signature': 's', authorization: 'a', 'proxy-authorization': 'p', 'x-a': ['1', '2'], 'x-b': 'b' }),
    ).toEqual({ 'x-a': '1, 2', 'x-b': 'b' });
  });
});
