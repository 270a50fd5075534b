import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry, spawnFerry } from '../helpers/cli.js';
import { startRedis, type TestRedis } from '../helpers/redis.js';

const AMP_KEY = 'amp-key-0123456789abcdef';

let sandbox: Sandbox;
let dir: string;
let stateDir: string;

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY] });
});
afterAll(async () => {
  await sandbox.close();
});
beforeEach(async () => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
  dir = await mkdtemp(path.join(tmpdir(), 'ferry-onerror-'));
  stateDir = path.join(dir, 'state');
  return () => rm(dir, { recursive: true, force: true });
});

const env = (): Record<string, string> => ({ AMP_KEY, FERRY_STATE_DIR: stateDir });
const ids = Array.from({ length: 50 }, (_, i) => `user_${10_000 + i}`);

/** A 50-row CSV replay to Amplitude whose identify step sets failed rows aside. */
async function replay(base = dir): Promise<string> {
  await writeFile(path.join(base, 'users.csv'), `id,plan\n${ids.map((id, i) => `${id},${i % 2 ? 'pro' : 'free'}`).join('\n')}\n`);
  const file = path.join(base, 'replay.yaml');
  await writeFile(
    file,
    `name: replay
secrets: [AMP_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, concurrency: 4 }
retry: { attempts: 2, backoff: { initial: 5ms, max: 20ms } }
steps:
  - id: each_user
    loop: { file: users.csv, as: row, concurrency: 8 }
    steps:
      - id: amp
        action: amplitude.identify_user
        on_error: continue
        with:
          user_id: <<row.id>>
          user_properties: { plan: <<row.plan>> }
`,
  );
  return file;
}

interface Summary {
  runId: string;
  status: string;
  failed_items?: number;
  error: { step: string; code?: string; message: string } | null;
}

const identified = (): string[] => sandbox.amplitude.identifications.map((i) => String(i.user_id)).sort();

describe('on_error: continue', () => {
  it('sets 2 bad rows of 50 aside in failed.jsonl with their CSV lines, ends failed, and `ferry retry` sends only those 2', async () => {
    const file = await replay();
    // Rows 7 and 31 (0-based) are CSV lines 9 and 33: the header is line 1.
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10007' });
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10031' });
    const run = await ferry(['run', file, '--json'], { env: env() });
    expect(run.code, run.stderr).toBe(1);
    const summary = JSON.parse(run.stdout) as Summary;
    expect(summary).toMatchObject({ status: 'failed', failed_items: 2, error: { step: 'amp', code: 'FERRY_ITEMS_FAILED' } });
    expect(summary.error?.message).toContain('failed.jsonl');
    expect(run.stderr).toMatch(/each_user item 7 \(users\.csv line 9\) set aside/);
    // The loop went on: the 48 good rows were all sent.
    expect(identified()).toEqual(ids.filter((id) => id !== 'user_10007' && id !== 'user_10031'));

    const failed = (await readFile(path.join(stateDir, 'runs', summary.runId, 'failed.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .sort((a, b) => Number(a.position) - Number(b.position));
    expect(failed).toHaveLength(2);
    expect(failed[0]).toMatchObject({ loop: 'each_user', position: 7, file: 'users.csv', line: 9, step: 'amp', item: { id: 'user_10007', plan: 'pro' }, error: { status: 400 }, provider: { name: 'amplitude', status: 400 } });
    expect(failed[1]).toMatchObject({ position: 31, line: 33, item: { id: 'user_10031' } });
    expect(String((failed[0]?.error as { message: string }).message)).toContain('users.csv line 9');
    expect(JSON.stringify(failed)).not.toContain(AMP_KEY);

    const show = await ferry(['show', summary.runId, '--json'], { env: env() });
    expect(JSON.parse(show.stdout)).toMatchObject({ status: 'failed', failed_items: 2 });
    const text = await ferry(['show', summary.runId], { env: env() });
    expect(text.stdout).toContain('failed    2 items set aside');
    expect(text.stdout).toContain('each_user item 31 (users.csv line 33), step amp');

    // The cause is fixed: the retry sends exactly the 2 rows, nothing else.
    sandbox.amplitude.reset();
    const retry = await ferry(['retry', summary.runId, '--json'], { env: env() });
    expect(retry.code, retry.stderr).toBe(0);
    expect(JSON.parse(retry.stdout)).toMatchObject({ status: 'succeeded', error: null });
    expect((JSON.parse(retry.stdout) as Summary).failed_items).toBeUndefined();
    expect(identified()).toEqual(['user_10007', 'user_10031']);
    expect(sandbox.amplitude.requests.length).toBeLessThanOrEqual(2);
    expect(existsSync(path.join(stateDir, 'runs', summary.runId, 'failed.jsonl'))).toBe(false);
    const after = await ferry(['show', summary.runId, '--json'], { env: env() });
    expect(JSON.parse(after.stdout)).toMatchObject({ status: 'succeeded' });
    expect((JSON.parse(after.stdout) as Summary).failed_items).toBeUndefined();
  });

  it('names the JSONL line of a failed row, and a retry that fails again keeps it in failed.jsonl', async () => {
    await writeFile(path.join(dir, 'users.jsonl'), `${ids.slice(0, 5).map((id) => JSON.stringify({ id })).join('\n\n')}\n`);
    const file = path.join(dir, 'jsonl.yaml');
    await writeFile(
      file,
      `name: jsonl
secrets: [AMP_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url} }
retry: { attempts: 1 }
steps:
  - id: each
    loop: { file: users.jsonl, as: u }
    steps:
      - id: amp
        action: amplitude.identify_user
        on_error: continue
        with: { user_id: <<u.id>> }
  - id: after
    action: core.log
    with: { message: "sent <<steps.each.output.count>>" }
`,
    );
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10003' });
    const run = await ferry(['run', file, '--json'], { env: env() });
    expect(run.code, run.stderr).toBe(1);
    const summary = JSON.parse(run.stdout) as Summary & { steps: Record<string, { status: string }> };
    expect(summary.failed_items).toBe(1);
    // The steps after the loop still run: the loop went on to its end.
    expect(summary.steps.after?.status).toBe('succeeded');
    const failedFile = path.join(stateDir, 'runs', summary.runId, 'failed.jsonl');
    // Blank lines count: the 4th item is on line 7.
    expect(JSON.parse(await readFile(failedFile, 'utf8'))).toMatchObject({ position: 3, line: 7, item: { id: 'user_10003' } });

    sandbox.amplitude.reset();
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10003' });
    const again = await ferry(['retry', summary.runId, '--json'], { env: env() });
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout)).toMatchObject({ failed_items: 1 });
    expect(sandbox.amplitude.requests.map((r) => r.status)).toEqual([400]);
    const lines = (await readFile(failedFile, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ position: 3, line: 7 });
  });

  it('is refused by validate outside a loop, naming the line', async () => {
    const file = path.join(dir, 'top.yaml');
    await writeFile(file, `name: top\nsteps:\n  - id: hello\n    action: core.log\n    on_error: continue\n    with: { message: hi }\n`);
    const result = await ferry(['validate', file]);
    expect(result.code).toBe(2);
    expect(result.stdout + result.stderr).toMatch(/top\.yaml:5:\d+: .*on_error: continue.*inside a loop/);
  });
});

describe('on_error: continue with --backend (the journal in Redis, no state dir)', () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.close();
  });

  it('keeps the set-aside items in the run journal, so `ferry show` lists them and `ferry retry --backend` sends only them', async () => {
    await replay();
    const poolEnv = { FERRY_BACKEND: redis.url, AMP_KEY, CI: 'true' };
    const worker = spawnFerry(['worker'], { cwd: dir, env: poolEnv });
    let err = '';
    worker.child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    try {
      while (!err.includes('joined')) await new Promise((r) => setTimeout(r, 50));
      sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10007' });
      sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10031' });
      const run = await ferry(['run', 'replay.yaml', '--json'], { cwd: dir, env: poolEnv });
      expect(run.code, run.stderr).toBe(1);
      const runId = /queued run (\S+)/.exec(run.stderr)?.[1] ?? '';
      expect(JSON.parse(run.stdout)).toMatchObject({ runId, status: 'failed', failed_items: 2 });
      expect(identified()).toHaveLength(48);
      const show = await ferry(['show', runId, '--json'], { cwd: dir, env: poolEnv });
      expect(JSON.parse(show.stdout)).toMatchObject({ status: 'failed', failed_items: 2, error: { code: 'FERRY_ITEMS_FAILED' } });
      const text = await ferry(['show', runId], { cwd: dir, env: poolEnv });
      expect(text.stdout).toContain('each_user item 7 (users.csv line 9), step amp');
      expect(existsSync(path.join(dir, '.ferry'))).toBe(false);

      sandbox.amplitude.reset();
      const retry = await ferry(['retry', runId], { cwd: dir, env: poolEnv });
      expect(retry.code, retry.stderr).toBe(0);
      expect(identified()).toEqual(['user_10007', 'user_10031']);
      const after = await ferry(['show', runId, '--json'], { cwd: dir, env: poolEnv });
      expect(JSON.parse(after.stdout)).toMatchObject({ status: 'succeeded' });
    } finally {
      worker.child.kill('SIGKILL');
      await worker.done;
    }
  }, 60_000);
});
