import type { ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { ferrySignature, githubSignature, standardSignature } from '../../src/server/signature.js';
import { assertBuilt, ferry, spawnServe, waitFor, type Result } from '../helpers/cli.js';
import { fuzzer } from '../server/fuzz.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const AMP_KEY = 'amp-key-0123456789abcdef';
const HOOK_SECRET = 'hook-secret-5f2a9c';
const VECTOR_SECRET = "It's a Secret to Everybody";
const VECTOR = '757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';
const STD_SECRET = `whsec_${Buffer.from('standard-webhooks-key-5f2a9c0123').toString('base64')}`;
const API_TOKEN = 'api-token-7c1e0b5d9a';
const AUTH = { authorization: `Bearer ${API_TOKEN}` };

let sandbox: Sandbox;
let root: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY] });
  root = await tempDir('ferry-serve-');
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await sandbox?.close();
});

const env = (stateDir: string, extra: Record<string, string> = { FERRY_API_TOKEN: API_TOKEN }) => ({ AMP_KEY, HOOK_SECRET, VECTOR_SECRET, STD_SECRET, FERRY_STATE_DIR: stateDir, ...extra });

interface Served {
  url: string;
  child: ChildProcess;
  done: Promise<Result>;
  stderr: () => string;
}

async function serve(dir: string, stateDir: string, extra: string[] = [], extraEnv?: Record<string, string>): Promise<Served> {
  const { child, done, stderr, listening } = spawnServe(['--dir', dir, '--port', '0', ...extra], { cwd: root, env: env(stateDir, extraEnv) });
  children.push(child);
  return { url: await listening, child, done, stderr };
}

async function post(url: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', body, headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const runOf = async (url: string, runId: string) => (await (await fetch(`${url}/runs/${runId}`, { headers: AUTH })).json()) as { status: string; state: string };
const runFolders = async (stateDir: string): Promise<string[]> => (await readdir(path.join(stateDir, 'runs'))).sort();

function hook(name: string, hookPath: string, options: { secret?: string; inputs?: string; steps: string }): string {
  return `name: ${name}
triggers:
  - type: webhook
    path: ${hookPath}
${options.secret ? `    secret: "${options.secret}"\n` : ''}${options.inputs ? `    inputs: ${options.inputs}\n` : ''}secrets: [AMP_KEY, HOOK_SECRET, VECTOR_SECRET, STD_SECRET]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, concurrency: 8 }
retry: { attempts: 3, backoff: { initial: 5ms, max: 20ms } }
steps:
${options.steps}
`;
}

describe('ferry serve', () => {
  let dir: string;
  let state: string;
  let s: Served;

  beforeAll(async () => {
    dir = path.join(root, 'main');
    state = path.join(root, 'main-state');
    await mkdir(dir);
    const event = `  - id: ev\n    action: amplitude.send_event\n    with: { user_id: <<inputs.user_id>>, event_type: Signed Up, event_properties: { source: '<<default trigger.query.source "direct">>' } }`;
    await writeFile(path.join(dir, 'signups.yaml'), hook('signups', '/hooks/signups', { secret: '<<secrets.HOOK_SECRET>>', inputs: '{ user_id: { type: string } }', steps: event }));
    await writeFile(path.join(dir, 'vector.yaml'), hook('vector', '/hooks/vector', { secret: '<<secrets.VECTOR_SECRET>>', steps: '  - { id: say, action: core.log, with: { message: hi } }' }));
    await writeFile(path.join(dir, 'open.yaml'), hook('open', '/hooks/open', { steps: '  - { id: say, action: core.log, with: { message: "<<json trigger.body>>" } }' }));
    await writeFile(path.join(dir, 'standard.yaml'), hook('standard', '/hooks/standard', { secret: '<<secrets.STD_SECRET>>', steps: '  - { id: say, action: core.log, with: { message: hi } }' }));
    s = await serve('main', state);
  });
  afterAll(async () => {
    s.child.kill('SIGTERM');
    expect((await s.done).code).toBe(0);
  });

  it('prints the routes it serves and warns about a webhook without a secret', () => {
    expect(s.stderr()).toMatch(/POST \/hooks\/signups\s+-> signups \(main\/signups\.yaml\)/);
    expect(s.stderr()).toMatch(/POST \/hooks\/open\s+-> open \(main\/open\.yaml\)\s+\[unsigned\]/);
    expect(s.stderr()).toContain('warning: main/open.yaml:4:11: webhook `/hooks/open` has no `secret`');
  });

  it('accepts the GitHub test vector of PROVIDERS.md: the signature passes and the non-JSON body is 400', async () => {
    const good = await post(`${s.url}/hooks/vector`, 'Hello, World!', { 'X-Hub-Signature-256': `sha256=${VECTOR}` });
    expect(good).toEqual({ status: 400, body: { error: 'body is not JSON' } });
    const bad = await post(`${s.url}/hooks/vector`, 'Hello, World!', { 'X-Hub-Signature-256': `sha256=${VECTOR.replace(/^7/, '8')}` });
    expect(bad.status).toBe(401);
  });

  it('answers a signed JSON delivery 202 after recording it, and the run reaches the Amplitude emulator', async () => {
    const body = JSON.stringify({ user_id: 'user_signed_1' });
    const res = await post(`${s.url}/hooks/signups?source=crm`, body, { 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, body), 'X-Custom': 'kept', Authorization: 'Bearer dropped' });
    expect(res.status).toBe(202);
    const runId = res.body.runId as string;
    await waitFor(async () => (await runOf(s.url, runId)).status === 'succeeded', 'the run to succeed', 15_000, 10);
    const journal = await readFile(path.join(state, 'runs', runId, 'journal.jsonl'), 'utf8');
    const start = JSON.parse(journal.split('\n')[0] as string);
    expect(start.trigger.query).toEqual({ source: 'crm' });
    expect(start.trigger.headers['x-custom']).toBe('kept');
    expect(Object.keys(start.trigger.headers)).not.toEqual(expect.arrayContaining(['authorization']));
    expect(Object.keys(start.trigger.headers).some((h) => h.includes('signature'))).toBe(false);
    const events = [...sandbox.amplitude.events.values()].filter((e) => e.user_id === 'user_signed_1');
    expect(events).toEqual([expect.objectContaining({ event_type: 'Signed Up', event_properties: { source: 'crm' } })]);
  });

  it('accepts the timestamped X-Ferry-Signature', async () => {
    const body = JSON.stringify({ user_id: 'user_signed_2' });
    expect((await post(`${s.url}/hooks/signups`, body, { 'X-Ferry-Signature': ferrySignature(HOOK_SECRET, body) })).status).toBe(202);
  });

  it('answers 401 with one body for a wrong, a missing and a stale signature', async () => {
    const body = JSON.stringify({ user_id: 'user_refused' });
    const answers = await Promise.all([
      post(`${s.url}/hooks/signups`, body, { 'X-Hub-Signature-256': githubSignature('wrong secret', body) }),
      post(`${s.url}/hooks/signups`, body),
      post(`${s.url}/hooks/signups`, body, { 'X-Ferry-Signature': ferrySignature(HOOK_SECRET, body, Date.now() - 301_000) }),
    ]);
    expect(answers).toEqual(Array(3).fill({ status: 401, body: { error: 'invalid or missing signature' } }));
  });

  it('answers 400 for a body that is not JSON or does not match the inputs', async () => {
    const sign = (b: string) => ({ 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, b) });
    expect(await post(`${s.url}/hooks/signups`, '{"user_id":', sign('{"user_id":'))).toEqual({ status: 400, body: { error: 'body is not JSON' } });
    expect((await post(`${s.url}/hooks/signups`, '{"user":1}', sign('{"user":1}'))).status).toBe(400);
  });

  it('answers 413 to a 2 MiB body, declared or streamed, and stops reading it; and to oversized headers', async () => {
    expect((await post(`${s.url}/hooks/open`, Buffer.alloc(2 * 1024 * 1024, 32))).status).toBe(413);
    // Chunked, so the size is only known while reading; the socket is cut long before 64 MiB.
    const { port } = new URL(s.url);
    const outcome = await new Promise<{ status: string; written: number }>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1');
      let answer = '';
      let written = 0;
      const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 32), Buffer.from('\r\n')]);
      const pump = (): void => {
        while (!socket.destroyed && written < 64 * 1024 * 1024) {
          written += 0x10000;
          if (!socket.write(chunk)) return void socket.once('drain', pump);
        }
      };
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ status: answer.split('\r\n')[0] ?? '', written }));
      socket.write('POST /hooks/open HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n');
      pump();
    });
    expect(outcome.status).toBe('HTTP/1.1 413 Payload Too Large');
    expect(outcome.written).toBeLessThan(16 * 1024 * 1024);
    // Headers past node's 16 KiB get the same answer.
    const headers = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), '127.0.0.1');
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(answer.split('\r\n')[0] ?? ''));
      socket.end(`POST /hooks/open HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    });
    expect(headers).toBe('HTTP/1.1 413 Payload Too Large');
  });

  it('lets a sender that is busy while its oversized body is still in flight read the 413', async () => {
    // 3 MiB leave at once, then the sender is busy: the listener has answered and the rest of
    // the body is still arriving. Closing the socket then would reset the connection and
    // destroy the 413 before the sender reads it.
    const { port } = new URL(s.url);
    const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 32), Buffer.from('\r\n')]);
    const statuses = await Promise.all(
      Array.from({ length: 3 }, () =>
        new Promise<string>((resolve) => {
          const socket = connect(Number(port), '127.0.0.1');
          let answer = '';
          socket.on('data', (d: Buffer) => (answer += d.toString()));
          socket.on('error', () => undefined);
          socket.on('close', () => resolve(answer.split('\r\n')[0] ?? ''));
          socket.write('POST /hooks/open HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n');
          for (let k = 0; k < 48; k++) socket.write(chunk);
          setTimeout(() => {
            const end = Date.now() + 300;
            while (Date.now() < end) {
              // busy: not reading
            }
            for (let k = 0; k < 48 && !socket.destroyed; k++) socket.write(chunk);
          }, 5);
        }),
      ),
    );
    expect(statuses).toEqual(Array(3).fill('HTTP/1.1 413 Payload Too Large'));
  });

  it('answers 404 for an unknown path, 405 for GET on a hook, 200 for /healthz', async () => {
    expect((await post(`${s.url}/hooks/nope`, '{}')).status).toBe(404);
    const get = await fetch(`${s.url}/hooks/signups`);
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${s.url}/runs/01M8AH4T662WV7A529DS8VNP5D`, { headers: AUTH })).status).toBe(404);
  });

  it('answers a redelivery 200 with the same run id and runs it once', async () => {
    const body = JSON.stringify({ user_id: 'user_redelivered' });
    const headers = { 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, body), 'X-GitHub-Delivery': '72d3162e-cc78-11e3-81ab-4c9367dc0958' };
    const first = await post(`${s.url}/hooks/signups`, body, headers);
    const again = await Promise.all([post(`${s.url}/hooks/signups`, body, headers), post(`${s.url}/hooks/signups`, body, headers)]);
    expect(first.status).toBe(202);
    expect(again).toEqual(Array(2).fill({ status: 200, body: { runId: first.body.runId, duplicate: true } }));
    await waitFor(async () => (await runOf(s.url, first.body.runId as string)).status === 'succeeded', 'the run to succeed', 15_000, 10);
    expect([...sandbox.amplitude.events.values()].filter((e) => e.user_id === 'user_redelivered')).toHaveLength(1);
  });

  it('accepts Standard Webhooks with a whsec_ secret and answers a replay of the same request 200 with the first run', async () => {
    const body = JSON.stringify({ n: 'standard-1' });
    const headers = standardSignature(STD_SECRET, 'msg_e2e_1', body);
    const before = await runFolders(state);
    const first = await post(`${s.url}/hooks/standard`, body, headers);
    expect(first.status).toBe(202);
    expect(await post(`${s.url}/hooks/standard`, body, headers)).toEqual({ status: 200, body: { runId: first.body.runId, duplicate: true } });
    // Several signatures, one of them right, as while a secret rotates.
    const rotating = standardSignature(STD_SECRET, 'msg_e2e_2', body);
    const other = standardSignature(`whsec_${Buffer.from('old key').toString('base64')}`, 'msg_e2e_2', body);
    expect((await post(`${s.url}/hooks/standard`, body, { ...rotating, 'webhook-signature': `${other['webhook-signature']} ${rotating['webhook-signature']}` })).status).toBe(202);
    const refused = await Promise.all([
      post(`${s.url}/hooks/standard`, body, standardSignature(`whsec_${Buffer.from('wrong').toString('base64')}`, 'msg_e2e_3', body)),
      post(`${s.url}/hooks/standard`, body, standardSignature(STD_SECRET, 'msg_e2e_4', body, Date.now() - 301_000)),
      post(`${s.url}/hooks/standard`, body, { ...standardSignature(STD_SECRET, 'msg_e2e_5', body), 'webhook-id': 'msg_e2e_6' }),
    ]);
    expect(refused.map((r) => r.status)).toEqual([401, 401, 401]);
    expect((await runFolders(state)).filter((id) => !before.includes(id))).toHaveLength(2);
  });

  it('answers a replayed GitHub-signed body 200 with its first run, whatever delivery id the replay carries, and runs it once', async () => {
    const body = JSON.stringify({ user_id: 'user_replayed' });
    const sig = { 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, body) };
    const before = await runFolders(state);
    const first = await post(`${s.url}/hooks/signups`, body, { ...sig, 'X-GitHub-Delivery': 'replay-1' });
    expect(first.status).toBe(202);
    for (const extra of [{}, { 'X-GitHub-Delivery': 'replay-2' }, { 'Idempotency-Key': 'new' }]) {
      expect(await post(`${s.url}/hooks/signups`, body, { ...sig, ...extra })).toEqual({ status: 200, body: { runId: first.body.runId, duplicate: true } });
    }
    expect((await runFolders(state)).filter((id) => !before.includes(id))).toEqual([first.body.runId]);
    await waitFor(async () => (await runOf(s.url, first.body.runId as string)).status === 'succeeded', 'the run to succeed', 15_000, 10);
    expect([...sandbox.amplitude.events.values()].filter((e) => e.user_id === 'user_replayed')).toHaveLength(1);
  });

  it('starts one run for two identical signed deliveries sent at once, in any scheme', async () => {
    for (const [hookPath, body, headers] of [
      ['/hooks/signups', '{"user_id":"user_twice_1"}', (b: string) => ({ 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, b) })],
      ['/hooks/signups', '{"user_id":"user_twice_2"}', (b: string) => ({ 'X-Ferry-Signature': ferrySignature(HOOK_SECRET, b) })],
      ['/hooks/standard', '{"n":"twice"}', (b: string) => standardSignature(STD_SECRET, 'msg_twice', b)],
    ] as const) {
      const before = await runFolders(state);
      const sent = headers(body);
      const answers = await Promise.all([post(`${s.url}${hookPath}`, body, sent), post(`${s.url}${hookPath}`, body, sent)]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 202]);
      expect(answers[0]?.body.runId).toBe(answers[1]?.body.runId);
      expect((await runFolders(state)).filter((id) => !before.includes(id))).toEqual([answers[0]?.body.runId]);
    }
  });

  it('answers 400 to a body of 100k [ and leaves no run folder', async () => {
    const before = await runFolders(state);
    const body = '['.repeat(100_000) + ']'.repeat(100_000);
    expect(await post(`${s.url}/hooks/open`, body)).toEqual({ status: 400, body: { error: 'body nests deeper than 128 levels' } });
    expect(await post(`${s.url}/hooks/open`, '['.repeat(500_000))).toEqual({ status: 400, body: { error: 'body is not JSON' } });
    expect(await runFolders(state)).toEqual(before);
    expect(s.stderr()).not.toMatch(/request .* failed/);
  });

  it('serves GET /runs/<id> only with the API token, and only runs of the workflows it serves', async () => {
    const runId = (await post(`${s.url}/hooks/open`, '{}')).body.runId as string;
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `Basic ${API_TOKEN}` }]) {
      const res = await fetch(`${s.url}/runs/${runId}`, { headers });
      expect([res.status, res.headers.get('www-authenticate')]).toEqual([401, 'Bearer']);
    }
    expect((await fetch(`${s.url}/runs/${runId}`, { headers: AUTH })).status).toBe(200);
    expect(s.stderr()).toContain('GET  /runs/<id>  with Authorization: Bearer <FERRY_API_TOKEN>');
    expect(s.stderr()).not.toContain(API_TOKEN);
    // A `ferry run` of another workflow on the same state dir is not the listener's to show.
    await writeFile(path.join(root, 'private.yaml'), 'name: private\nsteps: [{ id: s, action: core.log, with: { message: private } }]\n');
    const ran = await ferry(['run', 'private.yaml', '--json'], { cwd: root, env: env(state) });
    expect(ran.code).toBe(0);
    const privateId = (JSON.parse(ran.stdout) as { runId: string }).runId;
    expect(await runFolders(state)).toContain(privateId);
    const res = await fetch(`${s.url}/runs/${privateId}`, { headers: AUTH });
    expect([res.status, await res.json()]).toEqual([404, { error: 'no such run' }]);
  });

  it('survives a few hundred random requests and answers only the listed codes', async () => {
    const seed = 20_261_125;
    const runId = (await post(`${s.url}/hooks/open`, '{}')).body.runId as string;
    const fuzz = fuzzer(seed, { url: s.url, runId, hooks: [{ path: '/hooks/signups', secret: HOOK_SECRET }, { path: '/hooks/open', secret: undefined }, { path: '/hooks/vector', secret: VECTOR_SECRET }] });
    const outcomes = [];
    // A few at a time, as senders do; one after another would not find races.
    for (let i = 0; i < 40; i++) outcomes.push(...(await Promise.all(Array.from({ length: 8 }, () => fuzz.next()))));
    const unexpected = outcomes.filter((o) => (o.status === null ? o.kind === 'http' : ![200, 202, 400, 401, 404, 405, 413].includes(o.status)));
    expect(unexpected, `seed ${seed}`).toEqual([]);
    // The seed reaches every answer, so every branch of the handler was hit under fire.
    expect(new Set(outcomes.map((o) => o.status))).toEqual(new Set([200, 202, 400, 401, 404, 405, 413]));
    expect(s.child.exitCode).toBeNull();
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    expect(s.stderr()).not.toMatch(/request .* failed/);
  });
});

describe('ferry serve refusing to start', () => {
  it('exits 2 listing every problem as file:line:col: invalid files, shared paths, unsigned off loopback, unrenderable secrets; a workflow without its secrets is only left out', async () => {
    const dir = path.join(root, 'bad');
    await mkdir(dir);
    await writeFile(path.join(dir, 'a.yaml'), 'name: a\ntriggers:\n  - type: webhook\n    path: /hooks/x\nsteps: [{ id: s, action: core.log, with: { message: a } }]\n');
    await writeFile(path.join(dir, 'b.yaml'), 'name: b\ntriggers:\n  - type: webhook\n    path: /hooks/x\n    secret: <<secrets.NOT_SET>>\nsecrets: [NOT_SET]\nsteps: [{ id: s, action: core.log, with: { message: b } }]\n');
    await writeFile(path.join(dir, 'c.yaml'), 'name: c\nstepz: []\n');
    await writeFile(path.join(dir, 'd.yaml'), 'name: d\ntriggers:\n  - type: webhook\n    path: /hooks/d\n    secret: "<<env.UNSET_SECRET>>"\nsteps: [{ id: s, action: core.log, with: { message: d } }]\n');
    await writeFile(path.join(dir, 'e.yaml'), 'name: e\ntriggers:\n  - type: webhook\n    path: /hooks/x\n    secret: key-of-e-123456\nsteps: [{ id: s, action: core.log, with: { message: e } }]\n');
    const r = await ferry(['serve', '--dir', 'bad', '--host', '0.0.0.0', '--port', '0'], { cwd: root, env: env(path.join(root, 'bad-state')) });
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toEqual(
      expect.arrayContaining([
        'bad/a.yaml:3:5: webhook `/hooks/x` has no `secret`: unsigned deliveries are accepted only when the listener is on loopback (--host 127.0.0.1)',
        'bad/b.yaml:6:10: missing secret `NOT_SET`: set it in the environment of ferry serve; `b` is not served',
        expect.stringMatching(/^bad\/c\.yaml:\d+:\d+: .*stepz/),
        expect.stringMatching(/^bad\/d\.yaml:5:13: the webhook `secret` cannot be rendered: `env\.UNSET_SECRET` is not defined/),
        'bad/e.yaml:4:11: webhook path `/hooks/x` is already served by bad/a.yaml:4:11',
      ]),
    );
    expect(lines.at(-1)).toMatch(/problems in bad; not starting$/);
    expect(r.stderr).not.toContain('listening');
  });
});

describe('ferry serve restarted', () => {
  it('still answers a replay of a signed delivery 200 with its first run, and without FERRY_API_TOKEN keeps GET /runs off', async () => {
    const dir = path.join(root, 'replay');
    const state = path.join(root, 'replay-state');
    await mkdir(dir);
    await writeFile(path.join(dir, 'hook.yaml'), hook('replay', '/hooks/replay', { secret: '<<secrets.HOOK_SECRET>>', steps: '  - { id: say, action: core.log, with: { message: hi } }' }));
    await writeFile(path.join(dir, 'standard.yaml'), hook('replay-standard', '/hooks/standard', { secret: '<<secrets.STD_SECRET>>', steps: '  - { id: say, action: core.log, with: { message: hi } }' }));
    const body = '{"n":"restart"}';
    const github = { 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, body) };
    const ferrySig = { 'X-Ferry-Signature': ferrySignature(HOOK_SECRET, body) };
    const standard = standardSignature(STD_SECRET, 'msg_restart', body);

    const s1 = await serve('replay', state);
    const a = await post(`${s1.url}/hooks/replay`, body, github);
    const b = await post(`${s1.url}/hooks/replay`, body, ferrySig);
    const c = await post(`${s1.url}/hooks/standard`, body, standard);
    expect([a.status, b.status, c.status]).toEqual([202, 202, 202]);
    s1.child.kill('SIGTERM');
    expect((await s1.done).code).toBe(0);

    const s2 = await serve('replay', state, [], {});
    expect(await post(`${s2.url}/hooks/replay`, body, github)).toEqual({ status: 200, body: { runId: a.body.runId, duplicate: true } });
    expect(await post(`${s2.url}/hooks/replay`, body, ferrySig)).toEqual({ status: 200, body: { runId: b.body.runId, duplicate: true } });
    expect(await post(`${s2.url}/hooks/standard`, body, standard)).toEqual({ status: 200, body: { runId: c.body.runId, duplicate: true } });
    expect(await runFolders(state)).toEqual([a.body.runId, b.body.runId, c.body.runId].sort());

    expect(s2.stderr()).toContain('GET  /runs/<id>  off (set FERRY_API_TOKEN to turn it on)');
    const off = await fetch(`${s2.url}/runs/${a.body.runId as string}`, { headers: AUTH });
    expect([off.status, await off.json()]).toEqual([404, { error: 'GET /runs/<id> is off: start ferry serve with FERRY_API_TOKEN set to turn it on' }]);
    s2.child.kill('SIGTERM');
    expect((await s2.done).code).toBe(0);
  });
});

describe('ferry serve stopped with SIGTERM', () => {
  it('stops runs between calls, exits 0, and on restart finishes running and queued runs without sending anything twice', async () => {
    const dir = path.join(root, 'bulk');
    const state = path.join(root, 'bulk-state');
    await mkdir(dir);
    const loop = `  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 8 }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: <<user.id>>, event_type: Synced }`;
    await writeFile(path.join(dir, 'bulk.yaml'), hook('bulk', '/hooks/bulk', { secret: '<<secrets.HOOK_SECRET>>', inputs: '{ users: { type: array } }', steps: loop }));
    const users = (from: number, n: number) => Array.from({ length: n }, (_, i) => ({ id: `bulk_${from + i}` }));
    const deliver = (id: string, body: string) => post(`${s1.url}/hooks/bulk`, body, { 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, body), 'X-GitHub-Delivery': id });
    const first = JSON.stringify({ users: users(0, 400) });
    const second = JSON.stringify({ users: users(1000, 200) });
    const before = sandbox.amplitude.requests.length;
    sandbox.amplitude.setLatency(20);

    // One run at a time: the second delivery is accepted and waits.
    const s1 = await serve('bulk', state, ['--max-runs', '1']);
    const a = await deliver('delivery-a', first);
    const b = await deliver('delivery-b', second);
    expect([a.status, b.status]).toEqual([202, 202]);
    expect((await runOf(s1.url, b.body.runId as string)).status).toBe('queued');
    await waitFor(() => [...sandbox.amplitude.events.keys()].filter((k) => k.startsWith('bulk_')).length >= 50, '50 events', 15_000, 10);
    s1.child.kill('SIGTERM');
    const stopped = await s1.done;
    sandbox.amplitude.setLatency(0);
    expect(stopped.code).toBe(0);
    expect(stopped.stderr).toContain('interrupted by SIGTERM');
    const sentBefore = [...sandbox.amplitude.events.keys()].filter((k) => k.startsWith('bulk_')).length;
    expect(sentBefore).toBeLessThan(400);

    const s2 = await serve('bulk', state, ['--max-runs', '1']);
    expect(s2.stderr()).toContain(`resuming 2 runs accepted before the last stop: ${a.body.runId}, ${b.body.runId}`);
    for (const run of [a, b]) await waitFor(async () => (await runOf(s2.url, run.body.runId as string)).status === 'succeeded', 'the resumed runs to succeed', 15_000, 10);
    // A redelivery after the restart still finds its run.
    expect(await post(`${s2.url}/hooks/bulk`, first, { 'X-Hub-Signature-256': githubSignature(HOOK_SECRET, first), 'X-GitHub-Delivery': 'delivery-a' })).toEqual({
      status: 200,
      body: { runId: a.body.runId, duplicate: true },
    });
    s2.child.kill('SIGTERM');
    expect((await s2.done).code).toBe(0);

    // Every event went out exactly once, counted by insert_id over every request the emulator saw.
    const sent = new Map<string, number>();
    for (const r of sandbox.amplitude.requests.slice(before)) {
      for (const e of (r.body as { events?: { user_id: string; insert_id: string }[] }).events ?? []) if (e.user_id.startsWith('bulk_')) sent.set(e.insert_id, (sent.get(e.insert_id) ?? 0) + 1);
    }
    expect(sent.size).toBe(600);
    expect([...sent.values()].every((n) => n === 1)).toBe(true);
    expect(sandbox.amplitude.duplicateInsertIds).toBe(0);
  });
});
