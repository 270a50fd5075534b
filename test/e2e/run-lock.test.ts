import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, spawnFerry } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// A recording server: in `fail` mode every call gets a 400 (the first run stops at item 0);
// in `hold` mode answers wait until the test releases them, so a racing second runner has
// every chance to send while the first one is mid-run.
let server: Awaited<ReturnType<typeof startServer>>;
let mode: 'fail' | 'hold' | 'ok' = 'fail';
let held: ServerResponse[] = [];
let dir: string;
let stateDir: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  assertBuilt();
  server = await startServer((_req, res) => {
    if (mode === 'fail') return json(res, 400, { error: 'not yet' });
    if (mode === 'hold') return void held.push(res);
    return json(res, 200, { ok: true });
  });
});
afterAll(async () => server.close());
beforeEach(async () => {
  mode = 'fail';
  held = [];
  server.seen.length = 0;
  dir = await tempDir('ferry-lock-');
  stateDir = path.join(dir, 'state');
});
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4'];
const env = () => ({ FERRY_STATE_DIR: stateDir });
const runIdOf = (stderr: string): string => /ferry retry ([0-9A-Z]{26})/.exec(stderr)?.[1] ?? '';
const journalFile = (runId: string) => path.join(stateDir, 'runs', runId, 'journal.jsonl');
const lockFile = (runId: string) => path.join(stateDir, 'runs', runId, 'lock');

/** A run that failed on its first item, ready to be retried. */
async function failedRun(): Promise<string> {
  const wf = path.join(dir, 'wf.yaml');
  await writeFile(
    wf,
    `name: locked
retry: { attempts: 1 }
steps:
  - id: each
    loop: { over: ${JSON.stringify(KEYS)}, as: key, concurrency: 1 }
    steps:
      - id: post
        action: http.request
        with: { method: POST, url: "${server.url}/items", json: { key: <<key>> } }
`,
  );
  const first = await ferry(['run', wf], { env: env() });
  expect(first.code).toBe(1);
  server.seen.length = 0;
  return runIdOf(first.stderr);
}

/** The journal as a SIGKILLed run leaves it: no `end` entry. */
async function dropEnd(runId: string): Promise<void> {
  const lines = (await readFile(journalFile(runId), 'utf8')).split('\n').filter((l) => l !== '' && !l.startsWith('{"t":"end"'));
  await writeFile(journalFile(runId), `${lines.join('\n')}\n`);
}

/** Sets the pid of the journal's `run` entry, as if that process had run it. */
async function setJournalPid(runId: string, pid: number): Promise<void> {
  const [first, ...rest] = (await readFile(journalFile(runId), 'utf8')).split('\n');
  await writeFile(journalFile(runId), [JSON.stringify({ ...(JSON.parse(first as string) as object), pid }), ...rest].join('\n'));
}

const sentKeys = () => server.seen.map((r) => (JSON.parse(r.body) as { key: string }).key);

async function statusOf(runId: string): Promise<string> {
  const list = await ferry(['runs', '--json'], { env: env() });
  return (JSON.parse(list.stdout) as { runId: string; status: string }[]).find((r) => r.runId === runId)?.status ?? 'missing';
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const dead = spawn('true');
  await new Promise((resolve) => dead.on('exit', resolve));
  return dead.pid!;
}

function procStart(pid: number): Promise<number> {
  return readFile(`/proc/${pid}/stat`, 'utf8').then((stat) => Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]));
}

describe('one run, one runner', () => {
  /** Starts two retries of `runId` at once; answers are held until one has given up, or both send (the bug). */
  async function race(runId: string): Promise<void> {
    mode = 'hold';
    const a = spawnFerry(['retry', runId], { env: env() });
    const b = spawnFerry(['retry', runId], { env: env() });
    children.push(a.child, b.child);
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (server.seen.length >= 2 || a.child.exitCode !== null || b.child.exitCode !== null) {
          clearInterval(timer);
          resolve();
        }
      }, 5);
    });
    mode = 'ok';
    for (const res of held.splice(0)) json(res, 200, { ok: true });
    const results = await Promise.all([a.done, b.done]);

    expect(results.map((r) => r.code).sort()).toEqual([0, 2]);
    const loser = results.find((r) => r.code === 2)!;
    const winner = results.find((r) => r.code === 0)!;
    expect(loser.stderr).toMatch(new RegExp(`ferry retry: run ${runId} is already being run by pid \\d+ since \\d{4}-\\d\\d-\\d\\dT`));
    expect(loser.stderr).toContain(`pid ${(winner === results[0] ? a : b).child.pid}`);
    expect(sentKeys().sort()).toEqual(KEYS);
    expect(existsSync(lockFile(runId))).toBe(false);
  }

  it('lets exactly one of two retries started together send; the other exits 2 naming the holder', async () => {
    await race(await failedRun());
  });

  it('lets exactly one of two retries that find the same stale lock take it over', async () => {
    const runId = await failedRun();
    await dropEnd(runId);
    await writeFile(lockFile(runId), JSON.stringify({ pid: await deadPid(), host: hostname(), startedAt: '2020-01-01T00:00:00.000Z', procStart: 1, token: 'gone' }));
    await race(runId);
  });

  it('takes over a lock left by a process that is gone, and lists that run as interrupted', async () => {
    const runId = await failedRun();
    await dropEnd(runId);
    const dead = await deadPid();
    await writeFile(lockFile(runId), JSON.stringify({ pid: dead, host: hostname(), startedAt: '2020-01-01T00:00:00.000Z', procStart: 1, token: 'gone' }));
    await setJournalPid(runId, dead);

    expect(await statusOf(runId)).toBe('interrupted');
    mode = 'ok';
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(0);
    expect(sentKeys().sort()).toEqual(KEYS);
    expect(existsSync(lockFile(runId))).toBe(false);
  });

  it('takes over a lock whose pid now belongs to another program, and never shows it as running', async () => {
    const runId = await failedRun();
    await dropEnd(runId);
    const other = spawn('sleep', ['30']);
    children.push(other);
    const realStart = await procStart(other.pid!);
    // The pid is alive, but its start time is not the one the lock recorded: a reused pid.
    await writeFile(lockFile(runId), JSON.stringify({ pid: other.pid, host: hostname(), startedAt: '2020-01-01T00:00:00.000Z', procStart: realStart - 100, token: 'reused' }));
    await setJournalPid(runId, other.pid!);

    expect(await statusOf(runId)).toBe('interrupted');
    mode = 'ok';
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(0);
    expect(sentKeys().sort()).toEqual(KEYS);
  });

  it('refuses a run whose lock a live process holds, and lists it as running', async () => {
    const runId = await failedRun();
    await dropEnd(runId);
    // This test process stands in for a live runner: right pid, right start time.
    await writeFile(lockFile(runId), JSON.stringify({ pid: process.pid, host: hostname(), startedAt: '2024-05-06T07:08:09.000Z', procStart: await procStart(process.pid), token: 'live' }));

    expect(await statusOf(runId)).toBe('running');
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(2);
    expect(retry.stderr).toContain(`run ${runId} is already being run by pid ${process.pid} since 2024-05-06T07:08:09.000Z`);
    expect(server.seen).toHaveLength(0);
    // The holder's lock is left alone.
    expect(JSON.parse(await readFile(lockFile(runId), 'utf8'))).toMatchObject({ token: 'live' });
  });

  it('refuses to retry a run a live listener recorded and still holds queued, unlocked, for a free slot', async () => {
    const runId = await failedRun();
    await dropEnd(runId);
    // As `ferry serve` leaves an accepted run waiting: its pid in the run entry, no lock yet.
    await setJournalPid(runId, process.pid);
    const retry = await ferry(['retry', runId], { env: env() });
    expect(retry.code).toBe(2);
    expect(retry.stderr).toContain(`run ${runId} is still running`);
    expect(server.seen).toHaveLength(0);
    expect(existsSync(lockFile(runId))).toBe(false);
  });
});

