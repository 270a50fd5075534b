import { existsSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { githubSignature } from '../../src/server/signature.js';
import { assertBuilt, spawnServe, waitFor, type Result } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// A delivery answered 202 is durable: kill -9 of the listener right after the answer, or a
// power cut that takes its unsynced run folder with it, and the next start still runs it once.

const AMP_KEY = 'amp-key-0123456789abcdef';
const HOOK_SECRET = 'hook-secret-5f2a9c';
const API_TOKEN = 'api-token-7c1e0b5d9a';

let sandbox: Sandbox;
let root: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY] });
  root = await tempDir('ferry-serve-crash-');
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await sandbox?.close();
});

async function serve(dir: string, state: string): Promise<{ url: string; child: ChildProcess; done: Promise<Result>; stderr: () => string }> {
  const { child, done, stderr, listening } = spawnServe(['--dir', dir, '--port', '0'], { cwd: root, env: { AMP_KEY, HOOK_SECRET, FERRY_STATE_DIR: state, FERRY_API_TOKEN: API_TOKEN } });
  children.push(child);
  return { url: await listening, child, done, stderr };
}

async function deliver(url: string, id: string, user: string): Promise<{ status: number; body: { runId: string; duplicate?: boolean } }> {
  const body = JSON.stringify({ user_id: user });
  const res = await fetch(`${url}/hooks/signups`, { method: 'POST', body, headers: { 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, body), 'X-GitHub-Delivery': id } });
  return { status: res.status, body: (await res.json()) as { runId: string; duplicate?: boolean } };
}

const statusOf = async (url: string, runId: string) => ((await (await fetch(`${url}/runs/${runId}`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json()) as { status?: string }).status;

describe('ferry serve killed with SIGKILL right after a 202', () => {
  it('runs the accepted deliveries at the next start, also those whose run folder was lost or torn, and dedupes them by delivery id', async () => {
    const dir = path.join(root, 'wf');
    const state = path.join(root, 'state');
    await mkdir(dir);
    await writeFile(
      path.join(dir, 'signups.yaml'),
      `name: signups
triggers:
  - type: webhook
    path: /hooks/signups
    secret: <<secrets.HOOK_SECRET>>
    inputs: { user_id: { type: string } }
secrets: [AMP_KEY, HOOK_SECRET]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url} }
steps:
  - id: ev
    action: amplitude.send_event
    with: { user_id: <<inputs.user_id>>, event_type: Signed Up }
`,
    );
    // Every call hangs until after the kill: no run finishes in the first process.
    sandbox.amplitude.setLatency(60_000);
    const s1 = await serve('wf', state);
    const kept = await deliver(s1.url, 'crash-kept', 'crash_kept');
    const lost = await deliver(s1.url, 'crash-lost', 'crash_lost');
    const torn = await deliver(s1.url, 'crash-torn', 'crash_torn');
    // A run's folder is written when it starts: all three are running (their calls hang) before the kill.
    for (const run of [kept, lost, torn]) await waitFor(async () => existsSync(path.join(state, 'runs', run.body.runId, 'workflow.yaml')), `run ${run.body.runId} to start`, 15_000, 10);
    s1.child.kill('SIGKILL');
    expect([kept.status, lost.status, torn.status]).toEqual([202, 202, 202]);
    expect((await s1.done).signal).toBe('SIGKILL');
    sandbox.amplitude.setLatency(0);

    // What a power cut may do to what was written but not synced before the 202.
    await rm(path.join(state, 'runs', lost.body.runId), { recursive: true });
    await truncate(path.join(state, 'runs', torn.body.runId, 'journal.jsonl'), 7);

    const s2 = await serve('wf', state);
    expect(s2.stderr()).toContain(`restored runs ${[lost.body.runId, torn.body.runId].sort().join(', ')} from the accepted log`);
    for (const run of [kept, lost, torn]) await waitFor(async () => (await statusOf(s2.url, run.body.runId)) === 'succeeded', `run ${run.body.runId} to succeed`, 15_000, 10);
    for (const user of ['crash_kept', 'crash_lost', 'crash_torn']) expect([...sandbox.amplitude.events.keys()].some((k) => k.startsWith(user))).toBe(true);
    // Each delivery id still names its run: a redelivery is a duplicate, not a second run.
    expect(await deliver(s2.url, 'crash-lost', 'crash_lost')).toEqual({ status: 200, body: { runId: lost.body.runId, duplicate: true } });
    expect(await deliver(s2.url, 'crash-kept', 'crash_kept')).toEqual({ status: 200, body: { runId: kept.body.runId, duplicate: true } });
    expect((await readdir(path.join(state, 'runs'))).sort()).toEqual([kept, lost, torn].map((r) => r.body.runId).sort());
    s2.child.kill('SIGTERM');
    expect((await s2.done).code).toBe(0);
    // Once their folders were synced, the log's segments went.
    expect(await readdir(path.join(state, 'accepted'))).toEqual([]);
  });
});
