import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { readJournal, type JournalEntry } from '../../src/store/journal.js';
import { assertBuilt, ferry, spawnFerry, until } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const KEY = 'amp-key-0123456789abcdef';
let sandbox: Sandbox;
let dir: string;
beforeAll(async () => {
  assertBuilt();
  // A little latency, so that requests are on the wire when the signal comes.
  sandbox = await startSandbox({ amplitudeApiKeys: [KEY], latencyMs: 20 });
  dir = await tempDir('ferry-batched-stop-');
});
afterAll(async () => sandbox.close());

const env = () => ({ AMP_KEY: KEY, FERRY_STATE_DIR: path.join(dir, 'state') });
const runIdOf = (stderr: string): string => /ferry retry ([0-9A-Z]{26})/.exec(stderr)?.[1] ?? '';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const insertIds = (from: number) => sandbox.amplitude.requests.slice(from).flatMap((r) => ((r.body as { events?: { insert_id: string }[] }).events ?? []).map((e) => e.insert_id));

async function journal(runId: string): Promise<JournalEntry[]> {
  return (await readJournal(path.join(dir, 'state', 'runs', runId, 'journal.jsonl'))).entries;
}

describe('SIGTERM during a batched loop that meets 503s', () => {
  it('sends nothing after the stop, exits within 2 s with 143, and `ferry retry` stores every item exactly once', async () => {
    const wf = path.join(dir, 'wf.yaml');
    const users = Array.from({ length: 200 }, (_, i) => ({ id: `user_${10_000 + i}` }));
    await writeFile(path.join(dir, 'users.json'), JSON.stringify(users));
    await writeFile(wf, `
name: batched-stop
secrets: [AMP_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, concurrency: 4, batch: { max_items: 10 } }
retry: { attempts: 10, backoff: { initial: 50ms, factor: 2, max: 400ms } }
steps:
  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 50 }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: <<user.id>>, event_type: Synced }
`.replace(/^\n/, ''));
    // Seven requests in ten answer 503 (nothing stored): the loop is busy retrying batches.
    sandbox.amplitude.inject({ kind: 'random', rate503: 0.7, seed: 7 });

    const { child, done } = spawnFerry(['run', wf, '--input', `users=@${path.join(dir, 'users.json')}`], { env: env(), cwd: dir });
    await until(() => sandbox.amplitude.requests.length > 0);
    await sleep(300);
    const killed = Date.now();
    child.kill('SIGTERM');
    const stopped = await done;
    const exited = Date.now();
    expect(stopped.code).toBe(143);
    expect(exited - killed).toBeLessThan(2000);
    expect(stopped.stderr).toContain('run interrupted by SIGTERM');

    // No request leaves after the signal, batched retries included: allowing the child a
    // moment to see the signal, nothing arrives later (before the stop's own handling, a
    // batched loop went on retrying for about a second here). Nothing arrives once the
    // process is gone either: no retry was left armed.
    const atExit = sandbox.amplitude.requests.length;
    expect(sandbox.amplitude.requests.map((r) => r.at - killed).filter((ms) => ms > 200)).toEqual([]);
    expect(sandbox.amplitude.requests.every((r) => r.at <= exited)).toBe(true);
    await sleep(500);
    expect(sandbox.amplitude.requests.length).toBe(atExit);

    // The journal says where to resume: each item started is either stored and succeeded, or
    // interrupted unsent; the stop was recorded.
    const runId = runIdOf(stopped.stderr);
    const entries = await journal(runId);
    const items = entries.filter((e): e is Extract<JournalEntry, { t: 'step' }> => e.t === 'step' && e.id === 'ev');
    const succeeded = items.filter((e) => e.status === 'succeeded');
    const interrupted = items.filter((e) => e.status === 'failed');
    expect(succeeded.length).toBeLessThan(200);
    expect(succeeded.length).toBe(sandbox.amplitude.events.size);
    expect(interrupted.length).toBeGreaterThan(0);
    expect(interrupted.every((e) => e.error?.code === 'FERRY_ABORTED' && e.error.message.startsWith(`step \`ev\`, loop item ${e.item[0]}: `))).toBe(true);
    expect(entries.at(-1)).toMatchObject({ t: 'end', status: 'failed', interrupted: 'SIGTERM' });

    sandbox.amplitude.clearFaults();
    const before = sandbox.amplitude.requests.length;
    const retry = await ferry(['retry', runId], { env: env(), cwd: dir });
    expect(retry.code).toBe(0);
    // Only the items not stored go out again, and every insert_id is stored once.
    expect(insertIds(before)).toHaveLength(200 - succeeded.length);
    expect(sandbox.amplitude.events.size).toBe(200);
    expect(sandbox.amplitude.duplicateInsertIds).toBe(0);
  }, 30_000);
});
