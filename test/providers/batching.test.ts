import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { createFerry, type Ferry } from '../../src/engine/runtime.js';
import type { Batcher } from '../../src/engine/batcher.js';
import { fastRetry, runAgainst, sandboxProviders, userIds } from '../helpers/sandbox.js';

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await startSandbox();
});
afterAll(async () => sandbox.close());
beforeEach(() => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
});

const ids = userIds;
const eventsOf = (from = 0) => sandbox.amplitude.requests.slice(from).map((r) => (r.body as { events?: { user_id: string }[] }).events ?? []);

function loop(action: string, withBlock: string, extra = ''): string {
  return `
name: batching
${fastRetry}
${sandboxProviders(sandbox, { amplitude: extra, segment: extra })}
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 200 }
    steps:
      - id: call
        action: ${action}
        with: ${withBlock}
`;
}

describe('automatic batching', () => {
  it('coalesces concurrent identify calls into identification arrays, each item getting its own result', async () => {
    const summary = await runAgainst(loop('amplitude.identify_user', '{ user_id: <<id>>, user_properties: { n: <<loop.index>> } }'), { inputs: { ids: ids(200) } });
    expect(summary.status).toBe('succeeded');
    expect(sandbox.amplitude.requests.length).toBeLessThanOrEqual(3);
    expect(sandbox.amplitude.identifications).toHaveLength(200);
    expect(sandbox.amplitude.users.get('user_10042')).toEqual({ n: 42 });
    const out = summary.steps.each?.output as { items: { call: unknown }[] };
    expect(out.items.every((i) => i.call === 'success')).toBe(true);
  });

  it('fails only the event Amplitude names as invalid and sends the rest again', async () => {
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10007' });
    const summary = await runAgainst(loop('amplitude.send_event', '{ user_id: <<id>>, event_type: Batched }'), { inputs: { ids: ids(40) } });
    expect(summary.status).toBe('failed');
    expect(summary.error).toMatchObject({ step: 'call', item: 7, status: 400 });
    expect(summary.error?.message).toContain('invalid `user_id`');
    expect(summary.steps.each?.steps?.call).toMatchObject({ succeeded: 39, failed: 1 });
    const stored = [...sandbox.amplitude.events.values()].map((e) => e.user_id);
    expect(stored).toHaveLength(39);
    expect(stored).not.toContain('user_10007');
  });

  it('splits a batch that gets 413 and sends the halves', async () => {
    sandbox.amplitude.inject({ kind: 'status', status: 413, times: 1, body: { code: 413, error: 'Payload too large' } });
    const summary = await runAgainst(loop('amplitude.send_event', '{ user_id: <<id>>, event_type: Big }'), { inputs: { ids: ids(50) } });
    expect(summary.status).toBe('succeeded');
    const [first, ...rest] = eventsOf();
    expect(first).toHaveLength(50);
    expect(rest.map((e) => e.length).reduce((a, b) => a + b, 0)).toBe(50);
    expect(rest.length).toBeGreaterThanOrEqual(2);
    expect(sandbox.amplitude.events.size).toBe(50);
    expect(summary.steps.each?.steps?.call?.calls.attempts).toBe(50);
  });

  it('retries only the throttled events of a 429, after the wait', async () => {
    sandbox.amplitude.inject({ kind: 'throttle-user', userId: 'user_10003', retryAfter: 1 });
    const summary = await runAgainst(loop('amplitude.send_event', '{ user_id: <<id>>, event_type: Hot }'), { inputs: { ids: ids(30) } });
    expect(summary.status).toBe('succeeded');
    const [first, second] = sandbox.amplitude.requests;
    expect(first?.status).toBe(429);
    expect((second?.body as { events: { user_id: string }[] }).events.map((e) => e.user_id)).toEqual(['user_10003']);
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(950);
    expect(sandbox.amplitude.events.size).toBe(30);
    expect(sandbox.amplitude.duplicateInsertIds).toBe(0);
  });

  it('keeps every item and idempotency key through random 429s, 503s and resets, with no duplicates stored', async () => {
    sandbox.segment.inject({ kind: 'random', rate429: 0.15, rate503: 0.15, rateReset: 0.1, retryAfter: 0, seed: 3 });
    const summary = await runAgainst(`
name: chaos
retry: { attempts: 10, backoff: { initial: 1ms, max: 5ms } }
${sandboxProviders(sandbox, { segment: '    batch: { max_items: 25 }' })}
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 100 }
    steps:
      - { id: call, action: segment.track, with: { userId: <<id>>, event: Chaos } }
`, { inputs: { ids: ids(500) } });
    expect(summary.status).toBe('succeeded');
    expect(sandbox.segment.messages.size).toBe(500);
    const batches = sandbox.segment.requests.filter((r) => r.path === '/v1/batch');
    expect(batches.length).toBeGreaterThan(0);
    expect(batches.every((r) => ((r.body as { batch?: unknown[] }).batch?.length ?? 0) <= 25)).toBe(true);
  });

  it('writes a Segment batch as bytes with every message intact, multi-byte text included', async () => {
    const summary = await runAgainst(loop('segment.track', '{ userId: <<id>>, event: "Größe ✓", properties: { n: <<loop.index>>, note: "naïve 😀" } }'), { inputs: { ids: ids(300) } });
    expect(summary.status).toBe('succeeded');
    const batches = sandbox.segment.requests.filter((r) => r.path === '/v1/batch');
    expect(batches.length).toBeGreaterThan(0);
    const messages = sandbox.segment.requests.flatMap((r) => (r.path === '/v1/batch' ? (r.body as { batch: Record<string, unknown>[] }).batch : [r.body as Record<string, unknown>]));
    expect(messages).toHaveLength(300);
    expect(messages.map((m) => (m.properties as { n: number }).n).sort((x, y) => x - y)).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(messages.every((m) => m.event === 'Größe ✓' && (m.properties as { note: string }).note === 'naïve 😀' && m.type === 'track')).toBe(true);
  });

  it('isolates a message Segment refuses by splitting the batch', async () => {
    sandbox.segment.inject({ kind: 'reject-user', userId: 'user_10011' });
    const summary = await runAgainst(loop('segment.track', '{ userId: <<id>>, event: Split }'), { inputs: { ids: ids(32) } });
    expect(summary.status).toBe('failed');
    expect(summary.error).toMatchObject({ step: 'call', item: 11, status: 400 });
    expect(sandbox.segment.messages.size).toBe(31);
  });

  it('sends one request per call with `batch: false`', async () => {
    const summary = await runAgainst(loop('segment.track', '{ userId: <<id>>, event: Single }', '    batch: false'), { inputs: { ids: ids(20) } });
    expect(summary.status).toBe('succeeded');
    expect(sandbox.segment.requests).toHaveLength(20);
    expect(sandbox.segment.requests.every((r) => r.path === '/v1/track')).toBe(true);
  });

  it('keeps each run\'s own `batch:` setting when runs share the provider queues', async () => {
    const ferry = createFerry();
    const [single, batched] = await Promise.all([
      runAgainst(loop('segment.track', '{ userId: <<id>>, event: Single }', '    batch: false'), { inputs: { ids: ids(10) }, ferry }),
      runAgainst(loop('segment.track', '{ userId: <<id>>, event: Together }'), { inputs: { ids: ids(10, 20_000) }, ferry }),
    ]);
    expect([single.status, batched.status]).toEqual(['succeeded', 'succeeded']);
    const tracks = sandbox.segment.requests.filter((r) => r.path === '/v1/track');
    expect(tracks).toHaveLength(10);
    expect(tracks.every((r) => (r.body as { event: string }).event === 'Single')).toBe(true);
    const batches = sandbox.segment.requests.filter((r) => r.path === '/v1/batch');
    expect(batches.flatMap((r) => (r.body as { batch: { event: string }[] }).batch.map((m) => m.event))).toEqual(Array(10).fill('Together'));
  });
});

describe('when a batch leaves', () => {
  /** The flush counts of `provider`'s batcher in `ferry` (one account per provider here). */
  function flushes(ferry: Ferry, provider: string): Batcher['flushes'] {
    const queue = ferry.limits.scopes.find((q) => q.provider === provider);
    if (!queue) throw new Error(`no ${provider} scope`);
    return ferry.limits.batcher(queue).flushes;
  }

  function loopOf(concurrency: number, steps: string, extra: { amplitude?: string; segment?: string }): string {
    return `
name: leaves
${fastRetry}
${sandboxProviders(sandbox, extra)}
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: ${concurrency} }
    steps:
${steps}
`;
  }

  it('sends each item of a loop with concurrency 1 at once, never waiting for the window', async () => {
    const ferry = createFerry();
    const yaml = loopOf(1, '      - { id: call, action: amplitude.send_event, with: { user_id: <<id>>, event_type: One } }', { amplitude: '    batch: { window: 2s }' });
    const summary = await runAgainst(yaml, { inputs: { ids: ids(5) }, ferry });
    expect(summary.status).toBe('succeeded');
    expect(eventsOf().map((events) => events.length)).toEqual([1, 1, 1, 1, 1]);
    // Each batch left because no other item of the loop could join it, not at its window's end.
    expect(flushes(ferry, 'amplitude')).toEqual({ full: 0, idle: 5, window: 0 });
    const at = sandbox.amplitude.requests.map((r) => r.at);
    for (let i = 1; i < at.length; i++) expect((at[i] ?? 0) - (at[i - 1] ?? 0)).toBeLessThan(1000);
  });

  it('flushes the batches of two providers one loop feeds as soon as every item waits on one of them', async () => {
    const ferry = createFerry();
    const steps = `      - { id: amp, action: amplitude.send_event, with: { user_id: <<id>>, event_type: Two } }
      - { id: seg, action: segment.track, with: { userId: <<id>>, event: Two } }`;
    const summary = await runAgainst(loopOf(4, steps, { amplitude: '    batch: { window: 2s }', segment: '    batch: { window: 2s }' }), { inputs: { ids: ids(12) }, ferry });
    expect(summary.status).toBe('succeeded');
    expect(sandbox.amplitude.events.size).toBe(12);
    expect(sandbox.segment.messages.size).toBe(12);
    expect(flushes(ferry, 'amplitude').window).toBe(0);
    expect(flushes(ferry, 'segment').window).toBe(0);
    expect(flushes(ferry, 'amplitude').idle).toBeLessThan(12);
  });

  it('keeps several batches in flight with loop concurrency 16 and provider concurrency 16', async () => {
    sandbox.amplitude.setLatency(20);
    try {
      const ferry = createFerry();
      const yaml = loopOf(16, '      - { id: call, action: amplitude.send_event, with: { user_id: <<id>>, event_type: Busy } }', { amplitude: '    concurrency: 16' });
      const summary = await runAgainst(yaml, { inputs: { ids: ids(640) }, ferry });
      expect(summary.status).toBe('succeeded');
      expect(sandbox.amplitude.events.size).toBe(640);
      expect(sandbox.amplitude.maxInFlight).toBeGreaterThan(1);
      // Batched all the same: items join while earlier batches are on the wire.
      expect(sandbox.amplitude.requests.length).toBeLessThan(640);
      const out = summary.steps.each?.output as { items: { call: { events_ingested: number } }[] };
      expect(out.items).toHaveLength(640);
      expect(out.items.every((i) => i.call.events_ingested >= 1)).toBe(true);
    } finally {
      sandbox.amplitude.setLatency(0);
    }
  });
});
