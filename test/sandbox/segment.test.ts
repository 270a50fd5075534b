import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSegmentEmulator, type SegmentEmulator } from '../../src/sandbox/index.js';
import { basic, postJson, SEG_KEY } from './helpers.js';

let seg: SegmentEmulator;
beforeAll(async () => {
  seg = await startSegmentEmulator();
});
afterAll(async () => seg.close());
beforeEach(() => seg.reset());

const auth = { authorization: basic(SEG_KEY, '') };
const call = (type: string, body: unknown, headers: Record<string, string> = auth) => postJson(`${seg.url}/v1/${type}`, body, headers);
const bad = (error: string) => ({ success: false, error });
const reasons = () => seg.dropped.map((d) => d.reason);

/** What @segment/analytics-node posts. */
const sdkBatch = (messages: Record<string, unknown>[]) => ({
  batch: messages.map((m, i) => ({
    messageId: `node-next-${i}-${'a'.repeat(20)}`,
    timestamp: '2026-11-25T10:00:00.000Z',
    integrations: {},
    context: { library: { name: '@segment/analytics-node', version: '2.1.0' } },
    _metadata: { jsRuntime: 'node' },
    ...m,
  })),
  writeKey: SEG_KEY,
  sentAt: '2026-11-25T10:00:01.000Z',
});

describe('Segment HTTP Tracking API emulator', () => {
  it('answers {"success":true} and stores the message with its type', async () => {
    const r = await call('identify', { userId: 'user_1001', traits: { plan: 'pro' }, messageId: 'm-1' });
    expect([r.status, r.json()]).toEqual([200, { success: true }]);
    expect(seg.messages.get('m-1')).toEqual({ type: 'identify', userId: 'user_1001', traits: { plan: 'pro' }, messageId: 'm-1' });
    expect(seg.requests[0]).toMatchObject({ path: '/v1/identify', status: 200, writeKeyValid: true });
  });

  it('takes every call type: track, page, screen, group and alias', async () => {
    expect((await call('track', { anonymousId: 'anon-1', event: 'Clicked', properties: { n: 1 } })).status).toBe(200);
    expect((await call('page', { userId: 'user_1', name: 'Home', properties: {} })).status).toBe(200);
    expect((await call('screen', { userId: 'user_1', name: 'Main' })).status).toBe(200);
    expect((await call('group', { userId: 'user_1', groupId: 'org-1', traits: { size: 3 } })).status).toBe(200);
    expect((await call('alias', { userId: 'user_1', previousId: 'anon-1' })).status).toBe(200);
    expect([...seg.messagesPerType]).toEqual([['track', 1], ['page', 1], ['screen', 1], ['group', 1], ['alias', 1]]);
    // Without their required ids Segment answers 200 and drops them.
    expect((await call('group', { userId: 'user_1' })).json()).toEqual({ success: true });
    expect((await call('alias', { userId: 'user_1' })).json()).toEqual({ success: true });
    expect(reasons()).toEqual(['groupId: group requires groupId (a string)', 'previousId: alias requires previousId (a string)']);
    expect(seg.messages.size).toBe(5);
  });

  it('answers 200 to an unknown write key but records it as not valid', async () => {
    const r = await call('track', { userId: 'user_1', event: 'x' }, { authorization: basic('who-knows', '') });
    expect(r.status).toBe(200);
    expect(seg.requests[0]?.writeKeyValid).toBe(false);
    expect(seg.unknownWriteKeys).toBe(1);
    expect(seg.messages.size).toBe(1);
  });

  it('takes the write key from the body when there is no Basic auth, and never stores it', async () => {
    const r = await call('track', { userId: 'user_1', event: 'x', writeKey: SEG_KEY, messageId: 'k-1' }, {});
    expect(r.status).toBe(200);
    expect(seg.requests[0]?.writeKeyValid).toBe(true);
    expect(seg.messages.get('k-1')).not.toHaveProperty('writeKey');
  });

  it('refuses a call with no write key at all with 400', async () => {
    const none = await call('track', { userId: 'user_1', event: 'x' }, {});
    expect([none.status, none.json()]).toEqual([400, bad('missing write key: send HTTP Basic auth with the write key as user name, or writeKey in the body')]);
    const emptyUser = await call('track', { userId: 'user_1', event: 'x' }, { authorization: basic('', 'secret') });
    expect(emptyUser.status).toBe(400);
    expect(seg.requests.every((r) => r.writeKeyValid === undefined)).toBe(true);
    expect(seg.messages.size).toBe(0);
  });

  it('accepts the batch @segment/analytics-node sends', async () => {
    const r = await call('batch', sdkBatch([{ type: 'identify', userId: 'user_1', traits: { a: 1 } }, { type: 'track', userId: 'user_1', event: 'Done' }]), {});
    expect([r.status, r.json()]).toEqual([200, { success: true }]);
    expect(seg.received).toBe(2);
    expect([...seg.messagesPerType]).toEqual([['identify', 1], ['track', 1]]);
  });

  it('applies batch-level context and integrations to each message, the message winning', async () => {
    await call('batch', { batch: [{ type: 'track', userId: 'user_1', event: 'x', messageId: 'c-1', context: { ip: '1.2.3.4' } }], context: { ip: '0.0.0.0', locale: 'is' }, integrations: { All: false } });
    expect(seg.messages.get('c-1')).toMatchObject({ context: { ip: '1.2.3.4', locale: 'is' }, integrations: { All: false } });
  });

  it('answers 200 to track without event and to a message without userId or anonymousId, and drops them', async () => {
    const noEvent = await call('track', { userId: 'user_1', properties: {}, messageId: 'no-event' });
    expect([noEvent.status, noEvent.json()]).toEqual([200, { success: true }]);
    const noUser = await call('identify', { traits: {} });
    expect(noUser.json()).toEqual({ success: true });
    const inBatch = await call('batch', { batch: [{ type: 'track', userId: 'user_1', event: 'ok', messageId: 'ok-1' }, { type: 'track', userId: 'user_1' }] });
    expect(inBatch.json()).toEqual({ success: true });
    // The rest of the batch is stored; the bad message is kept with why, numbered across requests.
    expect([...seg.messages.keys()]).toEqual(['ok-1']);
    expect(seg.dropped).toEqual([
      { n: 1, path: '/v1/track', messageId: 'no-event', reason: 'event: track requires event (a string)', message: { userId: 'user_1', properties: {}, messageId: 'no-event' } },
      { n: 2, path: '/v1/identify', reason: 'userId: userId or anonymousId is required', message: { traits: {} } },
      { n: 4, path: '/v1/batch', batchIndex: 1, reason: 'event: track requires event (a string)', message: { type: 'track', userId: 'user_1' } },
    ]);
    expect(seg.received).toBe(1);
  });

  it('checks traits, messageId length, ISO-8601 timestamps and the message type, dropping what fails', async () => {
    const answers = [
      await call('identify', { userId: 'user_1', traits: ['a'] }),
      await call('identify', { userId: 'user_1', messageId: 'm'.repeat(101) }),
      await call('identify', { userId: 'user_1', messageId: 'm'.repeat(100) }),
      await call('identify', { userId: 'user_1', timestamp: 'Nov 25 2026' }),
      await call('identify', { userId: 'user_1', timestamp: 1_764_064_800_000 }),
      await call('identify', { userId: 'user_1', timestamp: '2026-11-25T10:00:00+01:00' }),
      await call('identify', { type: 'track', userId: 'user_1' }),
      await call('batch', { batch: [{ type: 'purchase', userId: 'user_1' }] }),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200, 200, 200]);
    expect(seg.dropped.map((d) => [d.n, d.reason])).toEqual([
      [1, 'traits: must be an object'],
      [2, 'messageId: must be a string of 1 to 100 characters'],
      [4, 'timestamp: must be an ISO-8601 string'],
      [5, 'timestamp: must be an ISO-8601 string'],
      [7, 'type: track does not match the endpoint /v1/identify'],
      [8, 'type: must be one of identify, track, page, screen, group, alias'],
    ]);
    expect(seg.messages.size).toBe(2);
  });

  it('forgets dropped messages on reset and numbers from 1 again', async () => {
    await call('track', { userId: 'user_1' });
    seg.reset();
    await call('track', { userId: 'user_1' });
    expect(seg.dropped.map((d) => d.n)).toEqual([1]);
  });

  it('refuses a call over 32 KB, and a batch message over 32 KB', async () => {
    const blob = 'x'.repeat(33 * 1024);
    const single = await call('identify', { userId: 'user_1', traits: { blob } });
    expect(single.status).toBe(400);
    expect((single.json() as { error: string }).error).toMatch(/^request body is over 32 KB/);
    const batch = await call('batch', { batch: [{ type: 'identify', userId: 'user_1', traits: { blob } }] });
    expect(batch.status).toBe(400);
    expect((batch.json() as { error: string }).error).toMatch(/^batch\[0\]: message is over 32 KB/);
    expect((await call('identify', { userId: 'user_1', traits: { blob: 'x'.repeat(32 * 1024 - 100) } })).status).toBe(200);
  });

  it('refuses a batch over 500 KB or over 2500 messages, and invalid JSON', async () => {
    const big = Array.from({ length: 20 }, (_, i) => ({ type: 'track', userId: 'user_1', event: 'x', properties: { pad: 'p'.repeat(30 * 1024) }, messageId: `b${i}` }));
    const tooBig = await call('batch', { batch: big });
    expect(tooBig.status).toBe(400);
    expect((tooBig.json() as { error: string }).error).toMatch(/^request body is over 500 KB/);
    const many = Array.from({ length: 2501 }, () => ({ type: 'track', userId: 'u1', event: 'x' }));
    expect((await call('batch', { batch: many })).json()).toEqual(bad('batch: holds 2501 messages, at most 2500'));
    expect((await call('batch', { batch: many.slice(0, 2500) })).status).toBe(200);
    const invalid = await call('track', '{"userId": "user_1", event: x}');
    expect(invalid.status).toBe(400);
    expect((invalid.json() as { error: string }).error).toMatch(/^invalid JSON/);
  });

  it('stores a messageId once and counts the duplicates', async () => {
    await call('track', { userId: 'user_1', event: 'x', messageId: 'dup-1' });
    await call('track', { userId: 'user_1', event: 'x', messageId: 'dup-1' });
    await call('batch', { batch: [{ type: 'track', userId: 'user_1', event: 'x', messageId: 'dup-1' }, { type: 'track', userId: 'user_1', event: 'x' }] });
    expect(seg.received).toBe(4);
    expect(seg.duplicateMessageIds).toBe(2);
    expect(seg.messages.size).toBe(2);
  });

  it('answers 404 to an unknown path', async () => {
    expect((await call('purchase', { userId: 'user_1' })).status).toBe(404);
  });
});
