import { existsSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFerry } from '../../src/engine/runtime.js';
import { Redactor } from '../../src/redact.js';
import { builtinRegistry } from '../../src/providers/index.js';
import type { Delivery, Route } from '../../src/server/handler.js';
import { RunManager } from '../../src/server/runs.js';
import { readJournal } from '../../src/store/journal.js';
import { json, startServer } from '../helpers/server.js';
import { until } from '../helpers/cli.js';
import { workflowFrom } from '../helpers/workflow.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const registry = builtinRegistry();
let stateDir: string;
let upstream: Awaited<ReturnType<typeof startServer>>;
/** Answers are held until released, so a test decides when a run's call ends. */
let release: (() => void)[] = [];

beforeEach(async () => {
  stateDir = path.join(await tempDir('ferry-runs-'), 'state');
  release = [];
  upstream = await startServer((_req, res) => void release.push(() => json(res, 200, { ok: true })));
});
afterEach(async () => {
  for (const r of release) r();
  await upstream.close();
});

function route(name = 'slow', file = path.join(stateDir, '..', `${name}.yaml`)): Route {
  const workflow = workflowFrom(
    `
name: ${name}
triggers: [{ type: webhook, path: /hooks/${name} }]
retry: { attempts: 1 }
steps:
  - id: call
    action: http.request
    with: { method: POST, url: "${upstream.url}/<<trigger.body.n>>" }
  - id: after
    action: core.log
    with: { message: done }
`,
    registry,
    file,
  );
  return { path: `/hooks/${name}`, served: { workflow, file: `${name}.yaml`, secrets: {} }, secret: undefined };
}

function delivery(r: Route, n: number, deliveryId?: string): Delivery {
  return { route: r, deliveryId, replays: [], inputs: {}, trigger: { type: 'webhook', body: { n }, headers: {}, query: {} } };
}

function manager(maxRuns = 32, lines: string[] = []): RunManager {
  return new RunManager({ stateDir, ferry: createFerry({ registry }), redactor: new Redactor(), env: {}, maxRuns, log: (l) => lines.push(l) });
}

/** Everything in the state dir's accepted log. */
const acceptedText = async () => {
  const dir = path.join(stateDir, 'accepted');
  return (await Promise.all((await readdir(dir)).map((name) => readFile(path.join(dir, name), 'utf8')))).join('');
};
const entries = async (runId: string) => (await readJournal(path.join(stateDir, 'runs', runId, 'journal.jsonl'))).entries;
const status = async (m: RunManager, runId: string) => ((await m.summary(runId)) as { status: string }).status;

describe('run manager', () => {
  it('has the `run` entry in the accepted log when accept resolves, and the run folder, owner-only, once the run starts', async () => {
    const r = route();
    const m = manager();
    await m.open([r.served]);
    const { runId, duplicate } = await m.accept(delivery(r, 1, 'd-1'));
    expect(duplicate).toBe(false);
    // Durable before the answer: the log line, fdatasynced. The folder is written when the run starts.
    expect(await acceptedText()).toContain(`"runId":"${runId}"`);
    expect(await readdir(path.join(stateDir, 'runs'))).toEqual([]);
    expect(await status(m, runId)).toBe('queued');
    m.start();
    await until(() => release.length === 1);
    expect(await readdir(path.join(stateDir, 'runs', runId))).toEqual(expect.arrayContaining(['journal.jsonl', 'workflow.yaml']));
    // They hold webhook bodies and sender headers: owner only from the moment they exist.
    const mode = async (...parts: string[]) => ((await stat(path.join(stateDir, 'runs', ...parts))).mode & 0o777).toString(8);
    expect([await mode(), await mode(runId), await mode(runId, 'journal.jsonl'), await mode(runId, 'workflow.yaml')]).toEqual(['700', '700', '600', '600']);
    const [first] = await entries(runId);
    expect(first).toMatchObject({ t: 'run', runId, workflow: 'slow', trigger: { body: { n: 1 } }, hook: { path: '/hooks/slow', delivery: 'd-1' } });
    release.shift()?.();
    await until(() => m.running === 0);
    expect((await entries(runId)).map((e) => e.t)).toEqual(['run', 'resume', 'step', 'step', 'end']);
    expect(await status(m, runId)).toBe('succeeded');
  });

  it('runs at most maxRuns at once and starts waiting runs oldest first', async () => {
    const r = route();
    const m = manager(1);
    await m.open([r.served]);
    m.start();
    const ids = [];
    for (let n = 0; n < 3; n++) ids.push((await m.accept(delivery(r, n))).runId);
    await until(() => release.length === 1);
    expect([m.running, m.waiting]).toEqual([1, 2]);
    expect(await Promise.all(ids.map((id) => status(m, id)))).toEqual(['running', 'queued', 'queued']);
    for (let n = 0; n < 3; n++) {
      await until(() => release.length === 1);
      expect(upstream.seen.at(-1)?.url).toBe(`/${n}`);
      release.shift()?.();
    }
    await until(() => m.running === 0);
    expect(await Promise.all(ids.map((id) => status(m, id)))).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });

  it('gives a redelivery the run of the first delivery, also while the first is being recorded and after a restart', async () => {
    const r = route();
    const m = manager();
    await m.open([r.served]);
    m.start();
    const [a, b] = await Promise.all([m.accept(delivery(r, 1, 'same')), m.accept(delivery(r, 1, 'same'))]);
    expect(b).toEqual({ runId: a.runId, duplicate: true });
    expect(await readdir(path.join(stateDir, 'runs'))).toEqual([a.runId]);
    await until(() => release.length === 1);
    release.shift()?.();
    await until(() => m.running === 0);

    const restarted = manager();
    await restarted.open([r.served]);
    restarted.start();
    expect(await restarted.accept(delivery(r, 1, 'same'))).toEqual({ runId: a.runId, duplicate: true });
    // The same id on another path is another delivery.
    const other = route('other');
    expect((await restarted.accept(delivery(other, 1, 'same'))).duplicate).toBe(false);
  });

  it('on stop keeps running and waiting runs unfinished, and the next open resumes them without redoing finished steps', async () => {
    const r = route();
    const m = manager(1);
    await m.open([r.served]);
    m.start();
    const first = (await m.accept(delivery(r, 1))).runId;
    const second = (await m.accept(delivery(r, 2))).runId;
    await until(() => release.length === 1);
    const stopped = m.stop('SIGTERM');
    release.shift()?.(); // the call on the wire finishes and is recorded; `after` never starts
    await stopped;
    expect((await entries(first)).at(-1)).toMatchObject({ t: 'end', status: 'failed', interrupted: 'SIGTERM' });
    // The waiting run never started: it has no folder yet, only its line in the accepted log.
    expect(existsSync(path.join(stateDir, 'runs', second))).toBe(false);

    const lines: string[] = [];
    const again = manager(32, lines);
    expect(await again.open([r.served])).toEqual([first, second]);
    expect((await entries(second)).map((e) => e.t)).toEqual(['run']);
    expect(again.waiting).toBe(2); // nothing runs before start()
    again.start();
    await until(() => release.length === 1); // only the second run calls again: the first one's call is done
    release.shift()?.();
    await until(() => again.running === 0);
    expect(upstream.seen.map((s) => s.url)).toEqual(['/1', '/2']);
    expect(await status(again, first)).toBe('succeeded');
    expect(await status(again, second)).toBe('succeeded');
    expect(lines.join('\n')).toContain(`run ${first} (slow) succeeded`);
  });

  it('does not resume runs of workflows it does not serve, nor runs that failed on their own', async () => {
    const r = route();
    const m = manager();
    await m.open([r.served]);
    m.start();
    const failed = (await m.accept(delivery(r, 1))).runId;
    await until(() => release.length === 1);
    await upstream.close(); // the held call fails: a real failure, not an interruption
    release = [];
    await until(() => m.running === 0);
    expect(await status(m, failed)).toBe('failed');
    upstream = await startServer((_req, res) => void release.push(() => json(res, 200, {})));

    const other = route('other');
    const m2 = manager(1);
    await m2.open([other.served]);
    m2.start();
    await m2.accept(delivery(other, 1));
    const unserved = (await m2.accept(delivery(other, 2))).runId;
    await until(() => release.length === 1);
    const stopping = m2.stop('SIGTERM');
    release.shift()?.();
    await stopping;
    expect(await manager().open([r.served])).toEqual([]);
    expect((await entries(unserved)).map((e) => e.t)).toEqual(['run']);
  });

  it('starts from the runs\' records: delivery keys come back without reading journals, and only the journals of runs it resumes are read', async () => {
    const r = route();
    const m = manager(1);
    await m.open([r.served]);
    m.start();
    const done = (await m.accept(delivery(r, 1, 'done-1'))).runId;
    await until(() => release.length === 1);
    release.shift()?.();
    await until(() => m.running === 0);
    const waiting = (await m.accept(delivery(r, 2, 'waiting-2'))).runId;
    await until(() => release.length === 1);
    const stopping = m.stop('SIGTERM');
    release.shift()?.();
    await stopping;
    expect(JSON.parse(await readFile(path.join(stateDir, 'runs', done, 'run.json'), 'utf8'))).toMatchObject({ status: 'succeeded', hook: { path: '/hooks/slow', delivery: 'done-1' } });
    // The finished run's journal turns to garbage of the same size: had the start read it, the
    // run would be corrupt and its delivery id forgotten.
    const journal = path.join(stateDir, 'runs', done, 'journal.jsonl');
    await writeFile(journal, 'x'.repeat((await stat(journal)).size));

    const again = manager();
    expect(await again.open([r.served])).toEqual([waiting]);
    again.start();
    expect(await again.accept(delivery(r, 1, 'done-1'))).toEqual({ runId: done, duplicate: true });
    expect(await again.accept(delivery(r, 2, 'waiting-2'))).toEqual({ runId: waiting, duplicate: true });
    // Its call finished before the stop: the resumed run has only `after` left.
    await until(() => again.running === 0);
    expect(upstream.seen).toHaveLength(2);
    expect(JSON.parse(await readFile(path.join(stateDir, 'runs', waiting, 'run.json'), 'utf8'))).toMatchObject({ status: 'succeeded', hook: { delivery: 'waiting-2' }, steps: { call: 'succeeded', after: 'succeeded' } });
  });

  it('resumes at the next open a run accepted but never started, and still knows its delivery id', async () => {
    const r = route();
    const m = manager();
    await m.open([r.served]);
    // Not started: the run is accepted and waits, as a run does when the listener dies right after the 202.
    const { runId } = await m.accept(delivery(r, 7, 'lost-1'));
    await m.stop('SIGTERM');
    // Its folder was never written: the accepted log keeps the run.
    expect(existsSync(path.join(stateDir, 'runs', runId))).toBe(false);

    const lines: string[] = [];
    const again = manager(32, lines);
    expect(await again.open([r.served])).toEqual([runId]);
    expect(lines.join('\n')).toContain(`restored run ${runId} from the accepted log`);
    again.start();
    expect(await again.accept(delivery(r, 7, 'lost-1'))).toEqual({ runId, duplicate: true });
    await until(() => release.length === 1);
    expect(upstream.seen.at(-1)?.url).toBe('/7');
    release.shift()?.();
    await until(() => again.running === 0);
    expect(await status(again, runId)).toBe('succeeded');
    expect((await entries(runId)).map((e) => e.t)).toEqual(['run', 'resume', 'step', 'step', 'end']);
  });

  it('answers a burst first: while deliveries saturate the event loop at most two runs run and the others wait, then all of them run', async () => {
    const workflow = workflowFrom('name: quick\ntriggers: [{ type: webhook, path: /hooks/quick }]\nsteps: [{ id: say, action: core.log, with: { message: "<<trigger.body.n>>" } }]\n', registry, path.join(stateDir, '..', 'quick.yaml'));
    const r: Route = { path: '/hooks/quick', served: { workflow, file: 'quick.yaml', secrets: {} }, secret: undefined };
    const m = manager();
    await m.open([r.served]);
    m.start();
    const accepted: Promise<{ runId: string }>[] = [];
    const running: number[] = [];
    const end = Date.now() + 1500;
    for (let n = 0; Date.now() < end; ) {
      for (let i = 0; i < 16; i++) accepted.push(m.accept(delivery(r, n++)));
      // A burst keeps the loop busy: here by the test itself, between turns that let the accepts finish.
      const busy = Date.now();
      while (Date.now() - busy < 40);
      await new Promise((resolve) => setImmediate(resolve));
      if (m.saturated) running.push(m.running);
    }
    expect(running.length).toBeGreaterThan(5);
    expect(Math.max(...running)).toBeLessThanOrEqual(2);
    expect(m.waiting).toBeGreaterThan(0);
    // The burst is over: every accepted run runs.
    const ids = (await Promise.all(accepted)).map((a) => a.runId);
    await until(() => m.running === 0 && m.waiting === 0);
    expect(new Set(await Promise.all(ids.map((id) => status(m, id))))).toEqual(new Set(['succeeded']));
  }, 60_000);

  it('refuses a maxRuns that is not a positive integer', () => {
    expect(() => manager(0)).toThrow('Expected `maxRuns` to be a positive integer, got `0`');
  });

  it('redacts the served secrets in the recorded `run` entry', async () => {
    const r = route();
    r.served.secrets = { TOKEN: 'tok-1234567890' };
    const m = manager();
    await m.open([r.served]);
    m.start();
    const { runId } = await m.accept({ ...delivery(r, 1), trigger: { type: 'webhook', body: { leaked: 'tok-1234567890' }, headers: {}, query: {} } });
    // Its call's url wants trigger.body.n: the run fails at once, after its folder was written.
    await until(() => m.running === 0 && m.waiting === 0);
    await m.stop('SIGTERM');
    for (const text of [await acceptedText(), await readFile(path.join(stateDir, 'runs', runId, 'journal.jsonl'), 'utf8')]) {
      expect(text).not.toContain('tok-1234567890');
      expect(text).toContain('[redacted]');
    }
  });
});
