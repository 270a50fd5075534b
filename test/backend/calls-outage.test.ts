import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from 'undici';
import { CallPool } from '../../src/backend/calls.js';
import { openBackend, type Backend } from '../../src/backend/connection.js';
import { outcomeOf } from '../../src/engine/retry.js';
import { createAgent, send } from '../../src/providers/http.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';
import { json, startServer } from '../helpers/server.js';

// Its own Redis: this file stops it.
let redis: TestRedis;
let backend: Backend;
let agent: Agent;

beforeAll(async () => {
  redis = await startRedis();
  backend = await openBackend(redis.url);
  agent = createAgent();
});

afterAll(async () => {
  await backend.close();
  await agent.close();
  await redis.close();
});

describe('queued calls through a Redis outage', () => {
  it('never leaves a call hanging when Redis comes back without it: it fails as a network error, retried as one', async () => {
    // No worker takes the call: it waits in Redis when Redis goes, and the Redis that comes back is empty.
    const pool = new CallPool(backend, { env: {}, local: agent, checkIntervalMs: 300 });
    const server = await startServer((_req, res) => json(res, 200, {}));
    const http = await pool.dispatcher({ provider: 'amplitude', baseUrl: server.url }, { concurrency: 1 }, 'wf', {});
    const call = send('amplitude', http, { method: 'POST', url: `${server.url}/x`, body: '{}', timeoutMs: 10_000 }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    await redis.stop();
    await new Promise((r) => setTimeout(r, 500));
    await redis.start();
    const error = await call;
    expect(error).toMatchObject({ code: 'FERRY_PROVIDER_NETWORK' });
    expect((error as { cause?: { code?: string } }).cause?.code).toBe('FERRY_BACKEND_CALL_LOST');
    expect(outcomeOf(error).kind).toBe('retryable');
    expect(server.seen).toEqual([]);
    await pool.close();
    await server.close();
  });
});
