import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, spawnFerry, until } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;
let close: (() => Promise<void>) | undefined;
beforeAll(() => assertBuilt());
beforeEach(async () => {
  dir = await tempDir('ferry-stall-');
});
afterEach(async () => {
  await close?.();
  close = undefined;
});

const env = () => ({ FERRY_STATE_DIR: path.join(dir, 'state') });
const runIdOf = (stderr: string): string => /ferry retry ([0-9A-Z]{26})/.exec(stderr)?.[1] ?? '';

/** A provider on 127.0.0.1 that answers 429 with `retryAfter` until `recover()`, then 200. */
async function provider(retryAfter: string) {
  let healthy = false;
  const server = await startServer((_req, res) => (healthy ? json(res, 200, { success: true }) : json(res, 429, { error: 'slow down' }, { 'retry-after': retryAfter })));
  close = server.close;
  return { ...server, recover: () => void (healthy = true) };
}

async function workflowFile(text: string): Promise<string> {
  const file = path.join(dir, 'wf.yaml');
  await writeFile(file, text.replace(/^\n/, ''));
  return file;
}

const single = (url: string) => `
name: stall
retry: { attempts: 3, backoff: { initial: 5ms, max: 10ms } }
steps:
  - id: get
    action: http.request
    with: { url: "${url}/x" }
`;

describe('a provider that asks to wait too long', () => {
  it('fails the run at once with a message naming the provider and the wait, and `ferry retry` resumes it', async () => {
    const server = await provider('1000000000');
    const wf = await workflowFile(single(server.url));
    const first = await ferry(['run', wf], { env: env(), cwd: dir });
    expect(first.code).toBe(1);
    expect(first.stderr).toContain('step `get`: http asked to wait 277777h 46m (Retry-After: 1000000000); longer than the 15m this workflow allows (providers.http.max_wait)');
    expect(first.stderr).not.toContain('TimeoutOverflowWarning');
    expect(server.seen).toHaveLength(1);

    server.recover();
    const retry = await ferry(['retry', runIdOf(first.stderr)], { env: env(), cwd: dir });
    expect(retry.code).toBe(0);
    expect(server.seen).toHaveLength(2);
  });
});

describe('SIGTERM while a run waits for a provider', () => {
  /** Starts `ferry run`, sends SIGTERM once the provider pause shows, and returns how it ended. */
  async function stopWhilePaused(wf: string) {
    const { child, done } = spawnFerry(['run', wf], { env: env(), cwd: dir });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    await until(() => stderr.includes('paused for'));
    const killed = Date.now();
    child.kill('SIGTERM');
    const result = await done;
    return { ...result, afterKillMs: Date.now() - killed };
  }

  it('ends a Retry-After: 600 wait at once, exits 143, and `ferry retry` completes the run', async () => {
    const server = await provider('600');
    const wf = await workflowFile(single(server.url));
    const stopped = await stopWhilePaused(wf);
    expect(stopped.code).toBe(143);
    expect(stopped.afterKillMs).toBeLessThan(2000);
    expect(stopped.stderr).toContain('run interrupted by SIGTERM');
    expect(stopped.stderr).toContain('resume with: ferry retry');
    expect(stopped.stderr).not.toContain('TimeoutOverflowWarning');

    server.recover();
    const retry = await ferry(['retry', runIdOf(stopped.stderr)], { env: env(), cwd: dir });
    expect(retry.code).toBe(0);
    expect(server.seen).toHaveLength(2);
  }, 20_000);

  it('ends the wait of a batched segment.track loop at once, and `ferry retry` sends every item', async () => {
    const server = await provider('600');
    const wf = await workflowFile(`
name: stall
providers: { segment: { write_key: seg-key, base_url: "${server.url}" } }
steps:
  - id: each
    loop: { over: [u_1, u_2, u_3, u_4, u_5, u_6], as: id, concurrency: 6 }
    steps:
      - { id: track, action: segment.track, with: { userId: <<id>>, event: Signed } }
`);
    const stopped = await stopWhilePaused(wf);
    expect(stopped.code).toBe(143);
    expect(stopped.afterKillMs).toBeLessThan(2000);
    expect(stopped.stderr).toContain('resume with: ferry retry');
    expect(server.seen).toHaveLength(1);

    server.recover();
    const retry = await ferry(['retry', runIdOf(stopped.stderr)], { env: env(), cwd: dir });
    expect(retry.code).toBe(0);
    const users = server.seen.slice(1).flatMap((r) => ((JSON.parse(r.body) as { batch?: { userId: string }[] }).batch ?? [JSON.parse(r.body) as { userId: string }]).map((m) => m.userId));
    expect(users.sort()).toEqual(['u_1', 'u_2', 'u_3', 'u_4', 'u_5', 'u_6']);
  }, 20_000);
});
