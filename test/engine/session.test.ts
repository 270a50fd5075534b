import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIO, type CapturedIO } from '../../src/cli/io.js';
import { runCommand } from '../../src/cli/run-command.js';
import type { RunEvent } from '../../src/engine/events.js';
import { createFerry } from '../../src/engine/runtime.js';
import { envSecrets } from '../../src/engine/secrets.js';
import { startRun, type RunSession } from '../../src/engine/session.js';
import { recordedSession, recordRun } from '../../src/engine/recorded.js';
import { DurableRecorder } from '../../src/store/durable.js';
import { builtinRegistry } from '../../src/providers/index.js';
import type { JournalEntry, RunJournal } from '../../src/store/journal.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { until } from '../helpers/cli.js';
import { workflowFrom } from '../helpers/workflow.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let sandbox: Sandbox;
let dir: string;
beforeAll(async () => {
  sandbox = await startSandbox();
  // The workflows' folder is what `ferry serve --dir .` serves; the state dir is beside it.
  dir = path.join(await tempDir('ferry-session-'), 'wf');
  await mkdir(dir);
  await writeFile(
    path.join(dir, 'events.yaml'),
    `name: events
triggers:
  - type: webhook
    path: /hooks/events
    inputs:
      users: { type: array, items: { type: string } }
providers:
  amplitude: { api_key: "<<env.AMP_KEY>>", base_url: "<<env.AMP_URL>>", batch: false }
steps:
  - id: greet
    action: core.log
    with: { message: "hello <<trigger.type>>" }
  - id: each
    loop: { over: <<inputs.users>>, as: user, concurrency: 1 }
    steps:
      - { id: ev, action: amplitude.send_event, with: { user_id: <<user>>, event_type: Seen } }
`,
  );
  await writeFile(path.join(dir, 'body.json'), JSON.stringify({ users: ['user_1', 'user_2'] }));
  await writeFile(
    path.join(dir, 'events.test.yaml'),
    `workflow: events.yaml
cases:
  - name: sends one event per user
    body: { users: [user_1, user_2] }
    env: { AMP_KEY: sandbox-amplitude-key, AMP_URL: ${sandbox.amplitude.url} }
`,
  );
});
afterAll(async () => sandbox.close());

const env = (): Record<string, string> => ({ AMP_KEY: 'sandbox-amplitude-key', AMP_URL: sandbox.amplitude.url, FERRY_STATE_DIR: path.join(dir, '..', 'state') });

/** An IO whose commands hand every run session they start to `sessions`, each recording its events. */
function watchedIO(): { io: CapturedIO; sessions: RunSession[]; events: RunEvent[][] } {
  const io = captureIO(env(), dir);
  const sessions: RunSession[] = [];
  const events: RunEvent[][] = [];
  io.onRun = (session) => {
    const seen: RunEvent[] = [];
    sessions.push(session);
    events.push(seen);
    session.on((event) => seen.push(event));
  };
  return { io, sessions, events };
}

/** The shape of a run's events: what happened to which step, without times and outputs. */
function sequence(events: readonly RunEvent[]): string[] {
  return events
    .filter((e) => e.type !== 'run-resumed')
    .map((e) => {
      switch (e.type) {
        case 'run-started':
          return `run-started ${e.trigger.type} ${JSON.stringify(e.inputs)}`;
        case 'step-started':
        case 'loop-progress':
          return `${e.type} ${e.step}[${e.item.join('.')}]`;
        case 'step-finished':
          return `${e.type} ${e.step}[${e.item.join('.')}] ${e.summary.status}`;
        case 'loop-started':
          return `${e.type} ${e.step} total=${String(e.total)}`;
        case 'log':
          return `log ${e.step} ${e.message}`;
        case 'run-finished':
          return `run-finished ${e.summary.status}`;
        default:
          return e.type;
      }
    });
}

const expected = [
  'run-started webhook {"users":["user_1","user_2"]}',
  'step-started greet[]',
  'log greet hello webhook',
  'step-finished greet[] succeeded',
  'step-started each[]',
  'loop-started each total=2',
  'step-started ev[0]',
  'step-finished ev[0] succeeded',
  'step-started ev[1]',
  'step-finished ev[1] succeeded',
  'step-finished each[] succeeded',
  'run-finished succeeded',
];

describe('the run session', () => {
  it('gives a subscriber the same events for `ferry run --body`, the listener and `ferry test` of one workflow', async () => {
    const run = watchedIO();
    expect(await runCommand(['run', 'events.yaml', '--body', 'body.json', '--quiet'], run.io)).toBe(0);
    expect(run.sessions).toHaveLength(1);
    expect(sequence(run.events[0] ?? [])).toEqual(expected);

    const test = watchedIO();
    expect(await runCommand(['test', 'events.test.yaml'], test.io)).toBe(0);
    expect(sequence(test.events[0] ?? [])).toEqual(expected);

    const served = watchedIO();
    const stop = new AbortController();
    served.io.signal = stop.signal;
    const serving = runCommand(['serve', '--dir', '.', '--port', '0'], served.io);
    await Promise.race([until(() => /listening on (http:\/\/\S+)/.test(served.io.err)), serving.then((code) => Promise.reject(new Error(`serve ended with ${code}: ${served.io.err}`)))]);
    const url = /listening on (http:\/\/\S+)/.exec(served.io.err)?.[1] ?? '';
    const answer = await fetch(`${url}/hooks/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: await readFile(path.join(dir, 'body.json')) });
    expect(answer.status).toBe(202);
    const { runId } = (await answer.json()) as { runId: string };
    await until(() => served.events[0]?.some((e) => e.type === 'run-finished') === true);
    stop.abort('SIGTERM');
    expect(await serving).toBe(0);
    expect(served.sessions.map((s) => s.runId)).toEqual([runId]);
    // The listener records the run's `run` entry at the 202, with no session yet; the session
    // is made when the run starts, tells it as started, and takes it up: its journal says `resume` there.
    expect(served.events[0]?.map((e) => e.type).slice(0, 2)).toEqual(['run-started', 'run-resumed']);
    expect(sequence(served.events[0] ?? [])).toEqual(expected);
  });

  it('resumes through a session for `ferry retry`, and runs `--dry-run` through one', async () => {
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_2' });
    const first = watchedIO();
    expect(await runCommand(['run', 'events.yaml', '--body', 'body.json', '--quiet'], first.io)).toBe(1);
    sandbox.amplitude.clearFaults();
    const runId = first.sessions[0]?.runId ?? '';

    const retry = watchedIO();
    expect(await runCommand(['retry', runId, '--quiet'], retry.io)).toBe(0);
    expect(retry.sessions.map((s) => s.runId)).toEqual([runId]);
    expect(sequence(retry.events[0] ?? [])).toEqual(['step-started each[]', 'loop-started each total=2', 'step-started ev[1]', 'step-finished ev[1] succeeded', 'step-finished each[] succeeded', 'run-finished succeeded']);
    expect(retry.events[0]?.[0]).toMatchObject({ type: 'run-resumed', runId });

    const dry = watchedIO();
    expect(await runCommand(['run', 'events.yaml', '--body', 'body.json', '--dry-run'], dry.io)).toBe(0);
    expect(sequence(dry.events[0] ?? [])).toEqual(expected);
    expect(dry.io.out).toContain('#2 each#1 › ev  amplitude.send_event');
  });

  it('refuses inputs the trigger does not declare before anything is recorded', async () => {
    const registry = builtinRegistry();
    const workflow = workflowFrom(
      'name: typed\ntriggers: [{ type: manual, inputs: { n: { type: integer } } }]\nsteps: [{ id: s, action: core.log, with: { message: "<<inputs.n>>" } }]\n',
      registry,
    );
    const entries: JournalEntry[] = [];
    const journal: RunJournal = { append: (e) => entries.push(e), close: () => undefined };
    const session = startRun(workflow, { ferry: createFerry({ registry }), secrets: envSecrets({}), journal, inputs: { n: 'x' } });
    await expect(session.done).rejects.toMatchObject({ code: 'FERRY_INPUT_INVALID', message: expect.stringMatching(/^invalid input: .*`n` must be integer/) });
    expect(entries).toEqual([]);
  });

  it('writes the journal through its subscriber, ahead of the caller\'s listeners', async () => {
    const registry = builtinRegistry();
    const workflow = workflowFrom('name: two\nsteps: [{ id: a, action: core.log, with: { message: one } }, { id: b, action: core.log, with: { message: two } }]\n', registry);
    const entries: JournalEntry[] = [];
    const seen: string[] = [];
    const journal: RunJournal = { append: (e) => entries.push(e), close: () => undefined };
    const session = startRun(workflow, { ferry: createFerry({ registry }), secrets: envSecrets({}), journal });
    // Each event finds its entry already appended.
    session.on((event) => seen.push(`${event.type}:${entries.length}`));
    const summary = await session.done;
    expect(summary.status).toBe('succeeded');
    expect(entries.map((e) => e.t)).toEqual(['run', 'step', 'step', 'end']);
    expect(seen).toEqual(['run-started:1', 'step-started:1', 'log:1', 'step-finished:2', 'step-started:2', 'log:2', 'step-finished:3', 'run-finished:4']);
  });

  it('does not run a recorded run again when another runner took it up while it waited for a slot', async () => {
    const registry = builtinRegistry();
    const stateDir = await tempDir('ferry-session-busy-');
    await mkdir(path.join(stateDir, 'runs')); // the listener makes it at start
    const workflow = workflowFrom('name: queued\nsteps: [{ id: say, action: core.log, with: { message: hello } }]\n', registry, path.join(stateDir, 'queued.yaml'));
    const ferry = createFerry({ registry });
    const steps: string[] = [];
    const recorder = new DurableRecorder(stateDir);
    const recorded = await recordRun(workflow, { ferry, recorder });
    const session = recordedSession(workflow, recorded, { ferry, secrets: envSecrets({}), stateDir, recorder });
    session.on((event) => void (event.type === 'step-started' && steps.push(event.step)));
    // Meanwhile another listener started on this state dir wrote its folder from the accepted log, and ran it.
    await mkdir(path.join(stateDir, 'runs', recorded.runId));
    await appendFile(path.join(stateDir, 'runs', recorded.runId, 'journal.jsonl'), `${JSON.stringify({ t: 'resume', at: new Date().toISOString(), pid: 1 })}\n`);
    await expect(session.run()).rejects.toMatchObject({ code: 'FERRY_RUN_BUSY' });
    expect(steps).toEqual([]);
    await ferry.close();
  });
});

