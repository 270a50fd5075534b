import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { githubSignature } from '../../src/server/signature.js';
import { assertBuilt, ferry, spawnFerry, until } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const TOKEN = 'crm-token-0b7d2e9f';
let dir: string;
const children: ChildProcess[] = [];

/** `YYYYMMDDTHH` of a time, UTC. */
const hour = (ms: number): string => new Date(ms).toISOString().slice(0, 13).replace(/-/g, '');

const providers = `secrets: [AMP_KEY, AMP_SECRET, SEG_KEY, CRM_TOKEN]
providers:
  amplitude: { api_key: <<secrets.AMP_KEY>>, secret_key: <<secrets.AMP_SECRET>> }
  segment: { write_key: <<secrets.SEG_KEY>> }
`;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-sandbox-show-');
  await writeFile(
    path.join(dir, 'signup.yaml'),
    `name: signup
${providers}steps:
  - id: amp
    action: amplitude.identify_user
    with: { user_id: user_0001, user_properties: { $set: { plan: pro }, $setOnce: { source: ads } } }
  - id: seg
    action: segment.identify_user
    with: { userId: user_0001, email: ada@example.com, traits: { crm: "<<secrets.CRM_TOKEN>>" } }
  - id: event
    action: amplitude.send_event
    with: { user_id: user_0001, event_type: Signed Up, event_properties: { campaign: spring } }
  - id: export
    action: amplitude.export_events
    with: { start: "<<inputs.start>>", end: "<<inputs.end>>", output: out/<<inputs.out>>.ndjson }
`,
  );
  await writeFile(
    path.join(dir, 'export.yaml'),
    `name: export-only
${providers}steps:
  - id: export
    action: amplitude.export_events
    with: { start: 20260101T05, end: 20260101T06, output: out/seeded.ndjson }
`,
  );
});
afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

describe('ferry run --sandbox shows what happened', () => {
  it('prints each request each emulator received and what it stored, with --verbose, credentials and secrets left out', async () => {
    const now = Date.now();
    const r = await ferry(['run', 'signup.yaml', '--sandbox', '--verbose', '--input', `start=${hour(now - 3_600_000)}`, '--input', `end=${hour(now + 3_600_000)}`, '--input', 'out=verbose', '--state-dir', 'state'], { cwd: dir, env: { CRM_TOKEN: TOKEN } });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split('\n');
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}amplitude POST \/identify -> 200 {2}\{"identification":\{"user_id":"user_0001","user_properties":\{"\$set":\{"plan":"pro"\},"\$setOnce":\{"source":"ads"\}\}/));
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}amplitude POST \/2\/httpapi -> 200 {2}\{"events":\[\{"user_id":"user_0001","event_type":"Signed Up"/));
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}amplitude GET \/api\/2\/export\?start=\d{8}T\d{2}&end=\d{8}T\d{2} -> 200$/));
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}segment POST \/v1\/identify -> 200 {2}\{"userId":"user_0001","traits":\{"crm":"\[redacted\]","email":"ada@example.com"\}/));
    // What the emulators keep: the user's properties after the identify, the event, the message.
    expect(lines).toContain('stored:');
    expect(lines).toContain('  amplitude user user_0001: {"plan":"pro","source":"ads"}');
    expect(lines).toContain('  amplitude event "Signed Up" of user_0001 {"campaign":"spring"}');
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}segment identify of user_0001 \{"crm":"\[redacted\]","email":"ada@example.com"/));
    expect(r.stderr).not.toMatch(/sandbox-amplitude-key|sandbox-segment-key|sandbox-amplitude-secret|api_key|writeKey/);
    expect(r.stderr).not.toContain(TOKEN);
  });

  it('answers export_events with the events sent to the sandbox earlier in the same run', async () => {
    const now = Date.now();
    const r = await ferry(['run', 'signup.yaml', '--sandbox', '--json', '--input', `start=${hour(now - 3_600_000)}`, '--input', `end=${hour(now + 3_600_000)}`, '--input', 'out=same-run', '--state-dir', 'state'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { steps: { export: { output: { count: number } } } }).steps.export.output.count).toBe(1);
    const rows = (await readFile(path.join(dir, 'out/same-run.ndjson'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows).toEqual([expect.objectContaining({ user_id: 'user_0001', event_type: 'Signed Up', event_properties: { campaign: 'spring' }, server_upload_time: expect.stringMatching(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$/) })]);
  });

  it('answers export_events with the events of --sandbox-seed FILE, by hour, as JSON or as an earlier export', async () => {
    await writeFile(path.join(dir, 'seed.json'), JSON.stringify({ '20260101T05': [{ event_type: 'Seeded', user_id: 'user_0002' }], '20260101T09': [{ event_type: 'Outside', user_id: 'user_0003' }] }));
    const r = await ferry(['run', 'export.yaml', '--sandbox', '--sandbox-seed', 'seed.json', '--json', '--state-dir', 'state'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    const rows = (await readFile(path.join(dir, 'out/seeded.ndjson'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as unknown);
    expect(rows).toEqual([{ event_type: 'Seeded', user_id: 'user_0002' }]);
    // The export's own output is a seed too: rows carry their hour in server_upload_time.
    await writeFile(path.join(dir, 'seed.ndjson'), `${JSON.stringify({ event_type: 'Again', user_id: 'user_0004', server_upload_time: '2026-01-01 06:12:00.000000' })}\n`);
    const again = await ferry(['run', 'export.yaml', '--sandbox', '--sandbox-seed', 'seed.ndjson', '--state-dir', 'state'], { cwd: dir });
    expect(again.code, again.stderr).toBe(0);
    expect(await readFile(path.join(dir, 'out/seeded.ndjson'), 'utf8')).toContain('"event_type":"Again"');
    const bad = await ferry(['run', 'export.yaml', '--sandbox-seed', 'seed.json', '--state-dir', 'state'], { cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--sandbox-seed goes with --sandbox');
  });
});

describe('ferry serve --sandbox', () => {
  it('serves workflows against the emulators with placeholder secrets, and with --verbose logs each request they receive', async () => {
    const hooks = path.join(dir, 'hooks');
    await mkdir(hooks);
    await writeFile(
      path.join(hooks, 'hook.yaml'),
      `name: hook
triggers:
  - type: webhook
    path: /hooks/signup
    secret: <<secrets.HOOK_SECRET>>
secrets: [AMP_KEY, HOOK_SECRET]
providers:
  amplitude: { api_key: <<secrets.AMP_KEY>> }
steps:
  - id: amp
    action: amplitude.identify_user
    with: { user_id: "<<trigger.body.id>>", user_properties: { plan: "<<trigger.body.plan>>" } }
`,
    );
    const { child, done } = spawnFerry(['serve', '--dir', 'hooks', '--port', '0', '--sandbox', '--verbose', '--state-dir', 'serve-state'], { cwd: dir });
    children.push(child);
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => /listening on http/.test(err) || child.exitCode !== null);
    const url = /listening on (http:\/\/\S+)/.exec(err)?.[1];
    expect(url, err).toBeDefined();
    expect(err).toContain('sandbox: runs call the built-in Amplitude and Segment emulators, never a provider');
    const body = JSON.stringify({ id: 'user_0042', plan: 'team' });
    // HOOK_SECRET is not set: its placeholder signs the delivery.
    const res = await fetch(`${url}/hooks/signup`, { method: 'POST', body, headers: { 'x-hub-signature-256': githubSignature('sandbox-hook-secret', body) } });
    expect(res.status).toBe(202);
    const { runId } = (await res.json()) as { runId: string };
    await until(() => err.includes(`run ${runId} (hook) succeeded`));
    expect(err).toMatch(/ {2}sandbox: amplitude POST \/identify -> 200 {2}\{"identification":\{"user_id":"user_0042","user_properties":\{"plan":"team"\}\}\}/);
    child.kill('SIGTERM');
    const result = await done;
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('sandbox — what the providers received:');
    expect(result.stderr).toContain('Amplitude: 1 user identified (1 request)');
    expect(result.stderr).not.toContain('sandbox-amplitude-key');
  });
});
