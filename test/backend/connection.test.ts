import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { backendUrl, maskUrl, openBackend } from '../../src/backend/connection.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis.close();
});

describe('backend connection', () => {
  it('connects, prefixes its keys and closes', async () => {
    const backend = await openBackend(redis.url);
    await backend.redis.set(backend.key('probe'), '1');
    expect(await backend.redis.get('ferry:probe')).toBe('1');
    await backend.close();
  });

  it('names the URL, without its password, when Redis is not there (exit 2)', async () => {
    const error = await openBackend('redis://user:hunter22@127.0.0.1:1/0', { connectTimeoutMs: 500 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UsageError);
    expect(error).toMatchObject({ code: 'FERRY_BACKEND_UNREACHABLE' });
    expect((error as Error).message).toContain('redis://user:***@127.0.0.1:1/0');
    expect((error as Error).message).not.toContain('hunter22');
  });

  it('refuses what is not a Redis URL', async () => {
    await expect(openBackend('http://127.0.0.1:6379')).rejects.toMatchObject({ code: 'FERRY_BACKEND_INVALID' });
  });

  it('takes --backend before FERRY_BACKEND, and neither means one process', () => {
    expect(backendUrl('redis://a:1/0', { FERRY_BACKEND: 'redis://b:2/0' })).toBe('redis://a:1/0');
    expect(backendUrl(undefined, { FERRY_BACKEND: 'redis://b:2/0' })).toBe('redis://b:2/0');
    expect(backendUrl(undefined, {})).toBeUndefined();
    expect(maskUrl('redis://:pw@h:1/0')).toBe('redis://:***@h:1/0');
  });
});
