import { readdir, readFile, writeFile, appendFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry, spawnFerry, until } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let sandbox: Sandbox;
let dir: string;
let stateDir: string;

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: ['amp-key-0123456789abcdef'], segmentWriteKeys: ['seg-key-0123456789abcdef'] });
});
afterAll(async () => sandbox.close());
beforeEach(async () => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
  dir = await tempDir('ferry-durable-');
  stateDir = path.join(dir, 'state');
});

const env = () => ({ AMP_KEY: 'amp-key-0123456789abcdef', SEG_KEY: 'seg-key-0123456789abcdef', FERRY_STATE_DIR: stateDir });

function workflow(extraStep = '', batch = true): string {
  return `
name: durable
secrets: [AMP_KEY, SEG_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, concurrency: 8, batch: ${batch} }
  segment: { write_key: "<<secrets.SEG_KEY>>", base_url: ${sandbox.segment.url} }
retry: { attempts: 3, backoff: { initial: 5ms, max: 20ms } }
steps:
  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 8 }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: <<user.id>>, event_type: Synced }
${extraStep}
  - id: report
    action: core.log
    with: { message: "synced <<steps.each_user.output.count>>" }
`.replace(/^\n/, '');
}

/** The events of every request the emulator received from index `from` on, accepted or not. */
const sentEvents = (from = 0): { user_id: string; insert_id: string }[] =>
  sandbox.amplitude.requests.slice(from).flatMap((r) => ((r.body as { events?: { user_id: string; insert_id: string }[] }).events ?? []));

const users = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `user_${10_000 + i}` }));
const runIdOf = (stderr: string): string => /ferry retry ([0-9A-Z]{26})/.exec(stderr)?.[1] ?? '';

describe('durable runs', () => {
  it('resumes after a permanent 400 on 3 of 50 items without re-sending the 47', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow());
    await writeFile(path.join(dir, 'users.json'), JSON.stringify(users(50)));
    for (const i of [7, 21, 40]) sandbox.amplitude.inject({ kind: 'reject-user', userId: `user_${10_000 + i}` });

    const first = await ferry(['run', wf, '--input', `users=@${path.join(dir, 'users.json')}`], { env: env() });
    expect(first.code).toBe(1);
    const runId = runIdOf(first.stderr);
    expect(first.stderr.trim().split('\n').at(-1)).toBe(`resume with: ferry retry ${runId}`);
    expect(first.stderr).toMatch(/step `ev`, loop item (7|21|40): amplitude answered 400/);
    const acceptedFirst = new Set([...sandbox.amplitude.events.values()].map((e) => e.user_id as string));
    expect(acceptedFirst.size).toBeLessThanOrEqual(47);
    expect(acceptedFirst.has('user_10007')).toBe(false);

    sandbox.amplitude.clearFaults();
    const before = sandbox.amplitude.requests.length;
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(0);
    const resent = sentEvents(before).map((e) => e.user_id);
    // Only the items that never succeeded go out again: the rejected ones and any not started.
    expect(resent.filter((u) => acceptedFirst.has(u))).toEqual([]);
    expect(resent.length).toBe(50 - acceptedFirst.size);
    expect(sandbox.amplitude.events.size).toBe(50);
    expect(retry.stderr).toContain('synced 50');

    const show = JSON.parse((await ferry(['show', runId, '--json'], { env: env() })).stdout);
    expect(show).toMatchObject({ runId, status: 'succeeded', error: null });
    expect(show.steps.each_user.steps.ev.succeeded).toBe(50);
  });

  it('resumes a run killed with SIGKILL mid-loop; re-sent items carry the same insert_id', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow());
    await writeFile(path.join(dir, 'users.json'), JSON.stringify(users(2000)));
    sandbox.amplitude.setLatency(2);
    const { child, done } = spawnFerry(['run', wf, '--input', `users=@${path.join(dir, 'users.json')}`], { env: env() });
    await until(() => sandbox.amplitude.events.size >= 600);
    child.kill('SIGKILL');
    const killed = await done;
    sandbox.amplitude.setLatency(0);
    expect(killed.signal).toBe('SIGKILL');
    const [runId] = await readdir(path.join(stateDir, 'runs'));
    expect((await ferry(['runs', '--json'], { env: env() })).stdout).toContain('"status": "interrupted"');

    const before = sandbox.amplitude.requests.length;
    const retry = await ferry(['retry', runId as string], { env: env() });
    expect(retry.code).toBe(0);
    expect(sandbox.amplitude.events.size).toBe(2000);
    // Whatever went out twice went out with the same insert_id, so Amplitude kept it once.
    const byUser = new Map<string, Set<string>>();
    for (const e of sentEvents()) byUser.set(e.user_id, (byUser.get(e.user_id) ?? new Set()).add(e.insert_id));
    expect(byUser.size).toBe(2000);
    expect([...byUser.values()].every((ids) => ids.size === 1)).toBe(true);
    // The retry sends only what the killed run had not finished.
    expect(sentEvents(before).length).toBeLessThan(2000 - 500);
  });

  it('ignores a torn last journal line', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow());
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10001' });
    const first = await ferry(['run', wf, '--input', `users=${JSON.stringify(users(3))}`], { env: env() });
    const runId = runIdOf(first.stderr);
    await appendFile(path.join(stateDir, 'runs', runId, 'journal.jsonl'), '{"t":"step","id":"ev","item":[2],"sta');
    sandbox.amplitude.clearFaults();
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(0);
    expect((await ferry(['show', runId], { env: env() })).stdout).toContain('succeeded');
  });

  it('picks up a compatible change to the workflow and refuses an incompatible one', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow());
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10001' });
    const first = await ferry(['run', wf, '--input', `users=${JSON.stringify(users(3))}`], { env: env() });
    const runId = runIdOf(first.stderr);
    sandbox.amplitude.clearFaults();

    // Incompatible: the completed step `ev` is renamed.
    await writeFile(wf, workflow().replace('id: ev', 'id: event'));
    const refused = await ferry(['retry', runId], { env: env() });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('step `ev` completed in this run but is no longer in the workflow');

    // Compatible: a new step inside the loop runs for every item, including the done ones.
    await writeFile(wf, workflow(`      - id: seg
        action: segment.track
        with: { userId: <<user.id>>, event: Synced }`));
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(0);
    expect(sandbox.segment.messages.size).toBe(3);
    expect(sandbox.amplitude.events.size).toBe(3);
  });

  it('keeps secrets out of stdout, stderr and the whole state dir, even when the provider echoes the key', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow());
    const leaky = { ...env(), AMP_KEY: 'amp-WRONG-key-5ecret-value' };
    const result = await ferry(['run', wf, '--input', `users=${JSON.stringify(users(2))}`, '--json'], { env: leaky });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('Invalid API key');
    const everything = [result.stdout, result.stderr];
    const walk = async (d: string): Promise<void> => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else everything.push(await readFile(p, 'utf8'));
      }
    };
    await walk(stateDir);
    expect(everything.join('\n')).not.toContain('amp-WRONG-key-5ecret-value');
    expect(everything.join('\n')).not.toContain('seg-key-0123456789abcdef');
    expect(everything.join('\n')).toContain('[redacted]');
  });

  it('lists runs and shows one with per-step attempts', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow('', false));
    sandbox.amplitude.inject({ kind: 'status', status: 503, times: 2 });
    await ferry(['run', wf, '--input', `users=${JSON.stringify(users(4))}`], { env: env() });
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10000' });
    await ferry(['run', wf, '--input', `users=${JSON.stringify(users(1))}`], { env: env() });
    const list = await ferry(['runs'], { env: env() });
    const lines = list.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^RUN\s+WORKFLOW\s+STATUS\s+STARTED\s+DURATION\s+FAILED STEP$/);
    expect(lines[1]).toMatch(/durable\s+failed\s+.*\s+ev$/);
    expect(lines[2]).toMatch(/durable\s+succeeded\s/);
    const ok = JSON.parse((await ferry(['runs', '--json'], { env: env() })).stdout)[1].runId;
    const show = await ferry(['show', ok], { env: env() });
    expect(show.stdout).toMatch(/ev\s+4 succeeded, 0 failed, 0 skipped; 6 attempts, failures \{"503":2\}/);
  });

  it('stops on SIGTERM, records what finished, exits 143 and resumes', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow());
    await writeFile(path.join(dir, 'users.json'), JSON.stringify(users(400)));
    sandbox.amplitude.setLatency(5);
    const { child, done } = spawnFerry(['run', wf, '--input', `users=@${path.join(dir, 'users.json')}`], { env: env() });
    await until(() => sandbox.amplitude.events.size >= 50);
    child.kill('SIGTERM');
    const stopped = await done;
    sandbox.amplitude.setLatency(0);
    expect(stopped.code).toBe(143);
    const runId = runIdOf(stopped.stderr);
    expect(stopped.stderr).toContain('interrupted by SIGTERM');
    expect(sentEvents().length).toBeLessThan(400);
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(0);
    expect(sandbox.amplitude.events.size).toBe(400);
    // A graceful stop records every call that was on the wire: nothing is sent twice.
    expect(sentEvents().length).toBe(400);
  });
});

describe('file loops', () => {
  it('resume at the first unfinished row, skipping finished rows without holding their entries', async () => {
    const rows = 5000;
    await writeFile(path.join(dir, 'users.jsonl'), users(rows).map((u) => JSON.stringify(u)).join('\n'));
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow().replace('over: <<inputs.users>>', 'file: users.jsonl'));
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_13500' });
    const first = await ferry(['run', wf], { env: env() });
    expect(first.stderr).toMatch(/loop item 3500/);
    expect(first.code).toBe(1);
    const runId = runIdOf(first.stderr);
    const journal = await readFile(path.join(stateDir, 'runs', runId, 'journal.jsonl'), 'utf8');
    const marks = journal.split('\n').filter((l) => l.includes('"t":"progress"')).map((l) => JSON.parse(l).done as number);
    expect(Math.max(...marks)).toBeGreaterThanOrEqual(3000);
    expect(Math.max(...marks)).toBeLessThanOrEqual(3500);

    sandbox.amplitude.clearFaults();
    const before = sandbox.amplitude.requests.length;
    const retry = await ferry(['retry', runId, '--json'], { env: env() });
    expect(retry.code).toBe(0);
    expect(JSON.parse(retry.stdout).steps.each_user.output).toEqual({ count: rows });
    expect(retry.stderr).toContain(`synced ${rows}`);
    expect(sandbox.amplitude.events.size).toBe(rows);
    // Rows below the mark were neither sent again nor re-checked one by one.
    const resent = sentEvents(before).map((e) => Number(e.user_id.slice(5)) - 10_000);
    expect(Math.min(...resent)).toBeGreaterThanOrEqual(Math.max(...marks));
  });
});
