import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry, spawnFerry } from '../helpers/cli.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

// A pool of real processes: `ferry worker`s and a `ferry serve` on one Redis, sending to the
// sandbox emulators of this test process. Secrets come from each process's environment.
const AMP_KEY = 'pool-secret-amp-key-7f3a9c';
const env = (redis: TestRedis): Record<string, string> => ({ FERRY_BACKEND: redis.url, AMP_KEY, CI: 'true' });

let redis: TestRedis;
let sandbox: Sandbox;
let dir: string;
const children: ReturnType<typeof spawnFerry>[] = [];

beforeAll(async () => {
  assertBuilt();
  redis = await startRedis();
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY] } as Parameters<typeof startSandbox>[0]);
  dir = mkdtempSync(path.join(tmpdir(), 'ferry-pool-'));
});

afterEach(async () => {
  await Promise.all(children.splice(0).map(async (c) => {
    if (c.child.exitCode === null) c.child.kill('SIGKILL');
    await c.done;
  }));
  sandbox.amplitude.reset();
});

afterAll(async () => {
  await sandbox?.close();
  await redis?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `n` workers of the pool, each ready (it said it joined) before this resolves. */
async function workers(n: number, extra: string[] = []): Promise<ReturnType<typeof spawnFerry>[]> {
  const started = Array.from({ length: n }, () => spawnFerry(['worker', ...extra], { cwd: dir, env: env(redis) }));
  children.push(...started);
  await Promise.all(started.map((w) => waitFor(() => w.child.stderr !== null && joined.has(w), 10_000, w)));
  return started;
}

const joined = new WeakSet<object>();
async function waitFor(ok: () => boolean, ms: number, worker?: ReturnType<typeof spawnFerry>): Promise<void> {
  if (worker) worker.child.stderr?.on('data', (d: Buffer) => d.toString().includes('joined') && joined.add(worker));
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

function backfill(name: string, rows: number, providerExtra = ''): string {
  const file = path.join(dir, `${name}.jsonl`);
  writeFileSync(file, Array.from({ length: rows }, (_, i) => JSON.stringify({ id: `user_${100000 + i}` })).join('\n') + '\n');
  const yaml = `name: ${name}
secrets: [AMP_KEY]
providers:
  amplitude:
    api_key: <<secrets.AMP_KEY>>
    base_url: ${sandbox.amplitude.url}
${providerExtra}
retry: { attempts: 8, backoff: { initial: 50ms, factor: 2, max: 2s } }
steps:
  - id: each
    loop:
      file: ${name}.jsonl
      as: row
      concurrency: 64
    steps:
      - id: send
        action: amplitude.send_event
        with: { user_id: <<row.id>>, event_type: backfill }
`;
  writeFileSync(path.join(dir, `${name}.yaml`), yaml);
  return `${name}.yaml`;
}

/** Requests to the event API by arrival time. */
const eventRequests = (): { at: number }[] => sandbox.amplitude.requests.filter((r) => r.path === '/2/httpapi' || r.path === '/batch');

function maxPerSlidingSecond(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while ((sorted[i] as number) - (sorted[j] as number) >= 1000) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
}


describe('ferry on a Redis backend (real processes)', () => {
  it('holds one account’s concurrency and rate across three workers, and stores every item once', async () => {
    await workers(3);
    const file = backfill('limits', 5000, '    concurrency: 4\n    rate: { limit: 200, interval: 1s }\n    batch: { max_items: 10 }');
    const result = await ferry(['run', file], { cwd: dir, env: env(redis) });
    expect(result.stderr).toContain('succeeded');
    expect(result.code).toBe(0);
    expect(sandbox.amplitude.maxInFlight).toBeLessThanOrEqual(4);
    expect(maxPerSlidingSecond(eventRequests().map((r) => r.at))).toBeLessThanOrEqual(220);
    // Stored once each: no item was sent twice.
    expect(sandbox.amplitude.events.size).toBe(5000);
    expect(sandbox.amplitude.eventsIngested).toBe(5000);
  }, 90_000);

  it('pauses the account in every process for a Retry-After', async () => {
    await workers(3);
    sandbox.amplitude.inject({ kind: 'status', status: 429, retryAfter: 2, times: 1 });
    const file = backfill('pause', 600, '    concurrency: 8\n    batch: false');
    const result = await ferry(['run', file], { cwd: dir, env: env(redis) });
    expect(result.code).toBe(0);
    const requests = eventRequests() as { at: number; status: number }[];
    const throttled = requests.find((r) => r.status === 429);
    expect(throttled).toBeDefined();
    const paused = requests.filter((r) => r.at > (throttled as { at: number }).at + 200 && r.at < (throttled as { at: number }).at + 2000);
    expect(paused).toEqual([]);
  }, 90_000);

  it('takes a run over when its worker is killed, and finishes it without a retry', async () => {
    await workers(2, ['--takeover', '6s']);
    const file = backfill('takeover', 3000, '    concurrency: 4\n    rate: { limit: 400, interval: 1s }\n    batch: { max_items: 5 }');
    const run = spawnFerry(['run', file], { cwd: dir, env: env(redis) });
    children.push(run);
    // Kill the worker that runs it once items are flowing.
    await waitFor(() => sandbox.amplitude.events.size > 300, 30_000);
    const owners = await new Redis(redis.url).keys('ferry:run:*:owner');
    expect(owners.length).toBe(1);
    const holder = JSON.parse((await new Redis(redis.url).get(owners[0] as string)) as string) as { pid: number };
    process.kill(holder.pid, 'SIGKILL');
    const killedAt = Date.now();
    const result = await run.done;
    expect(result.code).toBe(0);
    expect(Date.now() - killedAt).toBeLessThan(60_000);
    // Every item stored; a repeat only ever with its original insert_id (deduplicated).
    expect(sandbox.amplitude.events.size).toBe(3000);
  }, 120_000);

  it('keeps secrets out of Redis', async () => {
    const scan = new Redis(redis.url);
    const forms = [AMP_KEY, Buffer.from(AMP_KEY).toString('base64'), Buffer.from(`${AMP_KEY}:`).toString('base64')];
    let cursor = '0';
    const found: string[] = [];
    do {
      const [next, keys] = await scan.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const type = await scan.type(key);
        const values: string[] = [key];
        if (type === 'string') values.push((await scan.get(key)) ?? '');
        else if (type === 'hash') values.push(...Object.entries(await scan.hgetall(key)).flat());
        else if (type === 'list') values.push(...(await scan.lrange(key, 0, -1)));
        else if (type === 'set') values.push(...(await scan.smembers(key)));
        else if (type === 'zset') values.push(...(await scan.zrange(key, 0, -1)));
        else if (type === 'stream') values.push(...(await scan.xrange(key, '-', '+')).flatMap(([id, fields]) => [id, ...fields]));
        for (const v of values) if (forms.some((f) => v.includes(f))) found.push(key);
      }
    } while (cursor !== '0');
    await scan.quit();
    expect(found).toEqual([]);
  });
});
