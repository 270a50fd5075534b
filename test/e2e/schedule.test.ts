import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openBackend } from '../../src/backend/connection.js';
import { RedisRunStore } from '../../src/backend/run-store.js';
import { assertBuilt, ferry, spawnFerry, waitFor } from '../helpers/cli.js';
import { startRedis } from '../helpers/redis.js';
import { startServer } from '../helpers/server.js';

// `ferry serve` firing schedule triggers in real processes: 6-field (seconds) expressions
// keep these tests to a few seconds each.

type Child = ReturnType<typeof spawnFerry>;

let root: string;
const children: Child[] = [];

beforeAll(() => {
  assertBuilt();
  root = mkdtempSync(path.join(tmpdir(), 'ferry-schedule-'));
});
afterEach(async () => {
  await Promise.all(
    children.splice(0).map(async (c) => {
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
      await c.done;
    }),
  );
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

function folder(name: string, files: Record<string, string>): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, text] of Object.entries(files)) writeFileSync(path.join(dir, file), text);
  return dir;
}

function serve(dir: string, env: Record<string, string>, extra: string[] = []): Child {
  const child = spawnFerry(['serve', '--dir', dir, '--port', '0', ...extra], { cwd: root, env });
  children.push(child);
  return child;
}

const count = (text: string, pattern: RegExp): number => [...text.matchAll(new RegExp(pattern.source, 'g'))].length;
const STARTED = /tick (\S+) of (\S+): run (\w+)/g;

const logWorkflow = (name: string, cron: string): string => `name: ${name}
triggers:
  - type: schedule
    cron: "${cron}"
steps:
  - id: hello
    action: core.log
    with: { message: "<<trigger.type>> at <<trigger.scheduled_at>>" }
`;

const slowWorkflow = (name: string, url: string): string => `name: ${name}
triggers:
  - type: schedule
    cron: "*/1 * * * * *"
steps:
  - id: slow
    action: http.request
    with: { method: GET, url: "${url}/slow" }
  - id: after
    action: core.log
    with: { message: "done <<trigger.scheduled_at>>" }
`;

/** A server that answers every request after 2.5 s: a run calling it outlasts two ticks. */
async function slowServer(): Promise<Awaited<ReturnType<typeof startServer>>> {
  return startServer((_req, res) => {
    setTimeout(() => res.end('{}'), 2500);
  });
}

describe('ferry validate of schedule triggers', () => {
  it('reports a bad cron and a bad time zone at their file:line:col and exits 2', async () => {
    const dir = folder('validate', {
      'nightly.yaml': `name: nightly
triggers:
  - type: schedule
    cron: "17 3 * * *"
  - type: schedule
    cron: "61 * * * *"
    timezone: Europe/Berln
steps:
  - id: hello
    action: core.log
    with: { message: hi }
`,
    });
    const result = await ferry(['validate', 'nightly.yaml'], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stdout).toContain('nightly.yaml:6:11: cron `61 * * * *`: minute 61 is out of range 0-59');
    expect(result.stdout).toContain('nightly.yaml:7:15: timezone `Europe/Berln` is not an IANA time zone (did you mean Europe/Berlin?)');
    const github = await ferry(['validate', '--format', 'github', 'nightly.yaml'], { cwd: dir });
    expect(github.stdout).toContain('::error file=nightly.yaml,line=6,col=11::');
  });
});

describe('ferry serve fires schedule triggers', () => {
  it('with only a schedule, prints the next tick, starts a run per tick with trigger.scheduled_at, and stops at once on SIGTERM', async () => {
    const dir = folder('only-schedule', { 'tick.yaml': logWorkflow('tick', '*/1 * * * * *'), 'berlin.yaml': logWorkflow('berlin', '17 3 * * *').replace('cron: "17 3 * * *"', 'cron: "17 3 * * *"\n    timezone: Europe/Berlin') });
    const stateDir = path.join(root, 'only-schedule-state');
    const child = serve(dir, { FERRY_STATE_DIR: stateDir });
    await waitFor(() => count(child.err(), STARTED) >= 3, 'three ticks');
    child.child.kill('SIGTERM');
    const done = await child.done;
    expect(done.code).toBe(0);
    const err = child.err();
    expect(err).toMatch(/ferry serve: 2 scheduled workflows from /);
    expect(err).toMatch(/schedule tick +"\*\/1 \* \* \* \* \*" UTC +next \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z/);
    // 03:17 in Berlin is 01:17 or 02:17 UTC, depending on summer time.
    expect(err).toMatch(/schedule berlin +"17 3 \* \* \*" Europe\/Berlin +next \d{4}-\d\d-\d\dT0[12]:17:00\.000Z \(\d{4}-\d\d-\d\d 03:17:00 Europe\/Berlin\)/);
    // Nothing starts after the stop.
    const stopAt = err.indexOf('SIGTERM');
    expect(stopAt).toBeGreaterThan(0);
    expect(err.slice(stopAt)).not.toMatch(/tick \S+ of/);

    const started = [...err.matchAll(STARTED)].map((m) => ({ at: m[1] as string, runId: m[3] as string }));
    expect(new Set(started.map((s) => s.at)).size).toBe(started.length);
    for (const { at, runId } of started) {
      expect(at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
      // The run's own log line reads the tick from its template context.
      expect(err).toContain(`[${runId} hello] schedule at ${at}`);
    }
    const runs = JSON.parse((await ferry(['runs', '--json', '--state-dir', stateDir], { cwd: root })).stdout) as { runId: string; workflow: string; status: string }[];
    expect(runs.map((r) => r.runId).sort()).toEqual(started.map((s) => s.runId).sort());
    expect(runs.every((r) => r.workflow === 'tick' && r.status === 'succeeded')).toBe(true);
  });

  it('refuses a folder with neither a webhook nor a schedule trigger, saying so', async () => {
    const dir = folder('manual-only', { 'hand.yaml': logWorkflow('hand', '* * * * *').replace(/triggers:\n.*\n.*\n/, 'triggers:\n  - type: manual\n') });
    const result = await ferry(['serve', '--dir', dir, '--port', '0'], { cwd: root, env: { FERRY_STATE_DIR: path.join(root, 'manual-only-state') } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('has a webhook or schedule trigger; nothing to serve');
  });

  it('skips ticks while the previous run still runs, and resumes an unfinished scheduled run at the next start', async () => {
    const server = await slowServer();
    try {
      const dir = folder('slow', { 'slow.yaml': slowWorkflow('slow', server.url) });
      const stateDir = path.join(root, 'slow-state');
      const first = serve(dir, { FERRY_STATE_DIR: stateDir });
      await waitFor(() => count(first.err(), /skipped: run \w+ still running/) >= 2, 'two skipped ticks');
      const firstRun = [...first.err().matchAll(STARTED)][0]?.[3] as string;
      expect(first.err()).toMatch(new RegExp(`tick \\S+ of slow skipped: run ${firstRun} still running`));
      // Stopped while a run waits for the slow answer: that run is left unfinished.
      await waitFor(() => first.err().includes(`run ${firstRun} (slow) succeeded`) && server.seen.length === 2, 'the second run to be calling');
      const second = [...first.err().matchAll(STARTED)][1]?.[3] as string;
      first.child.kill('SIGTERM');
      expect((await first.done).code).toBe(0);
      // Never two runs of the workflow at once.
      expect(server.maxInFlight()).toBe(1);
      expect(first.err()).not.toContain(`run ${second} (slow) succeeded`);

      const again = serve(dir, { FERRY_STATE_DIR: stateDir });
      await waitFor(() => again.err().includes(`run ${second} (slow) succeeded`), 'the unfinished run to be resumed');
      expect(again.err()).toContain(`resuming 1 run accepted before the last stop: ${second}`);
      again.child.kill('SIGTERM');
      expect((await again.done).code).toBe(0);
      expect(server.maxInFlight()).toBe(1);
    } finally {
      await server.close();
    }
  });
});

describe('schedules in a backend pool', () => {
  it('two ferry serve --backend start one run per tick, and skip ticks while the latest scheduled run runs', async () => {
    const redis = await startRedis();
    const server = await slowServer();
    const backend = await openBackend(redis.url);
    try {
      const dir = folder('pool', { 'fast.yaml': logWorkflow('fast', '*/1 * * * * *'), 'slow.yaml': slowWorkflow('slow', server.url) });
      const env = { FERRY_BACKEND: redis.url, CI: 'true' };
      const a = serve(dir, env);
      const b = serve(dir, env);
      await waitFor(() => count(a.err() + b.err(), /skipped: run \w+ still running/) >= 2 && count(a.err() + b.err(), /tick \S+ of fast: run/) >= 5, 'five ticks of fast and two skipped of slow');
      a.child.kill('SIGTERM');
      b.child.kill('SIGTERM');
      expect((await a.done).code).toBe(0);
      expect((await b.done).code).toBe(0);

      const store = new RedisRunStore(backend);
      const ticks = new Map<string, string[]>();
      for (const listed of await store.list({ workflow: 'fast' })) {
        const run = await store.load(listed.runId);
        const at = run?.start.trigger.scheduled_at as string;
        expect(run?.start.trigger.type).toBe('schedule');
        ticks.set(at, [...(ticks.get(at) ?? []), listed.runId]);
      }
      expect(ticks.size).toBeGreaterThanOrEqual(5);
      expect([...ticks.values()].filter((ids) => ids.length > 1)).toEqual([]);
      // Both processes fired ticks; each tick's run was started by one of them.
      const logged = [...(a.err() + b.err()).matchAll(STARTED)].filter((m) => m[2] === 'fast').map((m) => m[1] as string);
      expect(logged.sort()).toEqual([...ticks.keys()].sort());
      // The slow workflow never ran twice at once across the pool.
      expect(server.maxInFlight()).toBe(1);
    } finally {
      await backend.close();
      await server.close();
      await redis.close();
    }
  });
});
