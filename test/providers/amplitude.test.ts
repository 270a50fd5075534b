import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { AMPLITUDE_KEY, exportWorkflow, fastRetry, runAgainst, sandboxProviders } from '../helpers/sandbox.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await startSandbox();
});
afterAll(async () => sandbox.close());
beforeEach(() => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
});

const identify = (withBlock: string, extra = ''): string => `
name: amp
${fastRetry}
${sandboxProviders(sandbox)}
${extra}
steps:
  - id: amp
    action: amplitude.identify_user
    with:
${withBlock}
`;

describe('amplitude.identify_user', () => {
  it('sends the form body api_key + identification exactly, and outputs "success"', async () => {
    const summary = await runAgainst(identify(`      user_id: user_1001
      user_properties_json: '{"plan":"pro","seats":5}'
      country: Iceland`));
    expect(summary.status).toBe('succeeded');
    expect(summary.steps.amp?.output).toBe('success');
    const [req] = sandbox.amplitude.requests;
    expect(req?.path).toBe('/identify');
    expect(req?.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const identification = JSON.stringify({ user_id: 'user_1001', country: 'Iceland', user_properties: { plan: 'pro', seats: 5 } });
    expect(req?.rawBody).toBe(`api_key=${AMPLITUDE_KEY}&identification=${encodeURIComponent(identification).replace(/%20/g, '+')}`);
  });

  it('translates $set_once and the other snake_case operators to camelCase', async () => {
    const summary = await runAgainst(identify(`      user_id: user_1001
      user_properties:
        $set: { plan: pro }
        $set_once: { first_seen: "2026-01-01" }
        $pre_insert: { tags: new }
        $add: { logins: 1 }`));
    expect(summary.status).toBe('succeeded');
    const sent = sandbox.amplitude.identifications[0] as { user_properties: Record<string, unknown> };
    expect(Object.keys(sent.user_properties)).toEqual(['$set', '$setOnce', '$preInsert', '$add']);
    expect(sandbox.amplitude.users.get('user_1001')).toMatchObject({ plan: 'pro', first_seen: '2026-01-01', logins: 1 });
  });

  // Written as literals these are validate errors (test/workflow/literal-checks.test.ts); from data, the run refuses them.
  it('rejects mixing operators and plain keys before sending anything', async () => {
    const summary = await runAgainst(identify(`      user_id: user_1001
      user_properties_json: <<inputs.props>>`), { inputs: { props: '{"$set":{"plan":"pro"},"seats":5}' } });
    expect(summary.status).toBe('failed');
    expect(summary.error?.message).toMatch(/`user_properties_json` mixes operators \(\$set\) with plain keys \(seats\)/);
    expect(sandbox.amplitude.requests).toHaveLength(0);
  });

  it('reports invalid user_properties_json as an input error naming the field', async () => {
    const summary = await runAgainst(identify(`      user_id: user_1001
      user_properties_json: <<inputs.props>>`), { inputs: { props: '{"plan": pro}' } });
    expect(summary.error?.message).toMatch(/invalid input: `user_properties_json` is not valid JSON/);
    expect(sandbox.amplitude.requests).toHaveLength(0);
  });

  it('fails at once on a 400 with the provider message, after one attempt', async () => {
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_bad01' });
    const summary = await runAgainst(identify('      user_id: user_bad01'));
    expect(summary.status).toBe('failed');
    expect(summary.error?.status).toBe(400);
    // The Identify API answers in plain text: that text is Amplitude's own words.
    expect(summary.error?.message).toContain('amplitude answered 400 "invalid identification[0].user_id: user_bad01 is rejected"');
    expect(summary.error?.provider).toEqual({ name: 'amplitude', status: 400, error: 'invalid identification[0].user_id: user_bad01 is rejected' });
    expect(sandbox.amplitude.requests).toHaveLength(1);
    expect(summary.steps.amp?.calls).toMatchObject({ attempts: 1, failures: { 400: 1 } });
  });

  it('redacts the api key when Amplitude echoes it in an error', async () => {
    const summary = await runAgainst(`
name: badkey
${fastRetry}
providers:
  amplitude: { api_key: "<<secrets.AMP>>", base_url: ${sandbox.amplitude.url} }
secrets: [AMP]
steps:
  - { id: amp, action: amplitude.identify_user, with: { user_id: user_1001 } }
`, { secrets: { AMP: 'not-the-right-key-123' } });
    expect(summary.status).toBe('failed');
    // The engine keeps raw text; the CLI redacts at output. The error must carry the echo for this test to mean anything.
    expect(summary.error?.message).toContain('Invalid API key');
  });
});

const event = (withBlock: string): string => `
name: ev
${fastRetry}
${sandboxProviders(sandbox)}
steps:
  - id: ev
    action: amplitude.send_event
    with:
${withBlock}
`;

describe('amplitude.send_event', () => {
  it('converts an ISO time to ms and adds a derived insert_id that is stable for the run', async () => {
    const yaml = event(`      user_id: user_1001
      event_type: Signed Up
      time: "2026-11-25T10:00:00.000Z"
      event_properties: { plan: pro }`);
    const first = await runAgainst(yaml, { runId: 'RUN_A' });
    const again = await runAgainst(yaml, { runId: 'RUN_A' });
    await runAgainst(yaml, { runId: 'RUN_B' });
    expect(first.steps.ev?.output).toMatchObject({ events_ingested: 1 });
    const bodies = sandbox.amplitude.requests.map((r) => r.body as { events: { time: number; insert_id: string }[] });
    expect(bodies[0]?.events[0]?.time).toBe(Date.parse('2026-11-25T10:00:00.000Z'));
    expect(bodies[0]?.events[0]?.insert_id).toBe(bodies[1]?.events[0]?.insert_id);
    expect(bodies[2]?.events[0]?.insert_id).not.toBe(bodies[0]?.events[0]?.insert_id);
    expect(sandbox.amplitude.events.size).toBe(2);
    expect(again.status).toBe('succeeded');
  });

  it('keeps a user-given insert_id', async () => {
    await runAgainst(event(`      user_id: user_1001
      event_type: x
      insert_id: my-own-id`));
    expect((sandbox.amplitude.requests[0]?.body as { events: { insert_id: string }[] }).events[0]?.insert_id).toBe('my-own-id');
  });

  it.each([
    ['anonymous', /rejects as an id/],
    ['0', /rejects as an id/],
    ['abc', /shorter than 5 characters/],
  ])('refuses user_id %s from data before sending', async (id, message) => {
    const summary = await runAgainst(event(`      user_id: <<inputs.id>>
      event_type: x`), { inputs: { id } });
    expect(summary.error?.message).toMatch(message);
    expect(sandbox.amplitude.requests).toHaveLength(0);
  });

  it('accepts short ids when min_id_length allows them', async () => {
    const summary = await runAgainst(event(`      user_id: "abc"
      event_type: x
      min_id_length: 3`));
    expect(summary.status).toBe('succeeded');
    expect((sandbox.amplitude.requests[0]?.body as { options: unknown }).options).toEqual({ min_id_length: 3 });
  });

  it('waits for a 429 Retry-After and then succeeds', async () => {
    sandbox.amplitude.inject({ kind: 'status', status: 429, retryAfter: 1 });
    const summary = await runAgainst(event(`      user_id: user_1001
      event_type: x`));
    expect(summary.status).toBe('succeeded');
    const [a, b] = sandbox.amplitude.requests;
    expect((b?.at ?? 0) - (a?.at ?? 0)).toBeGreaterThanOrEqual(950);
    expect(summary.steps.ev?.calls).toMatchObject({ attempts: 2, failures: { 429: 1 } });
  });
});

describe('amplitude provider queue', () => {
  it('never has more than `concurrency` requests in flight', async () => {
    sandbox.amplitude.setLatency(15);
    try {
      const summary = await runAgainst(`
name: conc
${sandboxProviders(sandbox, { amplitude: '    concurrency: 3\n    batch: false' })}
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 25 }
    steps:
      - { id: ev, action: amplitude.send_event, with: { user_id: <<id>>, event_type: x } }
`, { inputs: { ids: Array.from({ length: 40 }, (_, i) => `user_${1000 + i}`) } });
      expect(summary.status).toBe('succeeded');
      expect(sandbox.amplitude.maxInFlight).toBe(3);
    } finally {
      sandbox.amplitude.setLatency(0);
    }
  });

  it('sends nothing to the provider while a Retry-After pause lasts', async () => {
    sandbox.amplitude.setLatency(5);
    sandbox.amplitude.inject({ kind: 'status', status: 429, retryAfter: 1 });
    try {
      const summary = await runAgainst(`
name: pause
${fastRetry}
${sandboxProviders(sandbox, { amplitude: '    concurrency: 4' })}
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 8 }
    steps:
      - { id: ev, action: amplitude.send_event, with: { user_id: <<id>>, event_type: x } }
`, { inputs: { ids: Array.from({ length: 30 }, (_, i) => `user_${1000 + i}`) } });
      expect(summary.status).toBe('succeeded');
      const requests = sandbox.amplitude.requests;
      const throttled = requests.find((r) => r.status === 429);
      expect(throttled).toBeDefined();
      // Requests already on the wire when the 429 came back (at most concurrency - 1) may land;
      // after those, nothing may arrive until the second is over.
      const answeredAt = (throttled?.at ?? 0) + 5;
      const during = requests.filter((r) => r.at > answeredAt + 20 && r.at < (throttled?.at ?? 0) + 950);
      expect(during).toHaveLength(0);
      expect(sandbox.amplitude.events.size).toBe(30);
    } finally {
      sandbox.amplitude.setLatency(0);
    }
  });

  it.each([['batched', 'true'], ['one call per event', 'false']])('delivers 1000 events through 10%% 429s, 10%% 503s and resets, each insert_id stored once (%s)', async (_mode, batch) => {
    sandbox.amplitude.inject({ kind: 'random', rate429: 0.1, rate503: 0.1, rateReset: 0.05, retryAfter: 0, seed: 7 });
    const ids = Array.from({ length: 1000 }, (_, i) => `user_${10_000 + i}`);
    const summary = await runAgainst(`
name: chaos
retry: { attempts: 10, backoff: { initial: 1ms, factor: 2, max: 10ms } }
${sandboxProviders(sandbox, { amplitude: `    concurrency: 10\n    batch: ${batch}` })}
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 50 }
    steps:
      - { id: ev, action: amplitude.send_event, with: { user_id: <<id>>, event_type: chaos } }
`, { inputs: { ids } });
    expect(summary.status).toBe('succeeded');
    expect(sandbox.amplitude.events.size).toBe(1000);
    const failures = summary.steps.each?.steps?.ev?.calls.failures ?? {};
    expect(failures['429']).toBeGreaterThan(0);
    expect(failures['503']).toBeGreaterThan(0);
    expect(failures.FERRY_PROVIDER_NETWORK).toBeGreaterThan(0);
    const stored = [...sandbox.amplitude.events.values()] as { user_id: string }[];
    expect(new Set(stored.map((e) => e.user_id))).toEqual(new Set(ids));
  });
});

describe('amplitude.export_events', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('ferry-export-');
  });
  const exportFlow = (start: string, end: string, out: string): string => exportWorkflow(sandbox, dir, start, end, out);

  it("quotes the Export API's own words on a 401 beside what to check", async () => {
    const summary = await runAgainst(exportFlow('20261101T00', '20261101T01', 'denied.ndjson').replace('secret_key: sandbox-amplitude-secret', 'secret_key: not-the-secret'));
    expect(summary.status).toBe('failed');
    expect(summary.error?.message).toContain('amplitude export answered 401 "Invalid credentials: the export needs HTTP Basic auth with api_key:secret_key": check api_key and secret_key');
    expect(summary.error?.provider).toEqual({ name: 'amplitude', status: 401, error: 'Invalid credentials: the export needs HTTP Basic auth with api_key:secret_key' });
  });

  it('streams a multi-hour zip of gzipped NDJSON into one NDJSON file with the exact count', async () => {
    const hours = new Map<string, object[]>();
    for (const [h, n] of [['20261101T00', 3], ['20261101T01', 0], ['20261101T02', 250], ['20261101T03', 1]] as const) {
      hours.set(h, Array.from({ length: n }, (_, i) => ({ event_type: 'x', user_id: `u${h}-${i}`, event_time: h })));
    }
    sandbox.amplitude.setExportData(hours);
    const summary = await runAgainst(exportFlow('20261101T00', '2026-11-01T03:30:00Z', 'a.ndjson'));
    expect(summary.status).toBe('succeeded');
    expect(summary.steps.exp?.output).toEqual({ count: 254, path: path.join(dir, 'a.ndjson') });
    const lines = (await readFile(path.join(dir, 'a.ndjson'), 'utf8')).split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines.slice(0, -1).map((l) => JSON.parse(l).user_id)).toEqual([...hours.values()].flat().map((e) => (e as { user_id: string }).user_id));
    expect(sandbox.amplitude.requests[0]?.headers.authorization).toBe(`Basic ${Buffer.from(`${AMPLITUDE_KEY}:sandbox-amplitude-secret`).toString('base64')}`);
  });

  it('treats 404 as zero events', async () => {
    sandbox.amplitude.setExportData(new Map());
    const summary = await runAgainst(exportFlow('20261101T00', '20261101T05', 'empty.ndjson'));
    expect(summary.steps.exp?.output).toMatchObject({ count: 0 });
    expect(await readFile(path.join(dir, 'empty.ndjson'), 'utf8')).toBe('');
  });

  it('splits the hour range when Amplitude says it is too large', async () => {
    const hours = new Map<string, object[]>();
    for (let h = 0; h < 8; h++) hours.set(`20261102T0${h}`, Array.from({ length: 10 }, (_, i) => ({ event_type: 'x', n: h * 10 + i })));
    sandbox.amplitude.setExportData(hours);
    sandbox.amplitude.setExportLimitBytes(400 * 4);
    const summary = await runAgainst(exportFlow('20261102T00', '20261102T07', 'split.ndjson'));
    sandbox.amplitude.setExportLimitBytes(Number.POSITIVE_INFINITY);
    expect(summary.status).toBe('succeeded');
    expect(summary.steps.exp?.output).toMatchObject({ count: 80 });
    const ns = (await readFile(path.join(dir, 'split.ndjson'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l).n);
    expect(ns).toEqual(Array.from({ length: 80 }, (_, i) => i));
    expect(sandbox.amplitude.requests.filter((r) => r.status === 400).length).toBeGreaterThan(0);
  });
});
