import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import type { Agent } from 'undici';
import { rateWindow } from '../../src/backend/account-limits.js';
import { CallPool, callQueueName } from '../../src/backend/calls.js';
import { openBackend, type Backend } from '../../src/backend/connection.js';
import type { Account } from '../../src/engine/queue.js';
import { createAgent, send, undici, type HttpRequest } from '../../src/providers/http.js';
import { redisContents, redisHolding, startRedis, type TestRedis } from '../helpers/redis.js';
import { json, startServer } from '../helpers/server.js';

// Three CallPools, each with its own Redis connections and Agent: three processes of a pool.
const KEY = 'amp-key-7f3a9c21d4e5';
const SECRET = 'amp-secret-0b8e66d2a1c9';
const SECRETS = { AMP_KEY: KEY, AMP_SECRET: SECRET };

let redis: TestRedis;
const backends: Backend[] = [];
const agents: Agent[] = [];
const pools: CallPool[] = [];
let direct: Agent;

beforeAll(async () => {
  redis = await startRedis();
  direct = createAgent();
  for (let i = 0; i < 3; i++) {
    const backend = await openBackend(redis.url);
    const agent = createAgent();
    const pool = new CallPool(backend, { env: { ...SECRETS }, local: agent, lockDurationMs: 2000 });
    await pool.work();
    backends.push(backend);
    agents.push(agent);
    pools.push(pool);
  }
});

afterAll(async () => {
  for (const pool of pools) await pool.close();
  for (const backend of backends) await backend.close();
  for (const agent of [...agents, direct]) await agent.close();
  await redis.close();
});

let accounts = 0;
function account(baseUrl: string): Account {
  return { provider: 'amplitude', baseUrl, credentialHash: `${++accounts}`.padStart(64, '0') };
}

const post = (url: string, over: Partial<HttpRequest> = {}): HttpRequest => ({ method: 'POST', url, headers: { 'content-type': 'application/json' }, body: '{}', timeoutMs: 10_000, ...over });
const get = (url: string, headers: Record<string, string> = {}): HttpRequest => ({ method: 'GET', url, headers, timeoutMs: 10_000 });

/** Requests per sliding window of `ms` at most, from their arrival times. */
function maxPerWindow(times: number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while ((sorted[i] as number) - (sorted[j] as number) >= ms) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
}

describe('provider calls as jobs of a shared queue', () => {
  it('gives back the answer a direct call gets, with the secrets filled in by the worker', async () => {
    const big = 'x'.repeat(1024 * 1024 - 100);
    const server = await startServer((req, res) => {
      if (req.url.startsWith('/big')) return json(res, 200, { echo: req.body.length, big });
      if (req.url.startsWith('/fail')) return json(res, 503, { error: 'try later' }, { 'x-trace': 'abc' });
      json(res, 201, { key: req.headers['x-api-key'] === KEY, body: (JSON.parse(req.body) as { n: number }).n, query: req.url.length }, { 'x-trace': 'abc' });
    });
    const http = await pools[0]!.dispatcher(account(server.url), { concurrency: 4 }, 'wf', SECRETS);
    for (const request of [
      post(`${server.url}/ok?api_key=${encodeURIComponent(KEY)}`, { headers: { 'content-type': 'application/json', 'x-api-key': KEY }, body: JSON.stringify({ api_key: KEY, n: 1 }) }),
      post(`${server.url}/fail`),
      post(`${server.url}/big`, { body: Buffer.from(JSON.stringify({ big })) }),
    ]) {
      const [queued, straight] = await Promise.all([send('amplitude', http, request), send('amplitude', direct, request)]);
      expect(queued.status).toBe(straight.status);
      expect(queued.text).toBe(straight.text);
      expect(queued.headers['x-trace']).toBe(straight.headers['x-trace']);
      expect(queued.headers['content-type']).toBe(straight.headers['content-type']);
    }
    expect(server.seen.filter((s) => s.url.startsWith('/ok')).every((s) => s.headers['x-api-key'] === KEY)).toBe(true);
    await server.close();
  });

  it('gives back network errors with the code a direct call gets', async () => {
    const server = await startServer((req, res) => {
      if (req.url === '/reset') return void res.socket?.destroy();
      if (req.url === '/hang') return; // never answers
      json(res, 200, {});
    });
    const http = await pools[1]!.dispatcher(account(server.url), { concurrency: 4 }, 'wf', SECRETS);
    const refused = `http://127.0.0.1:1/x`;
    const outcome = async (dispatcher: Agent | typeof http, request: HttpRequest): Promise<unknown> => send('amplitude', dispatcher, request).catch((e: unknown) => e);
    for (const request of [post(`${server.url}/reset`), post(refused), post(`${server.url}/hang`, { timeoutMs: 300 })]) {
      const [queued, straight] = await Promise.all([outcome(http, request), outcome(direct, request)]);
      expect(queued).toMatchObject({ code: (straight as { code: string }).code });
      const cause = (e: unknown): unknown => (e as { cause?: { code?: string } }).cause?.code;
      expect(cause(queued)).toBe(cause(straight));
    }
    // undici's own request() (its older handler API) on the queued dispatcher, with undici's header timeout.
    const viaRequest = async (dispatcher: Agent | typeof http): Promise<unknown> => undici().request(`${server.url}/hang`, { dispatcher, headersTimeout: 300 }).catch((e: unknown) => e);
    const [queued, straight] = await Promise.all([viaRequest(http), viaRequest(direct)]);
    expect((straight as { code: string }).code).toBe('UND_ERR_HEADERS_TIMEOUT');
    expect(queued).toMatchObject({ code: 'UND_ERR_HEADERS_TIMEOUT' });
    const ok = await undici().request(`${server.url}/ok`, { dispatcher: http, method: 'POST', body: '{}' });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.json()).toEqual({});
    await server.close();
  });

  it('holds the stricter concurrency of two workflows across three processes: never more than 4 in flight', async () => {
    const server = await startServer((_req, res) => void setTimeout(() => json(res, 200, { ok: true }), 20));
    const acct = account(server.url);
    const lax = await pools[0]!.dispatcher(acct, { concurrency: 10 }, 'lax', SECRETS);
    const strict = await pools[1]!.dispatcher(acct, { concurrency: 4 }, 'strict', SECRETS);
    const third = await pools[2]!.dispatcher(acct, { concurrency: 10 }, 'lax', SECRETS);
    const dispatchers = [lax, strict, third];
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => send('amplitude', dispatchers[i % 3]!, post(`${server.url}/c${i}`))));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(server.seen).toHaveLength(100);
    expect(server.maxInFlight()).toBeLessThanOrEqual(4);
    expect(server.maxInFlight()).toBeGreaterThan(1);
    const stored = JSON.parse((await backends[0]!.redis.hget('ferry:accounts', callQueueName(acct))) as string) as { limits: unknown };
    expect(stored.limits).toEqual({ concurrency: 4 });
    await server.close();
  });

  it('splits a rate of 200/s into 10 per 53 ms: 1,000 calls, no sliding second above 220', async () => {
    expect(rateWindow({ limit: 200, intervalMs: 1000 })).toEqual({ max: 10, duration: 53 });
    expect(rateWindow({ limit: 300, intervalMs: 60_000 })).toEqual({ max: 15, duration: 3150 });
    expect(rateWindow({ limit: 5, intervalMs: 1000 })).toEqual({ max: 1, duration: 210 });
    const server = await startServer((_req, res) => json(res, 200, {}));
    const acct = account(server.url);
    const dispatchers = await Promise.all(pools.map((p) => p.dispatcher(acct, { concurrency: 50, rate: { limit: 200, intervalMs: 1000 } }, 'rate', SECRETS)));
    const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => send('amplitude', dispatchers[i % 3]!, post(`${server.url}/r${i}`))));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(server.seen).toHaveLength(1000);
    expect(maxPerWindow(server.seen.map((s) => s.at), 1000)).toBeLessThanOrEqual(220);
    await server.close();
  }, 60_000);

  it('pauses the account in every process on a 429 with Retry-After: 2, and a later shorter pause does not shorten it', async () => {
    let throttledAt = 0;
    const server = await startServer((req, res) => {
      if (req.url === '/c0') {
        throttledAt = Date.now();
        return json(res, 429, { error: 'slow down' }, { 'retry-after': '2' });
      }
      setTimeout(() => json(res, 200, {}), 10);
    });
    const acct = account(server.url);
    const dispatchers = await Promise.all(pools.map((p) => p.dispatcher(acct, { concurrency: 2 }, 'pause', SECRETS)));
    const first = await send('amplitude', dispatchers[0]!, post(`${server.url}/c0`));
    expect(first.status).toBe(429);
    // Another process's shorter pause (Amplitude's documented 100 ms, say) must not end this one.
    await pools[2]!.pause(acct, 100);
    const rest = await Promise.all(Array.from({ length: 30 }, (_, i) => send('amplitude', dispatchers[i % 3]!, post(`${server.url}/c${i + 1}`))));
    expect(rest.every((a) => a.status === 200)).toBe(true);
    const during = server.seen.filter((s) => s.url !== '/c0' && s.at > throttledAt + 200 && s.at < throttledAt + 2000);
    expect(during).toEqual([]);
    expect(server.seen.filter((s) => s.at >= throttledAt + 2000)).toHaveLength(30);
    await server.close();
  });

  it('fails a call whose worker lacks the secret, naming the secret, never its value', async () => {
    const isolated = await openBackend(redis.url, { prefix: 'ferry-nosecret' });
    const agent = createAgent();
    const pool = new CallPool(isolated, { env: {}, local: agent });
    await pool.work();
    const server = await startServer((_req, res) => json(res, 200, {}));
    const http = await pool.dispatcher(account(server.url), { concurrency: 1 }, 'wf', SECRETS);
    const error = await send('amplitude', http, post(`${server.url}/x`, { headers: { 'x-api-key': KEY } })).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'FERRY_BACKEND_SECRET_MISSING', provider: 'amplitude' });
    expect((error as Error).message).toMatch(/secret `AMP_KEY` is not set in the environment of the ferry process on host \S+/);
    expect((error as Error).message).not.toContain(KEY);
    expect(server.seen).toEqual([]);
    await pool.close();
    await isolated.close();
    await agent.close();
    await server.close();
  });

  it('sends from its own process a request whose secret it cannot take out, and queues nothing of it', async () => {
    // No worker on this prefix: a queued call would wait for ever; the unstrippable one is answered.
    const isolated = await openBackend(redis.url, { prefix: 'ferry-local' });
    const agent = createAgent();
    const pool = new CallPool(isolated, { env: { ...SECRETS }, local: agent });
    const server = await startServer((req, res) => json(res, 200, { auth: req.headers['x-auth'] }));
    const acct = account(server.url);
    const http = await pool.dispatcher(acct, { concurrency: 1 }, 'wf', SECRETS);
    const odd = Buffer.from(`token=${SECRET};`).toString('base64');
    const answer = await send('amplitude', http, post(`${server.url}/x`, { headers: { 'x-auth': odd } }));
    expect(answer.status).toBe(200);
    expect(server.seen[0]?.headers['x-auth']).toBe(odd);
    const counts = await isolated.redis.llen(`ferry-local:${callQueueName(acct)}:wait`);
    expect(counts).toBe(0);
    await pool.close();
    await isolated.close();
    await agent.close();
    await server.close();
  });

  it('runs again, soon, a call whose worker died with it (its hold on the call ends after lockDurationMs)', async () => {
    const made = await Promise.all([0, 1, 2].map(() => openBackend(redis.url, { prefix: 'ferry-stall' })));
    const [deadBackend, liveBackend, runBackend] = made as [Backend, Backend, Backend];
    const agent = createAgent();
    const server = await startServer((req, res) => {
      if (server.seen.length === 1) return; // the first try hangs: its worker dies meanwhile
      json(res, 200, { try: server.seen.length });
    });
    const dead = new CallPool(deadBackend, { env: {}, local: agent, lockDurationMs: 1000 });
    const live = new CallPool(liveBackend, { env: {}, local: agent, lockDurationMs: 1000 });
    const runner = new CallPool(runBackend, { env: {}, local: agent });
    await dead.work();
    const http = await runner.dispatcher(account(server.url), { concurrency: 1 }, 'wf', {});
    const call = send('amplitude', http, post(`${server.url}/x`));
    while (server.seen.length === 0) await new Promise((r) => setTimeout(r, 20));
    // The process dies: its connections drop, nothing renews its hold on the call.
    deadBackend.redis.disconnect();
    await live.work();
    const answer = await call;
    expect(answer.status).toBe(200);
    expect(server.seen.map((s) => s.url)).toEqual(['/x', '/x']);
    await server.close();
    await Promise.all([live.close(), runner.close(), dead.close()]);
    await Promise.all(made.map((b) => b.close()));
    await agent.close();
  });

  it("does not send a call whose process is gone: a dead worker's call is not sent again once the run that queued it died too", async () => {
    const made = await Promise.all([0, 1, 2].map(() => openBackend(redis.url, { prefix: 'ferry-abandon' })));
    const [deadBackend, liveBackend, runBackend] = made as [Backend, Backend, Backend];
    const agent = createAgent();
    const server = await startServer(() => undefined); // the call hangs: its worker and its run die meanwhile
    // The defaults: a worker's hold on a call lasts 5 s, a process counts as waiting 3 s after it last said so.
    const dead = new CallPool(deadBackend, { env: {}, local: agent });
    const runner = new CallPool(runBackend, { env: {}, local: agent });
    await dead.work();
    const target = account(server.url);
    const http = await runner.dispatcher(target, { concurrency: 1 }, 'wf', {});
    void send('amplitude', http, post(`${server.url}/x`)).catch(() => undefined);
    while (server.seen.length === 0) await new Promise((r) => setTimeout(r, 20));
    // Both processes die: nothing renews the worker's hold on the call, nobody waits for its answer.
    deadBackend.redis.disconnect();
    runBackend.redis.disconnect();
    const live = new CallPool(liveBackend, { env: {}, local: agent });
    await live.work();
    const queue = new Queue(callQueueName(target), liveBackend.bullmq);
    const deadline = Date.now() + 20_000;
    while ((await queue.getJobCounts('failed')).failed === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const [failed] = await queue.getJobs(['failed']);
    expect(failed?.failedReason).toMatch(/^FERRY_BACKEND_CALL_ABANDONED /);
    expect(server.seen).toHaveLength(1);
    await queue.close();
    await server.close();
    await Promise.all([live.close(), dead.close()]);
    void runner.close().catch(() => undefined);
    await Promise.all(made.map((b) => b.close()));
    await agent.close();
  });

  it('leaves no secret anywhere in Redis: every key and value, plain and base64', async () => {
    // Every form a provider sends a key in, and a server that echoes the key back in its answer.
    const server = await startServer((req, res) => json(res, 401, { error: `invalid api_key ${KEY}`, got: req.headers.authorization ?? null }));
    const http = await pools[0]!.dispatcher(account(server.url), { concurrency: 4 }, 'scan', SECRETS);
    const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    const echoed = await Promise.all([
      send('amplitude', http, post(`${server.url}/json`, { body: JSON.stringify({ api_key: KEY, events: [] }) })),
      send('amplitude', http, post(`${server.url}/form`, { headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ api_key: KEY, identification: '[]' }).toString() })),
      send('amplitude', http, get(`${server.url}/export?api_key=${encodeURIComponent(KEY)}`)),
      send('amplitude', http, get(`${server.url}/export`, { authorization: basic(KEY, SECRET) })),
      send('amplitude', http, post(`${server.url}/segment`, { headers: { authorization: basic(KEY, '') } })),
    ]);
    expect(server.seen).toHaveLength(5);
    // The key a provider echoes back reaches the run redacted.
    expect(echoed.map((a) => a.text)).toContain(JSON.stringify({ error: 'invalid api_key [redacted]', got: '[redacted]' }));
    expect(server.seen.find((s) => s.url === '/segment')?.headers.authorization).toBe(basic(KEY, ''));
    const forms = [KEY, SECRET, ...[KEY, SECRET, `${KEY}:`, `${KEY}:${SECRET}`].map((v) => Buffer.from(v).toString('base64'))];
    const contents = await redisContents(backends[0]!.redis);
    const keys = contents.length;
    const found = await redisHolding(backends[0]!.redis, forms);
    expect(keys).toBeGreaterThan(5);
    expect(found).toEqual([]);
    await server.close();
  });
});
