import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, spawnFerry, until } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// A server that holds every answer until the test releases it, so a run can be caught mid-way.
let server: Awaited<ReturnType<typeof startServer>>;
let held: ServerResponse[] = [];
let failing = false;
let dir: string;
let stateDir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  assertBuilt();
  server = await startServer((_req, res) => {
    if (failing) return json(res, 400, { error: 'no' });
    held.push(res);
  });
});
afterAll(async () => server.close());
beforeEach(async () => {
  held = [];
  failing = false;
  dir = await tempDir('ferry-records-');
  stateDir = path.join(dir, 'state');
});
afterEach(() => {
  for (const res of held.splice(0)) json(res, 200, {});
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

const env = () => ({ FERRY_STATE_DIR: stateDir });
const recordOf = async (runId: string) => JSON.parse(await readFile(path.join(stateDir, 'runs', runId, 'run.json'), 'utf8')) as Record<string, unknown>;
const runIds = async () => (existsSync(path.join(stateDir, 'runs')) ? (await readdir(path.join(stateDir, 'runs'))).sort() : []);
const listed = async (...args: string[]) => JSON.parse((await ferry(['runs', '--json', ...args], { env: env() })).stdout) as { runId: string; workflow: string; status: string; problem?: string }[];

async function workflow(name: string): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, `name: ${name}\nretry: { attempts: 1 }\nsteps:\n  - id: call\n    action: http.request\n    with: { method: POST, url: "${server.url}/${name}" }\n  - id: after\n    action: core.log\n    with: { message: done }\n`);
  return file;
}

describe('the run record (run.json)', () => {
  it('is written owner-only when the run starts and again when it ends, in step with the journal', async () => {
    const run = spawnFerry(['run', await workflow('held')], { env: env() });
    children.push(run.child);
    await until(() => held.length === 1);
    const [runId] = await runIds();
    const started = await recordOf(runId!);
    expect(started).toMatchObject({ runId, workflow: 'held', status: 'running', endedAt: null, pid: run.child.pid, error: null, mode: 'live' });
    expect(((await stat(path.join(stateDir, 'runs', runId!, 'run.json'))).mode & 0o777).toString(8)).toBe('600');
    expect((await listed())[0]).toMatchObject({ runId, status: 'running' });

    json(held.shift()!, 200, {});
    expect((await run.done).code).toBe(0);
    const ended = await recordOf(runId!);
    expect(ended).toMatchObject({ runId, status: 'succeeded', error: null, steps: { call: 'succeeded', after: 'succeeded' }, startedAt: started.startedAt });
    expect(ended.durationMs).toBeGreaterThanOrEqual(0);
    expect(ended.journalBytes).toBe((await stat(path.join(stateDir, 'runs', runId!, 'journal.jsonl'))).size);
  });

  it('says running until its runner is killed; then the run is listed as interrupted, and a retry ends it', async () => {
    const run = spawnFerry(['run', await workflow('killed')], { env: env() });
    children.push(run.child);
    await until(() => held.length === 1);
    const [runId] = await runIds();
    run.child.kill('SIGKILL');
    await run.done;
    expect(await recordOf(runId!)).toMatchObject({ status: 'running' });
    // The lock names a process that is gone: stale, so the run is interrupted, not running.
    expect((await listed())[0]).toMatchObject({ runId, status: 'interrupted' });

    const retry = spawnFerry(['retry', runId!], { env: env() });
    children.push(retry.child);
    await until(() => held.length === 2);
    expect(await recordOf(runId!)).toMatchObject({ status: 'running', pid: retry.child.pid });
    json(held.pop()!, 200, {});
    expect((await retry.done).code).toBe(0);
    expect(await recordOf(runId!)).toMatchObject({ status: 'succeeded', steps: { call: 'succeeded', after: 'succeeded' } });
    expect((await listed())[0]).toMatchObject({ runId, status: 'succeeded' });
  });
});

describe('ferry runs', () => {
  /** Three finished runs: a failed `alpha`, a succeeded `beta`, a failed `alpha`, oldest first. */
  async function threeRuns(): Promise<string[]> {
    failing = true;
    await ferry(['run', await workflow('alpha')], { env: env() });
    failing = false;
    const beta = ferry(['run', await workflow('beta')], { env: env() });
    await until(() => held.length === 1);
    json(held.shift()!, 200, {});
    expect((await beta).code).toBe(0);
    failing = true;
    await ferry(['run', await workflow('alpha')], { env: env() });
    return runIds();
  }

  it('lists runs from their records, without reading their journals', async () => {
    const ids = await threeRuns();
    // A record that says something else than its journal, at the journal's size: only the record is read.
    const file = path.join(stateDir, 'runs', ids[1]!, 'run.json');
    await writeFile(file, (await readFile(file, 'utf8')).replace('"workflow":"beta"', '"workflow":"from-the-record"'));
    expect((await listed()).map((r) => [r.runId, r.workflow, r.status])).toEqual([
      [ids[2], 'alpha', 'failed'],
      [ids[1], 'from-the-record', 'succeeded'],
      [ids[0], 'alpha', 'failed'],
    ]);
  });

  it('filters by status and workflow, and stops at --limit', async () => {
    const ids = await threeRuns();
    expect((await listed('--status', 'failed')).map((r) => r.runId)).toEqual([ids[2], ids[0]]);
    expect((await listed('--workflow', 'beta')).map((r) => r.runId)).toEqual([ids[1]]);
    expect((await listed('--workflow', 'alpha', '--limit', '1')).map((r) => r.runId)).toEqual([ids[2]]);
    expect((await listed('--limit', '2')).map((r) => r.runId)).toEqual([ids[2], ids[1]]);
    const bad = await ferry(['runs', '--status', 'done'], { env: env() });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('Expected `--status` to be one of running, succeeded, failed, interrupted, corrupt, got `done`');
    expect((await ferry(['runs', '--limit', '0'], { env: env() })).stderr).toContain('Expected `--limit` to be a positive integer, got `0`');
  });

  it('reads a run without a record (an older ferry) or with an outdated one from its journal, and writes its record', async () => {
    const ids = await threeRuns();
    await rm(path.join(stateDir, 'runs', ids[0]!, 'run.json'));
    // A journal that grew after its record was written: the record is out of date.
    const journal = path.join(stateDir, 'runs', ids[1]!, 'journal.jsonl');
    await writeFile(journal, `${await readFile(journal, 'utf8')}{"t":"step","id":"ca`);
    const list = await listed();
    expect(list.find((r) => r.runId === ids[0])).toMatchObject({ workflow: 'alpha', status: 'failed' });
    expect(list.find((r) => r.runId === ids[1])).toMatchObject({ workflow: 'beta', status: 'succeeded', problem: '1 unreadable journal line' });
    expect(await recordOf(ids[0]!)).toMatchObject({ runId: ids[0], workflow: 'alpha', status: 'failed', steps: { call: 'failed' } });
    expect(await recordOf(ids[1]!)).toMatchObject({ status: 'succeeded', skipped: 1, journalBytes: (await stat(journal)).size });
  });
});

describe('ferry show of a large run', () => {
  it('shows a 200,000-item run whose failed items were retried, from its journal', async () => {
    const runId = '01JBXGR0N00000000000000000';
    const folder = path.join(stateDir, 'runs', runId);
    await mkdir(folder, { recursive: true });
    const items = 200_000;
    const lines: string[] = [
      JSON.stringify({ t: 'run', v: 1, runId, workflow: 'big', file: path.join(dir, 'big.yaml'), startedAt: '2025-01-01T00:00:00.000Z', pid: 1, mode: 'live', inputs: {}, trigger: { type: 'manual' }, shape: [{ id: 'each', steps: [{ id: 'track' }] }] }),
      JSON.stringify({ t: 'source', id: 'each', item: [], path: path.join(dir, 'rows.jsonl'), size: 1, mtimeMs: 1, hash: 'h' }),
    ];
    const ok = { calls: 1, attempts: 1, failures: {}, waitedMs: 0 };
    for (let i = 0; i < items; i++) {
      if (i % 1000 === 7) lines.push(JSON.stringify({ t: 'step', id: 'track', item: [i], status: 'failed', output: null, calls: { calls: 1, attempts: 5, failures: { 503: 5 }, waitedMs: 100 }, error: { step: 'track', item: i, message: 'HTTP 503' }, ms: 1 }));
      else lines.push(JSON.stringify({ t: 'step', id: 'track', item: [i], status: 'succeeded', output: null, calls: ok, ms: 1 }));
      if (i % 1000 === 999) lines.push(JSON.stringify({ t: 'progress', id: 'each', item: [], done: i - 992 }));
    }
    lines.push(JSON.stringify({ t: 'step', id: 'each', item: [], status: 'failed', output: { count: items }, ms: 9, error: { step: 'track', item: 7, message: 'HTTP 503' } }));
    lines.push(JSON.stringify({ t: 'end', status: 'failed', at: '2025-01-01T00:10:00.000Z', ms: 600_000, error: { step: 'track', item: 7, message: 'HTTP 503' } }));
    // The retry: every failed item succeeds, except the last one.
    lines.push(JSON.stringify({ t: 'resume', at: '2025-01-02T00:00:00.000Z', pid: 2 }));
    for (let i = 7; i < items; i += 1000) {
      lines.push(JSON.stringify({ t: 'step', id: 'track', item: [i], status: i === 199_007 ? 'failed' : 'succeeded', output: null, calls: i === 199_007 ? { calls: 1, attempts: 2, failures: { 400: 2 }, waitedMs: 0 } : ok, ms: 1 }));
    }
    lines.push(JSON.stringify({ t: 'step', id: 'each', item: [], status: 'failed', output: { count: items }, ms: 9 }));
    lines.push(JSON.stringify({ t: 'end', status: 'failed', at: '2025-01-02T00:01:00.000Z', ms: 60_000, error: { step: 'track', item: 199_007, message: 'HTTP 400' } }));
    await writeFile(path.join(folder, 'journal.jsonl'), `${lines.join('\n')}\n`);

    const show = await ferry(['show', runId, '--json'], { env: env() });
    expect(show.stderr).toBe('');
    expect(show.code).toBe(0);
    const summary = JSON.parse(show.stdout) as { status: string; error: { item: number }; steps: Record<string, { status: string; steps?: Record<string, unknown> }> };
    expect(summary).toMatchObject({ runId, workflow: 'big', status: 'failed', state: 'failed', error: { step: 'track', item: 199_007 }, durationMs: 86_460_000 });
    expect(summary.steps.each?.steps?.track).toEqual({ succeeded: items - 1, failed: 1, skipped: 0, calls: { calls: items, attempts: items + 1, failures: { 400: 2 }, waitedMs: 0 } });
    const text = await ferry(['show', runId], { env: env() });
    expect(text.stdout).toContain(`track              ${items - 1} succeeded, 1 failed, 0 skipped; ${items + 1} attempts, failures {"400":2}`);
  });
});
