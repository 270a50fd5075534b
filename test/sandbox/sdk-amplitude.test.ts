/**
 * The official Node SDK (@amplitude/analytics-node 1.5.73) against the Amplitude emulator:
 * what it sends must be taken, what Amplitude refuses must be refused the same way, and the
 * SDK's own retries must end with the events stored that production would store.
 */
import { createInstance, Identify, Revenue, Types } from '@amplitude/analytics-node';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAmplitudeEmulator, type AmplitudeEmulator } from '../../src/sandbox/index.js';
import { AMP_KEY } from './helpers.js';

type Client = ReturnType<typeof createInstance>;
type Result = Awaited<ReturnType<Client['track']>['promise']>;

let amp: AmplitudeEmulator;
beforeAll(async () => {
  amp = await startAmplitudeEmulator();
});
afterAll(async () => amp.close());
beforeEach(() => amp.reset());

/**
 * A client on the emulator; a short flush interval so that the SDK's resends come quickly. The
 * SDK queues one event per timer tick, so how many requests carry a big load depends on timing:
 * those tests assert what holds whatever the split (statuses seen, events stored). Tests about
 * one request of a few events give the SDK 500 ms to queue them all before it sends.
 */
async function sdk(options: Types.NodeOptions = {}, apiKey = AMP_KEY): Promise<Client> {
  const client = createInstance();
  await client.init(apiKey, { serverUrl: `${amp.url}/2/httpapi`, flushIntervalMillis: 10, logLevel: Types.LogLevel.None, ...options }).promise;
  return client;
}

/** Events the SDK sends as they are: fields it would not let through its own builders. */
const raw = (event: Record<string, unknown>): Types.BaseEvent => event as unknown as Types.BaseEvent;
const codes = (results: Result[]): number[] => results.map((r) => r.code);
const storedTypes = (): string[] => [...amp.events.values()].map((e) => String(e.event_type)).sort();

describe('@amplitude/analytics-node against the Amplitude emulator', () => {
  it('stores all 2,800 events of every kind the SDK sends: tracks, revenue, the nine operators, $clearAll, groups, plan and ingestion metadata', async () => {
    const client = await sdk({ plan: { branch: 'main', source: 'node', version: '3', versionId: 'v3' }, ingestionMetadata: { sourceName: 'ferry-test', sourceVersion: '1.0' }, minIdLength: 5 });
    const sent: Promise<Result>[] = [];
    for (let i = 0; i < 2500; i++) {
      sent.push(client.track('Page Viewed', { path: `/p/${i}`, n: i, tags: ['a', 'b'], nested: { deep: { x: i } } }, { user_id: `user_${1000 + (i % 50)}`, device_id: `device-${i % 70}`, time: 1_764_064_800_000 + i, session_id: 1_764_064_000_000, platform: 'Node', country: 'Iceland', app_version: '2.1.0', ip: '127.0.0.1' }).promise);
    }
    for (let i = 0; i < 100; i++) {
      const revenue = new Revenue().setProductId(`sku-${i}`).setPrice(9.99).setQuantity(2).setRevenueType('purchase').setCurrency('USD').setReceipt('receipt').setReceiptSig('sig').setEventProperties({ coupon: 'x' });
      sent.push(client.revenue(revenue, { user_id: `user_${1000 + (i % 50)}` }).promise);
    }
    const who = { user_id: 'user_operators' };
    const ops = [
      new Identify().set('plan', 'pro').set('seats', 3),
      new Identify().setOnce('first_seen', '2026-11-25').setOnce('first_seen', 'never'),
      new Identify().add('logins', 2),
      new Identify().append('tags', 'a'),
      new Identify().prepend('tags', 'z'),
      new Identify().preInsert('tags', 'p'),
      new Identify().postInsert('tags', 'q'),
      new Identify().remove('tags', 'a'),
      new Identify().unset('seats'),
    ];
    for (const op of ops) sent.push(client.identify(op, who).promise);
    sent.push(client.identify(new Identify().clearAll(), { user_id: 'user_cleared' }).promise);
    sent.push(client.identify(new Identify().set('after', true), { user_id: 'user_cleared' }).promise);
    sent.push(client.groupIdentify('org', 'acme', new Identify().set('industry', 'retail'), who).promise);
    sent.push(client.setGroup('org', ['acme', 'globex'], who).promise);
    const fillers = 2800 - sent.length;
    for (let i = 0; i < fillers; i++) sent.push(client.track('Filler', undefined, { device_id: `device-${i}` }).promise);
    const results = await Promise.all(sent);

    expect(results).toHaveLength(2800);
    expect(new Set(codes(results))).toEqual(new Set([200]));
    expect(amp.events.size).toBe(2800);
    expect(amp.requests.every((r) => r.status === 200)).toBe(true);
    const first = amp.requests[0]?.body as Record<string, unknown>;
    expect(['api_key', 'client_upload_time', 'events', 'options', 'request_metadata']).toEqual(expect.arrayContaining(Object.keys(first)));
    const event = [...amp.events.values()].find((e) => e.event_type === 'Page Viewed');
    expect(event).toMatchObject({ plan: { branch: 'main' }, ingestion_metadata: { source_name: 'ferry-test' }, library: expect.stringMatching(/^amplitude-node-ts\//), insert_id: expect.any(String), event_id: expect.any(Number) });
    expect(amp.users.get('user_operators')).toEqual({ plan: 'pro', first_seen: '2026-11-25', logins: 2, tags: ['p', 'z', 'q'], org: ['acme', 'globex'] });
    expect(amp.users.get('user_cleared')).toEqual({ after: true });
  });

  it('takes the same traffic on the Batch API', async () => {
    const client = await sdk({ serverUrl: `${amp.url}/batch`, useBatch: true, flushQueueSize: 1000 });
    const sent = Array.from({ length: 1500 }, (_, i) => client.track('Imported', { i }, { user_id: `user_${1000 + (i % 9)}` }).promise);
    expect(new Set(codes(await Promise.all(sent)))).toEqual(new Set([200]));
    expect([...amp.requestsPerPath.keys()]).toEqual(['/batch']);
    expect(amp.events.size).toBe(1500);
  });

  it('drops only the event without user_id and device_id and stores the other four', async () => {
    const client = await sdk({ flushQueueSize: 5, flushIntervalMillis: 500 });
    const results = await Promise.all([
      client.track('One', {}, { user_id: 'user_1001' }).promise,
      client.track('Two', {}, { user_id: 'user_1001' }).promise,
      client.track('No ids').promise,
      client.track('Three', {}, { device_id: 'device-1' }).promise,
      client.track('Four', {}, { user_id: 'user_1002' }).promise,
    ]);
    expect(codes(results)).toEqual([200, 200, 400, 200, 200]);
    // One request of five refused, naming event 2; the SDK resends the other four.
    expect(amp.requests.map((r) => [r.status, (r.body as { events: unknown[] }).events.length])).toEqual([[400, 5], [200, 4]]);
    expect(storedTypes()).toEqual(['Four', 'One', 'Three', 'Two']);
  });

  it('drops only the events Amplitude refuses by type or id, and stores the rest: fractions, non-strings, $add with a string, padded blocked ids, mixed $set', async () => {
    const client = await sdk({ flushQueueSize: 20, flushIntervalMillis: 500 });
    const base = { user_id: 'user_1001' };
    const cases: [string, Types.BaseEvent, number][] = [
      ['ok', raw({ event_type: 'ok', ...base, quantity: 2, price: 1.5 }), 200],
      ['quantity 1.5', raw({ event_type: 'quantity 1.5', ...base, quantity: 1.5 }), 400],
      ['time 0.5', raw({ event_type: 'time 0.5', ...base, time: 1_764_064_800_000.5 }), 400],
      ['session_id', raw({ event_type: 'session_id', ...base, session_id: 1.25 }), 400],
      ['platform 7', raw({ event_type: 'platform 7', ...base, platform: 7 }), 400],
      ['country true', raw({ event_type: 'country true', ...base, country: true }), 400],
      ['add string', raw({ event_type: '$identify', ...base, user_properties: { $add: { logins: '2' } } }), 400],
      ['null id', raw({ event_type: 'null id', user_id: 'null ' }), 400],
      ['short id', raw({ event_type: 'short id', user_id: 'abc' }), 400],
      ['mixed $set', raw({ event_type: 'mixed', ...base, user_properties: { plan: 'pro', $set: { seats: 2 } } }), 400],
      ['iso time', raw({ event_type: 'iso time', ...base, time: '2026-11-25T10:00:00Z' }), 400],
      ['ok too', raw({ event_type: 'ok too', device_id: 'device-1', revenue: 3.5 }), 200],
    ];
    const results = await Promise.all(cases.map(([, event]) => client.track(event).promise));
    expect(cases.map(([name], i) => [name, results[i]?.code])).toEqual(cases.map(([name, , code]) => [name, code]));
    expect(storedTypes()).toEqual(['ok', 'ok too']);
    expect(amp.requests.map((r) => [r.status, (r.body as { events: unknown[] }).events.length])).toEqual([[400, 12], [200, 2]]);
  });

  it('drops every event when the api key is refused, as a request-level 400', async () => {
    const client = await sdk({ flushIntervalMillis: 500 }, 'not-a-key');
    const results = await Promise.all([client.track('A', {}, { user_id: 'user_1001' }).promise, client.track('B', {}, { user_id: 'user_1002' }).promise]);
    expect(codes(results)).toEqual([400, 400]);
    expect(results[0]?.message).toMatch(/Invalid API key/);
    expect(amp.requests).toHaveLength(1);
    expect(amp.events.size).toBe(0);
  });

  it('answers 413 to a request over 1 MB: the SDK halves its batch and every event is stored', async () => {
    // Four 400 KB events: any three are over 1 MB. A 500 ms flush interval lets all four queue first.
    const client = await sdk({ flushQueueSize: 4, flushIntervalMillis: 500 });
    const pad = 'x'.repeat(400_000);
    const results = await Promise.all(Array.from({ length: 4 }, (_, i) => client.track('Big', { pad, i }, { user_id: 'user_1001' }).promise));
    expect(codes(results)).toEqual([200, 200, 200, 200]);
    // An oversized body is drained unread: its size is in the header.
    expect(amp.requests.map((r) => [r.status, r.status === 413 ? Number(r.headers['content-length']) > 1_000_000 : (r.body as { events: unknown[] }).events.length])).toEqual([[413, true], [200, 2], [200, 2]]);
    expect(amp.events.size).toBe(4);
  });

  it('retries a 503 and a 500 with the same insert_ids, storing each event once', async () => {
    amp.inject({ kind: 'status', status: 503, times: 1 });
    amp.inject({ kind: 'status', status: 500, times: 1 });
    const client = await sdk({ flushQueueSize: 10 });
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => client.track('Retried', { i }, { user_id: 'user_1001' }).promise));
    expect(new Set(codes(results))).toEqual(new Set([200]));
    expect(amp.requests.slice(0, 2).map((r) => r.status)).toEqual([503, 500]);
    const ids = (status: number): string[] => amp.requests.filter((r) => r.status === status).flatMap((r) => (r.body as { events: { insert_id: string }[] }).events.map((e) => e.insert_id));
    // What failed went again with the same insert_ids, and each event is stored once.
    expect(new Set(ids(200))).toEqual(new Set([...amp.events.values()].map((e) => e.insert_id)));
    for (const id of [...ids(503), ...ids(500)]) expect(ids(200)).toContain(id);
    expect(amp.events.size).toBe(10);
    expect(amp.duplicateInsertIds).toBe(0);
  });
});
