/**
 * The official Node SDK (@segment/analytics-node 3.1.0) against the Segment emulator: every
 * normal call is taken, an invalid message is answered 200 and dropped as Segment does (and
 * kept in `segment.dropped` with why), an oversized one refuses its batch, and the SDK's own
 * retries end with each message stored once.
 */
import { Analytics, type AnalyticsSettings } from '@segment/analytics-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSegmentEmulator, type SegmentEmulator } from '../../src/sandbox/index.js';
import { SEG_KEY } from './helpers.js';

let seg: SegmentEmulator;
beforeAll(async () => {
  seg = await startSegmentEmulator();
});
afterAll(async () => seg.close());
beforeEach(() => seg.reset());

type Call = (callback: (err?: unknown) => void) => void;

/** A client on the emulator. `flushInterval` is long enough for a test's calls to share a batch. */
function sdk(settings: Partial<AnalyticsSettings> = {}): Analytics {
  return new Analytics({ writeKey: SEG_KEY, host: seg.url, flushInterval: 200, maxRetries: 3, ...settings });
}

/** Makes the calls, flushes, and gives each call's delivery error (undefined when delivered). */
async function deliver(client: Analytics, calls: Call[]): Promise<unknown[]> {
  const outcomes = calls.map((call) => new Promise<unknown>((resolve) => call((err) => resolve(err))));
  await client.closeAndFlush({ timeout: 60_000 });
  return Promise.all(outcomes);
}

const delivered = (errors: unknown[]): boolean[] => errors.map((e) => e === undefined || e === null);

describe('@segment/analytics-node against the Segment emulator', () => {
  it('stores all 1,200 messages of every kind, sent in 600-message batches, a 32,728-byte message among them', async () => {
    const client = sdk({ maxEventsInBatch: 600 });
    const calls: Call[] = [];
    for (let i = 0; i < 1199; i++) {
      const userId = `user_${1000 + (i % 40)}`;
      const context = { ip: '127.0.0.1', locale: 'is-IS' };
      switch (i % 6) {
        case 0: calls.push((cb) => client.identify({ userId, traits: { plan: 'pro', n: i, address: { city: 'Reykjavik' } }, context }, cb)); break;
        case 1: calls.push((cb) => client.track({ userId, event: 'Order Completed', properties: { total: 42.5, items: [{ sku: 'a' }] }, timestamp: new Date(1_764_064_800_000 + i), context }, cb)); break;
        case 2: calls.push((cb) => client.page({ anonymousId: `anon-${i}`, category: 'Docs', name: 'Home', properties: { path: '/' } }, cb)); break;
        case 3: calls.push((cb) => client.screen({ userId, name: 'Main', properties: { tab: 1 } }, cb)); break;
        case 4: calls.push((cb) => client.group({ userId, groupId: `org-${i % 7}`, traits: { size: i } }, cb)); break;
        default: calls.push((cb) => client.alias({ userId, previousId: `anon-${i}` }, cb));
      }
    }
    // One message of exactly 32,728 bytes as the SDK sends it (under Segment's 32 KB): the
    // SDK's overhead is measured on an empty probe first, then the pad fills the rest.
    const big = (pad: string, messageId: string) => ({ userId: 'user_big', event: 'Big', properties: { pad }, messageId, timestamp: new Date(1_764_064_800_000) });
    const probe = sdk();
    await deliver(probe, [(cb) => probe.track(big('', 'probe-1'), cb)]);
    const overhead = Buffer.byteLength(JSON.stringify((seg.requests[0]?.body as { batch: unknown[] }).batch[0]));
    seg.reset();
    calls.push((cb) => client.track(big('x'.repeat(32_728 - overhead), 'big-001'), cb));
    const errors = await deliver(client, calls);

    expect(delivered(errors).every(Boolean)).toBe(true);
    expect(seg.messages.size).toBe(1200);
    expect(seg.dropped).toEqual([]);
    expect([...seg.messagesPerType].sort()).toEqual([['alias', 199], ['group', 200], ['identify', 200], ['page', 200], ['screen', 200], ['track', 201]]);
    expect(seg.requests.every((r) => r.path === '/v1/batch' && r.status === 200)).toBe(true);
    expect(Math.max(...seg.requests.map((r) => (r.body as { batch: unknown[] }).batch.length))).toBe(600);
    const batch = seg.requests.flatMap((r) => (r.body as { batch: { messageId: string }[] }).batch);
    expect(Buffer.byteLength(JSON.stringify(batch.find((m) => m.messageId === 'big-001')))).toBe(32_728);
  });

  it('answers 200 to a batch holding invalid messages: the SDK delivers it, the valid ones are stored and the invalid ones dropped with why', async () => {
    const client = sdk();
    const errors = await deliver(client, [
      (cb) => client.track({ userId: 'user_1001', event: 'Valid', messageId: 'valid-1' }, cb),
      // The SDK's types want a user; its runtime lets these through, as users' untyped code does.
      (cb) => client.group({ groupId: 'org-1', traits: {}, messageId: 'group-only' } as unknown as Parameters<Analytics['group']>[0], cb),
      (cb) => client.alias({ previousId: 'anon-1', messageId: 'alias-no-user' } as unknown as Parameters<Analytics['alias']>[0], cb),
      (cb) => client.track({ userId: 'user_1001', event: '', messageId: 'empty-event' }, cb),
      (cb) => client.track({ userId: 'user_1001', event: 'Long id', messageId: 'm'.repeat(101) }, cb),
      (cb) => client.track({ userId: 'user_1001', event: 'Yesterday', timestamp: 'yesterday', messageId: 'yesterday' }, cb),
      (cb) => client.identify({ userId: 'user_1001', traits: { plan: 'pro' }, messageId: 'valid-2' }, cb),
    ]);
    expect(delivered(errors)).toEqual([true, true, true, true, true, true, true]);
    expect(seg.requests.map((r) => r.status)).toEqual([200]);
    expect([...seg.messages.keys()]).toEqual(['valid-1', 'valid-2']);
    expect(seg.dropped.map((d) => [d.n, d.batchIndex, d.reason])).toEqual([
      [2, 1, 'userId: userId or anonymousId is required'],
      [3, 2, 'userId: userId or anonymousId is required'],
      [4, 3, 'event: track requires event (a string)'],
      [5, 4, 'messageId: must be a string of 1 to 100 characters'],
      [6, 5, 'timestamp: must be an ISO-8601 string'],
    ]);
  });

  it('refuses a batch with a message over 32 KB with 400: the SDK fails that batch and stores nothing of it', async () => {
    // The SDK's own size check counts escapes, not bytes: 40,000 plain letters pass it and reach the API.
    const client = sdk();
    const errors = await deliver(client, [
      (cb) => client.track({ userId: 'user_1001', event: 'Fine', messageId: 'fine-1' }, cb),
      (cb) => client.track({ userId: 'user_1001', event: 'Huge', properties: { pad: 'x'.repeat(40_000) } }, cb),
    ]);
    expect(delivered(errors)).toEqual([false, false]);
    expect(String(errors[0])).toMatch(/\[400\]/);
    expect(seg.requests.map((r) => r.status)).toEqual([400]);
    expect(seg.messages.size).toBe(0);
  });

  it('answers 200 to an unknown write key, as Segment does, and counts it', async () => {
    const client = sdk({ writeKey: 'who-knows' });
    const errors = await deliver(client, [(cb) => client.track({ userId: 'user_1001', event: 'X' }, cb)]);
    expect(delivered(errors)).toEqual([true]);
    expect(seg.unknownWriteKeys).toBe(1);
  });

  it('retries a 500 and waits out a 429 with Retry-After, storing each message once', async () => {
    seg.inject({ kind: 'status', status: 500, times: 1 });
    seg.inject({ kind: 'status', status: 429, times: 1, retryAfter: 1 });
    const client = sdk();
    const errors = await deliver(client, Array.from({ length: 5 }, (_, i): Call => (cb) => client.track({ userId: 'user_1001', event: 'Retried', messageId: `r-${i}` }, cb)));
    expect(delivered(errors)).toEqual([true, true, true, true, true]);
    expect(seg.requests.map((r) => r.status)).toEqual([500, 429, 200]);
    expect(seg.requests[2]?.headers['x-retry-count']).toBe('2');
    expect(seg.messages.size).toBe(5);
    expect(seg.duplicateMessageIds).toBe(0);
  });
});
