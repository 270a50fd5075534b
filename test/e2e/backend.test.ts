import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { ferrySignature } from '../../src/server/signature.js';
import { assertBuilt, ferry, spawnFerry, waitFor } from '../helpers/cli.js';
import { redisHolding, startRedis, type TestRedis } from '../helpers/redis.js';

// A pool of real processes: `ferry worker`s and `ferry serve`s on one Redis, sending to the
// sandbox emulators of this test process. Secrets come from each process's environment.
const AMP_KEY = 'pool-secret-amp-key-7f3a9c';
const HOOK_SECRET = 'pool-hook-secret-5d1e';

type Child = ReturnType<typeof spawnFerry>;

let sandbox: Sandbox;
let dir: string;
const children: Child[] = [];

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY] });
  dir = mkdtempSync(path.join(tmpdir(), 'ferry-pool-'));
  mkdirSync(path.join(dir, 'hooks'), { recursive: true });
  writeFileSync(
    path.join(dir, 'hooks', 'hooked.yaml'),
    `name: hooked
secrets: [AMP_KEY, HOOK_SECRET]
triggers:
  - type: webhook
    path: /hooks/signup
    secret: <<secrets.HOOK_SECRET>>
providers:
  amplitude: { api_key: <<secrets.AMP_KEY>>, base_url: ${sandbox.amplitude.url} }
steps:
  - id: ev
    action: amplitude.send_event
    with: { user_id: <<trigger.body.id>>, event_type: signup }
`,
  );
});

afterEach(async () => {
  await Promise.all(
    children.splice(0).map(async (c) => {
      if (c.child.exitCode === null) c.child.kill('SIGKILL');
      await c.done;
    }),
  );
  sandbox.amplitude.reset();
});

afterAll(async () => {
  await sandbox?.close();
  rmSync(dir, { recursive: true, force: true });
});

const env = (redis: TestRedis): Record<string, string> => ({ FERRY_BACKEND: redis.url, AMP_KEY, HOOK_SECRET, CI: 'true' });

function start(args: string[], redis: TestRedis): Child {
  const child = spawnFerry(args, { cwd: dir, env: env(redis) });
  children.push(child);
  return child;
}

/** `n` workers of the pool, each ready (it said it joined) before this resolves. */
async function workers(redis: TestRedis, n: number, extra: string[] = []): Promise<Child[]> {
  const started = Array.from({ length: n }, () => start(['worker', ...extra], redis));
  await waitFor(() => started.every((w) => w.err().includes('joined')), 'the workers to join');
  return started;
}

/** A `ferry serve` of the pool on a free port; resolves with its URL. */
async function listener(redis: TestRedis, extra: string[] = []): Promise<{ url: string; child: Child }> {
  const child = start(['serve', '--dir', 'hooks', '--port', '0', ...extra], redis);
  let url: string | undefined;
  await waitFor(() => (url = /listening on (http:\/\/\S+)/.exec(child.err())?.[1]) !== undefined, 'ferry serve to listen');
  return { url: url as string, child };
}

/** A file loop of `rows` users sending one Amplitude event each. */
function backfill(name: string, rows: number, provider: string, from = 100_000): string {
  writeFileSync(path.join(dir, `${name}.jsonl`), `${Array.from({ length: rows }, (_, i) => JSON.stringify({ id: `user_${from + i}` })).join('\n')}\n`);
  writeFileSync(
    path.join(dir, `${name}.yaml`),
    `name: ${name}
secrets: [AMP_KEY]
providers:
  amplitude:
    api_key: <<secrets.AMP_KEY>>
    base_url: ${sandbox.amplitude.url}
${provider}
retry: { attempts: 8, backoff: { initial: 50ms, factor: 2, max: 2s } }
steps:
  - id: each
    loop: { file: ${name}.jsonl, as: row, concurrency: 64 }
    steps:
      - id: send
        action: amplitude.send_event
        with: { user_id: <<row.id>>, event_type: backfill }
`,
  );
  return `${name}.yaml`;
}

/** Requests to the event APIs, as the emulator saw them. */
const eventRequests = (): { at: number; status: number }[] => sandbox.amplitude.requests.filter((r) => r.path === '/2/httpapi' || r.path === '/batch');

function maxPerSlidingSecond(times: number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while ((sorted[i] as number) - (sorted[j] as number) >= 1000) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
}

/** The processes (by their stderr) that ran `runId`. */
const runnersOf = (pool: Child[], runId: string): Child[] => pool.filter((w) => w.err().includes(`run ${runId} of`));
const runIdOf = (result: { stderr: string }): string => /queued run (\S+)/.exec(result.stderr)?.[1] ?? '';

describe('ferry on a Redis backend: one serve and three workers', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.close();
  });

  it('holds one account’s concurrency and rate across processes, stores every item once, and keeps secrets out of Redis', async () => {
    // One run per process at a time: the two runs run in two processes, so only the pool's
    // limits can keep their sum at 4 in flight and 200/s.
    const pool = [...(await workers(redis, 3, ['--runs', '1'])), (await listener(redis, ['--max-runs', '1'])).child];
    const provider = '    concurrency: 4\n    rate: { limit: 200, interval: 1s }\n    batch: { max_items: 10 }';
    const a = ferry(['run', backfill('limits_a', 2500, provider)], { cwd: dir, env: env(redis) });
    const b = ferry(['run', backfill('limits_b', 2500, provider, 200_000)], { cwd: dir, env: env(redis) });
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra.stderr).toContain('succeeded');
    expect([ra.code, rb.code]).toEqual([0, 0]);
    const [runnerA] = runnersOf(pool, runIdOf(ra));
    const [runnerB] = runnersOf(pool, runIdOf(rb));
    expect(runnerA).toBeDefined();
    expect(runnerA).not.toBe(runnerB);
    expect(sandbox.amplitude.maxInFlight).toBeLessThanOrEqual(4);
    expect(maxPerSlidingSecond(eventRequests().map((r) => r.at))).toBeLessThanOrEqual(220);
    // Stored once each: no item was sent twice.
    expect(sandbox.amplitude.events.size).toBe(5000);
    expect(sandbox.amplitude.eventsIngested).toBe(5000);
    const forms = [AMP_KEY, Buffer.from(AMP_KEY).toString('base64'), Buffer.from(`${AMP_KEY}:`).toString('base64'), HOOK_SECRET];
    const client = new Redis(redis.url);
    expect(await redisHolding(client, forms)).toEqual([]);
    await client.quit();
  }, 90_000);

  it('pauses the account in every process for a Retry-After', async () => {
    const pool = await workers(redis, 3, ['--runs', '1']);
    sandbox.amplitude.inject({ kind: 'status', status: 429, retryAfter: 2, times: 1 });
    const provider = '    concurrency: 8\n    batch: false';
    const [ra, rb] = await Promise.all([ferry(['run', backfill('pause_a', 400, provider)], { cwd: dir, env: env(redis) }), ferry(['run', backfill('pause_b', 400, provider, 200_000)], { cwd: dir, env: env(redis) })]);
    expect([ra.code, rb.code]).toEqual([0, 0]);
    expect(runnersOf(pool, runIdOf(ra))[0]).not.toBe(runnersOf(pool, runIdOf(rb))[0]);
    const requests = eventRequests();
    const throttled = requests.find((r) => r.status === 429) as { at: number };
    expect(throttled).toBeDefined();
    expect(requests.filter((r) => r.at > throttled.at + 200 && r.at < throttled.at + 2000)).toEqual([]);
    expect(sandbox.amplitude.events.size).toBe(800);
  }, 90_000);

  it('takes a run over when its worker is killed, and finishes it without a retry', async () => {
    await workers(redis, 2, ['--takeover', '6s']);
    const file = backfill('takeover', 3000, '    concurrency: 4\n    rate: { limit: 400, interval: 1s }\n    batch: { max_items: 5 }');
    const run = start(['run', file], redis);
    await waitFor(() => sandbox.amplitude.events.size > 300, 'items to flow');
    const client = new Redis(redis.url);
    const [owner] = await client.keys('ferry:run:*:owner');
    const holder = JSON.parse((await client.get(owner as string)) as string) as { pid: number };
    await client.quit();
    process.kill(holder.pid, 'SIGKILL');
    const result = await run.done;
    expect(result.code).toBe(0);
    // Every item stored; an item on the wire at the kill was sent again only with its original insert_id.
    expect(sandbox.amplitude.events.size).toBe(3000);
    expect(sandbox.amplitude.eventsIngested - sandbox.amplitude.duplicateInsertIds).toBe(3000);
  }, 120_000);

  it('hands a run to another worker when its worker is stopped with SIGTERM', async () => {
    const pool = await workers(redis, 2, ['--runs', '1']);
    // Users of its own (user_300000…): a call the previous test's killed worker left queued may still land meanwhile.
    const run = start(['run', backfill('drain', 1500, '    concurrency: 4\n    rate: { limit: 300, interval: 1s }\n    batch: { max_items: 5 }', 300_000)], redis);
    await waitFor(() => sandbox.amplitude.events.size > 200, 'items to flow');
    const runId = /queued run (\S+)/.exec(run.err())?.[1] as string;
    const [first] = runnersOf(pool, runId);
    first?.child.kill('SIGTERM');
    expect((await first?.done)?.code).toBe(0);
    const result = await run.done;
    expect(result.code).toBe(0);
    expect(runnersOf(pool, runId)).toHaveLength(2);
    const mine = [...sandbox.amplitude.events.values()].filter((e) => /^user_3\d{5}$/.test(String(e.user_id)));
    expect(mine).toHaveLength(1500);
    expect(new Set(mine.map((e) => e.user_id)).size).toBe(1500);
  }, 90_000);

  it('lists, shows and retries a failed run from another process, sending only what is left', async () => {
    await workers(redis, 1);
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_500030' });
    // Users of its own (user_500000…): calls of earlier tests' runs may still land meanwhile (see issue 15's note).
    const file = backfill('retried', 60, '    batch: false', 500_000);
    const failed = await ferry(['run', file], { cwd: dir, env: env(redis) });
    expect(failed.code).toBe(1);
    const runId = runIdOf(failed);
    expect(failed.stderr).toContain(`ferry retry ${runId}`);
    const listed = await ferry(['runs', '--json', '--status', 'failed'], { cwd: dir, env: env(redis) });
    expect((JSON.parse(listed.stdout) as { runId: string }[]).map((r) => r.runId)).toContain(runId);
    const shown = await ferry(['show', runId], { cwd: dir, env: env(redis) });
    expect(shown.stdout).toContain('step send, item 30');
    const mine = () => [...sandbox.amplitude.events.values()].filter((e) => /^user_5\d{5}$/.test(String(e.user_id)));
    const sentBefore = mine().length;
    sandbox.amplitude.reset();
    const retried = await ferry(['retry', runId], { cwd: dir, env: env(redis) });
    expect(retried.code).toBe(0);
    expect(sentBefore + mine().length).toBe(60);
    expect(sandbox.amplitude.duplicateInsertIds).toBe(0);
  }, 90_000);

  it('starts one run for a delivery sent to two listeners', async () => {
    const [one, two] = [await listener(redis), await listener(redis)];
    const body = JSON.stringify({ id: 'user_hooked_1' });
    const headers = { 'content-type': 'application/json', 'X-Ferry-Signature': ferrySignature(HOOK_SECRET, body) };
    const answers = await Promise.all([one.url, two.url].map(async (url) => {
      const res = await fetch(`${url}/hooks/signup`, { method: 'POST', body, headers });
      return { status: res.status, body: (await res.json()) as { runId: string; duplicate?: boolean } };
    }));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 202]);
    expect(answers[0]?.body.runId).toBe(answers[1]?.body.runId);
    await waitFor(() => sandbox.amplitude.events.size === 1, 'the run to send its event');
    const shown = await ferry(['show', answers[0]?.body.runId as string, '--json'], { cwd: dir, env: env(redis) });
    expect(JSON.parse(shown.stdout)).toMatchObject({ workflow: 'hooked' });
  }, 60_000);
});

describe('ferry on a Redis backend: Redis trouble', () => {
  it('exits 2 naming the URL when Redis is not there', async () => {
    const result = await ferry(['run', backfill('nothing', 1, '')], { cwd: dir, env: { FERRY_BACKEND: 'redis://127.0.0.1:1/0', AMP_KEY } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('redis://127.0.0.1:1/0');
    expect(sandbox.amplitude.requests).toEqual([]);
  });

  it('goes on after Redis is stopped for 5 s mid-run: every item stored, none with a new key', async () => {
    const redis = await startRedis({ persist: true });
    try {
      await workers(redis, 2);
      const run = start(['run', backfill('outage', 2000, '    concurrency: 4\n    rate: { limit: 300, interval: 1s }\n    batch: { max_items: 5 }')], redis);
      await waitFor(() => sandbox.amplitude.events.size > 300, 'items to flow');
      await redis.stop();
      await new Promise((r) => setTimeout(r, 5000));
      await redis.start();
      const result = await run.done;
      expect(result.code).toBe(0);
      expect(sandbox.amplitude.events.size).toBe(2000);
      expect(sandbox.amplitude.eventsIngested - sandbox.amplitude.duplicateInsertIds).toBe(2000);
    } finally {
      await redis.close();
    }
  }, 120_000);
});
