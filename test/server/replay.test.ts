import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFerry } from '../../src/engine/runtime.js';
import { Redactor } from '../../src/redact.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { createHandler, type Handler, type Route } from '../../src/server/handler.js';
import { RunManager } from '../../src/server/runs.js';
import { ferrySignature, githubSignature, standardSignature } from '../../src/server/signature.js';
import { until } from '../helpers/cli.js';
import { workflowFrom } from '../helpers/workflow.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// The handler in front of the real run manager on a real state dir: what a replay leaves on disk.
const SECRET = 'hook-secret-value';
const STANDARD_SECRET = `whsec_${Buffer.from('standard webhooks key 0123456789').toString('base64')}`;
const TOKEN = 'api-token-0123456789abcdef';
const HOUR = 3600 * 1000;

const registry = builtinRegistry();
let root: string;
let stateDir: string;
/** The clock of both the handler and the run manager. */
let clock: number;
let managers: RunManager[];

function route(name: string, secret: string | undefined, inputs?: string): Route {
  const file = path.join(root, `${name}.yaml`);
  const workflow = workflowFrom(
    `
name: ${name}
triggers: [{ type: webhook, path: /hooks/${name}${inputs ? `, inputs: ${inputs}` : ''} }]
steps: [{ id: say, action: core.log, with: { message: hi } }]
`,
    registry,
    file,
  );
  return { path: `/hooks/${name}`, served: { workflow, file: `${name}.yaml`, secrets: {} }, secret };
}

let routes: Route[];

async function start(apiToken?: string): Promise<{ handle: Handler; runs: RunManager }> {
  const runs = new RunManager({ stateDir, ferry: createFerry({ registry }), redactor: new Redactor(), env: {}, log: () => undefined, now: () => clock });
  managers.push(runs);
  await runs.open(routes.map((r) => r.served));
  runs.start();
  return { handle: createHandler({ routes, runs, apiToken, now: () => clock }), runs };
}

const post = (handle: Handler, url: string, body: string, headers: Record<string, string> = {}) => handle({ method: 'POST', url, headers, body: Buffer.from(body) });
/** The run folders, once every run accepted so far has started (a run's folder is written when it starts). */
const runFolders = async (): Promise<string[]> => {
  for (const m of managers) await until(() => m.running === 0 && m.waiting === 0);
  return (await readdir(path.join(stateDir, 'runs'))).sort();
};

beforeEach(async () => {
  root = await tempDir('ferry-replay-');
  stateDir = path.join(root, 'state');
  clock = Date.now();
  managers = [];
  routes = [route('github', SECRET), route('standard', STANDARD_SECRET), route('open', undefined), route('typed', SECRET, '{ user: { type: string } }')];
});
afterEach(async () => {
  for (const m of managers) await m.stop('test over');
});

describe('a replayed signed delivery', () => {
  it('with GitHub\'s scheme is a duplicate of the first run for 24 h, whatever delivery id it carries', async () => {
    const { handle } = await start();
    const body = '{"user":"ada"}';
    const sig = { 'x-hub-signature-256': githubSignature(SECRET, body) };
    const first = await post(handle, '/hooks/github', body, { ...sig, 'x-github-delivery': 'd-1' });
    expect(first.status).toBe(202);
    const runId = (first.body as { runId: string }).runId;
    for (const extra of [{}, { 'x-github-delivery': 'd-2' }, { 'idempotency-key': 'fresh' }, { 'x-github-delivery': 'd-1' }]) {
      expect(await post(handle, '/hooks/github', body, { ...sig, ...extra })).toEqual({ status: 200, body: { runId, duplicate: true } });
    }
    clock += 23 * HOUR;
    expect((await post(handle, '/hooks/github', body, sig)).status).toBe(200);
    expect(await runFolders()).toEqual([runId]);
    // Past the window the same body is a new delivery.
    clock += 2 * HOUR;
    expect((await post(handle, '/hooks/github', body, sig)).status).toBe(202);
    expect(await runFolders()).toHaveLength(2);
  });

  it('with X-Ferry-Signature is a duplicate while its timestamp is fresh; a new timestamp is a new delivery', async () => {
    const { handle } = await start();
    const body = '{"n":1}';
    const sig = { 'x-ferry-signature': ferrySignature(SECRET, body, clock) };
    const first = await post(handle, '/hooks/github', body, sig);
    expect(first.status).toBe(202);
    clock += 200_000;
    expect(await post(handle, '/hooks/github', body, { ...sig, 'x-ferry-delivery': 'other' })).toEqual({ status: 200, body: { ...(first.body as object), duplicate: true } });
    clock += 200_000;
    expect((await post(handle, '/hooks/github', body, sig)).status).toBe(401); // stale: refused by the signature
    expect((await post(handle, '/hooks/github', body, { 'x-ferry-signature': ferrySignature(SECRET, body, clock) })).status).toBe(202);
    expect(await runFolders()).toHaveLength(2);
  });

  it('with Standard Webhooks is known by its signed webhook-id, also when the sender retries with a fresh timestamp', async () => {
    const { handle } = await start();
    const body = '{"n":2}';
    const first = await post(handle, '/hooks/standard', body, standardSignature(STANDARD_SECRET, 'msg_1', body, clock));
    expect(first.status).toBe(202);
    clock += 60_000;
    const again = await post(handle, '/hooks/standard', body, standardSignature(STANDARD_SECRET, 'msg_1', body, clock));
    expect(again).toEqual({ status: 200, body: { ...(first.body as object), duplicate: true } });
    expect((await post(handle, '/hooks/standard', body, standardSignature(STANDARD_SECRET, 'msg_2', body, clock))).status).toBe(202);
    expect((await post(handle, '/hooks/standard', body, { ...standardSignature(STANDARD_SECRET, 'msg_3', body, clock), 'webhook-id': 'msg_1' })).status).toBe(401);
    expect(await runFolders()).toHaveLength(2);
  });

  it('sent many times at once starts one run', async () => {
    const { handle } = await start();
    const body = '{"n":3}';
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(handle, '/hooks/github', body, { 'x-hub-signature-256': githubSignature(SECRET, body) })));
    const runIds = new Set(answers.map((a) => (a.body as { runId: string }).runId));
    expect(runIds.size).toBe(1);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 200, 200, 200, 200, 200, 202]);
    expect(await runFolders()).toEqual([...runIds]);
  });

  it('is still a duplicate after a restart, and a key past its window is not loaded again', async () => {
    const body = '{"n":4}';
    const sig = { 'x-hub-signature-256': githubSignature(SECRET, body) };
    const first = await (await start()).handle;
    const runId = ((await post(first, '/hooks/github', body, sig)).body as { runId: string }).runId;
    const std = await post(first, '/hooks/standard', body, standardSignature(STANDARD_SECRET, 'msg_r', body, clock));
    for (const m of managers.splice(0)) await m.stop('restart');

    const { handle } = await start();
    expect(await post(handle, '/hooks/github', body, sig)).toEqual({ status: 200, body: { runId, duplicate: true } });
    expect(await post(handle, '/hooks/standard', body, standardSignature(STANDARD_SECRET, 'msg_r', body, clock))).toEqual({ status: 200, body: { ...(std.body as object), duplicate: true } });
    for (const m of managers.splice(0)) await m.stop('restart');

    clock += 25 * HOUR;
    const later = await start();
    expect((await post(later.handle, '/hooks/github', body, sig)).status).toBe(202);
    // A webhook-id lasts as long as its run.
    expect((await post(later.handle, '/hooks/standard', body, standardSignature(STANDARD_SECRET, 'msg_r', body, clock))).status).toBe(200);
  });

  it('keeps the delivery headers of an unsigned webhook, webhook-id among them', async () => {
    const { handle } = await start();
    for (const header of ['x-github-delivery', 'x-ferry-delivery', 'idempotency-key', 'webhook-id']) {
      const first = await post(handle, '/hooks/open', '{}', { [header]: `id-${header}` });
      expect(first.status).toBe(202);
      expect(await post(handle, '/hooks/open', '{}', { [header]: `id-${header}` })).toEqual({ status: 200, body: { ...(first.body as object), duplicate: true } });
    }
    // Without a delivery id, unsigned deliveries are all new: nothing signed says they are the same.
    expect((await post(handle, '/hooks/open', '{}')).status).toBe(202);
    expect((await post(handle, '/hooks/open', '{}')).status).toBe(202);
  });
});

describe('a deeply nested body', () => {
  it.each([
    ['100k [', '['.repeat(100_000) + ']'.repeat(100_000)],
    ['129 levels of objects', '{"a":'.repeat(129) + '1' + '}'.repeat(129)],
  ])('(%s) is answered 400 and leaves nothing in the state dir', async (_case, body) => {
    const { handle } = await start();
    for (const hook of ['/hooks/open', '/hooks/github', '/hooks/typed']) {
      const headers = hook === '/hooks/open' ? {} : { 'x-hub-signature-256': githubSignature(SECRET, body) };
      expect(await post(handle, hook, body, headers)).toEqual({ status: 400, body: { error: 'body nests deeper than 128 levels' } });
    }
    expect(await runFolders()).toEqual([]);
  });

  it('of 128 levels is still accepted', async () => {
    const { handle } = await start();
    expect((await post(handle, '/hooks/open', '['.repeat(128) + ']'.repeat(128))).status).toBe(202);
  });

  it('that cannot be recorded leaves no run folder behind', async () => {
    const { runs } = await start();
    const r = routes[2] as Route;
    // A value JSON cannot write stands for any entry that fails before it is on disk.
    const trigger = { type: 'webhook' as const, body: { n: 10n }, headers: {}, query: {} };
    await expect(runs.accept({ route: r, deliveryId: 'x', replays: [], inputs: {}, trigger })).rejects.toThrow(/BigInt/);
    expect(await runFolders()).toEqual([]);
  });
});

describe('GET /runs/<id>', () => {
  it('is off without FERRY_API_TOKEN', async () => {
    const { handle } = await start();
    const runId = ((await post(handle, '/hooks/open', '{}')).body as { runId: string }).runId;
    const res = await handle({ method: 'GET', url: `/runs/${runId}`, headers: { authorization: `Bearer ${TOKEN}` }, body: Buffer.alloc(0) });
    expect(res).toEqual({ status: 404, body: { error: expect.stringContaining('with FERRY_API_TOKEN set') } });
  });

  it('asks for the token as a bearer and serves only runs of the workflows it serves', async () => {
    const { handle } = await start(TOKEN);
    const runId = ((await post(handle, '/hooks/open', '{}')).body as { runId: string }).runId;
    const get = (id: string, authorization?: string) => handle({ method: 'GET', url: `/runs/${id}`, headers: authorization === undefined ? {} : { authorization }, body: Buffer.alloc(0) });
    for (const wrong of [undefined, '', 'Bearer', `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, TOKEN]) {
      const res = await get(runId, wrong);
      expect(res.status).toBe(401);
      expect(res.headers).toEqual({ 'www-authenticate': 'Bearer' });
    }
    expect(await get(runId, `Bearer ${TOKEN}`)).toMatchObject({ status: 200, body: { runId } });
    expect(await get(runId, `bearer ${TOKEN}`)).toMatchObject({ status: 200 });

    // A run of another workflow in the same state dir (another listener's, a `ferry run`) is not shown.
    const others = route('elsewhere', undefined);
    const elsewhere = new RunManager({ stateDir, ferry: createFerry({ registry }), redactor: new Redactor(), env: {}, log: () => undefined });
    managers.push(elsewhere);
    await elsewhere.open([others.served]);
    const foreign = (await elsewhere.accept({ route: others, deliveryId: undefined, replays: [], inputs: {}, trigger: { type: 'webhook', body: {}, headers: {}, query: {} } })).runId;
    expect(await get(foreign, `Bearer ${TOKEN}`)).toEqual({ status: 404, body: { error: 'no such run' } });
  });
});

