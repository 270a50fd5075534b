import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAmplitudeEmulator, type AmplitudeEmulator } from '../../src/sandbox/index.js';
import { AMP_KEY, postJson } from './helpers.js';

let amp: AmplitudeEmulator;
beforeAll(async () => {
  amp = await startAmplitudeEmulator();
});
afterAll(async () => amp.close());
beforeEach(() => amp.reset());

const send = (events: unknown[], extra: Record<string, unknown> = {}, path = '/2/httpapi') => postJson(`${amp.url}${path}`, { api_key: AMP_KEY, events, ...extra });
const ev = (over: Record<string, unknown> = {}) => ({ user_id: 'user_1001', event_type: 'Signed Up', time: 1_764_064_800_000, ...over });

describe('Amplitude HTTP V2 and Batch emulator', () => {
  it('answers 200 with events_ingested, payload_size_bytes and server_upload_time', async () => {
    const body = JSON.stringify({ api_key: AMP_KEY, events: [ev({ insert_id: 'a1' }), ev({ insert_id: 'a2' })] });
    const before = Date.now();
    const r = await postJson(`${amp.url}/2/httpapi`, body);
    expect(r.status).toBe(200);
    const answer = r.json() as Record<string, number>;
    expect(answer).toEqual({ code: 200, events_ingested: 2, payload_size_bytes: Buffer.byteLength(body), server_upload_time: expect.any(Number) });
    expect(answer.server_upload_time).toBeGreaterThanOrEqual(before);
    expect(amp.events.size).toBe(2);
    expect(amp.eventsIngested).toBe(2);
  });

  it('refuses an ISO time with 400 listing the event index in events_with_invalid_fields, storing nothing', async () => {
    const r = await send([ev({ time: '2026-11-25T10:00:00Z' }), ev(), ev({ time: '2026-11-25' })]);
    expect(r.status).toBe(400);
    expect(r.json()).toEqual({ code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { time: [0, 2] } });
    expect(amp.events.size).toBe(0);
    expect(amp.eventsIngested).toBe(0);
  });

  it('lists invalid and missing fields together, in the documented body shape', async () => {
    const { event_type: _drop, ...noType } = ev();
    const r = await send([ev({ time: 'now' }), noType, ev(), ev({ time: '2026-01-01' })]);
    expect(r.status).toBe(400);
    expect(r.text).toBe('{"code":400,"error":"Invalid field values on some events","events_with_invalid_fields":{"time":[0,3]},"events_with_missing_fields":{"event_type":[1]}}');
  });

  it('requires user_id or device_id, naming the event in events_with_missing_fields and not in missing_field', async () => {
    const r = await send([{ event_type: 'x' }, { event_type: 'x', device_id: 'device-1' }]);
    // missing_field is for the request's own fields: the official SDK drops the whole request when it is set.
    expect(r.json()).toEqual({ code: 400, error: 'Some events are missing required fields', events_with_missing_fields: { user_id: [0] } });
    expect(amp.events.size).toBe(0);
  });

  it('keeps missing_field for the request fields api_key and events', async () => {
    expect((await postJson(`${amp.url}/2/httpapi`, { events: [ev()] })).json()).toEqual({ code: 400, error: 'Request missing required field', missing_field: 'api_key' });
    expect((await postJson(`${amp.url}/2/httpapi`, { api_key: AMP_KEY, events: [] })).json()).toEqual({ code: 400, error: 'Request missing required field', missing_field: 'events' });
  });

  it('refuses blocked id values whatever their case', async () => {
    const r = await send([ev({ user_id: 'Anonymous' }), ev({ user_id: 'NULL' }), ev(), ev({ device_id: '00000000-0000-0000-0000-000000000000' }), ev({ user_id: 'lmy47d' })]);
    expect(r.status).toBe(400);
    expect(r.json()).toMatchObject({ events_with_invalid_fields: { user_id: [0, 1, 4], device_id: [3] } });
  });

  it('refuses ids shorter than 5 characters unless options.min_id_length lowers the bar', async () => {
    const short = await send([ev({ user_id: 'abc' })]);
    expect(short.json()).toMatchObject({ code: 400, events_with_invalid_fields: { user_id: [0] } });
    const allowed = await send([ev({ user_id: 'abc' })], { options: { min_id_length: 3 } });
    expect(allowed.status).toBe(200);
    const stillBlocked = await send([ev({ user_id: '-1' })], { options: { min_id_length: 1 } });
    expect(stillBlocked.status).toBe(400);
    const badOption = await send([ev()], { options: { min_id_length: 0 } });
    expect(badOption.json()).toEqual({ code: 400, error: 'Invalid request body: options.min_id_length must be a positive integer' });
  });

  it('refuses unknown event keys, listing them as invalid fields', async () => {
    const r = await send([ev(), ev({ eventType: 'x', userId: 'u' })]);
    expect(r.json()).toMatchObject({ code: 400, events_with_invalid_fields: { eventType: [1], userId: [1] } });
  });

  it('accepts everything the official Node SDK sends, $identify with $clearAll included', async () => {
    await send([ev({ user_properties: { plan: 'pro', seats: 3 } })]);
    expect(amp.users.get('user_1001')).toEqual({ plan: 'pro', seats: 3 });
    const r = await send(
      [
        ev({ event_id: 1, session_id: 1_764_064_000_000, library: 'amplitude-node-ts/1.3.6', currency: 'USD', receipt: 'r', receiptSig: 's', android_app_set_id: 'set', insert_id: 'sdk-1', ip: '$remote', price: 9.5, quantity: 2, revenue: 19, productId: 'p1', revenueType: 'purchase', plan: { branch: 'main' }, ingestion_metadata: { source_name: 'x' }, version_name: '1.0', partner_id: 'p' }),
        { event_type: '$identify', user_id: 'user_1001', time: 1_764_064_800_001, insert_id: 'sdk-2', user_properties: { $clearAll: '-' } },
        { event_type: '$identify', user_id: 'user_1001', time: 1_764_064_800_002, insert_id: 'sdk-3', user_properties: { $set: { plan: 'team' }, $setOnce: { first: 'x' } } },
      ],
      { client_upload_time: '2026-11-25T10:00:00.000Z', request_metadata: { sdk: { metrics: { histogram: {} } } }, options: { min_id_length: 5 } },
    );
    expect(r.status).toBe(200);
    expect(amp.users.get('user_1001')).toEqual({ plan: 'team', first: 'x' });
  });

  it('refuses an unknown top-level field', async () => {
    const r = await send([ev()], { eventz: [] });
    expect(r.json()).toEqual({ code: 400, error: 'Invalid request body: unknown field eventz' });
  });

  it('stores an insert_id once per user, counting every accepted event and the duplicates', async () => {
    await send([ev({ insert_id: 'i1' }), ev({ insert_id: 'i2' })]);
    const again = await send([ev({ insert_id: 'i1' }), ev({ insert_id: 'i1', user_id: 'user_2002' }), ev()]);
    expect(again.json()).toMatchObject({ code: 200, events_ingested: 3 });
    expect(amp.eventsIngested).toBe(5);
    expect(amp.duplicateInsertIds).toBe(1);
    // i1 for two users, i2, and one event without insert_id under a generated key.
    expect(amp.events.size).toBe(4);
  });

  it('cuts strings over 1024 characters in what it stores', async () => {
    await send([ev({ insert_id: 'long', event_properties: { note: 'n'.repeat(2000) } })]);
    const [stored] = [...amp.events.values()] as { event_properties: { note: string } }[];
    expect(stored?.event_properties.note).toHaveLength(1024);
  });

  it('answers a bad api key with 400 echoing it, and a missing one with missing_field', async () => {
    const bad = await postJson(`${amp.url}/2/httpapi`, { api_key: 'wrong-key-42', events: [ev()] });
    expect([bad.status, bad.json()]).toEqual([400, { code: 400, error: 'Invalid API key: wrong-key-42' }]);
    const missing = await postJson(`${amp.url}/2/httpapi`, { events: [ev()] });
    expect(missing.json()).toEqual({ code: 400, error: 'Request missing required field', missing_field: 'api_key' });
    const noEvents = await send([]);
    expect(noEvents.json()).toEqual({ code: 400, error: 'Request missing required field', missing_field: 'events' });
  });

  it('refuses malformed JSON and a non-JSON content type with 400', async () => {
    const malformed = await postJson(`${amp.url}/2/httpapi`, '{"api_key":');
    expect(malformed.status).toBe(400);
    expect((malformed.json() as { error: string }).error).toMatch(/^Invalid JSON request body/);
    const form = await postJson(`${amp.url}/2/httpapi`, JSON.stringify({ api_key: AMP_KEY, events: [ev()] }), { 'content-type': 'text/plain' });
    expect(form.status).toBe(400);
  });

  it('answers 413 over 2000 events on /2/httpapi and /batch', async () => {
    const many = Array.from({ length: 2001 }, (_, i) => ev({ insert_id: `m${i}` }));
    for (const path of ['/2/httpapi', '/batch']) {
      const r = await send(many, {}, path);
      expect([r.status, r.json()]).toEqual([413, { code: 413, error: 'Payload too large' }]);
    }
    expect((await send(many.slice(0, 2000))).status).toBe(200);
  });

  it('answers 413 over 1 MB on /2/httpapi while /batch takes up to 20 MB', async () => {
    const big = [ev({ event_properties: Object.fromEntries(Array.from({ length: 1200 }, (_, i) => [`k${i}`, 'v'.repeat(1000)])) })];
    const http = await send(big);
    expect([http.status, http.json()]).toEqual([413, { code: 413, error: 'Payload too large' }]);
    expect((await send(big, {}, '/batch')).status).toBe(200);
    const huge = Array.from({ length: 21 }, () => big[0]);
    expect((await send(huge, {}, '/batch')).status).toBe(413);
    // The oversized bodies were drained: the connection still answers.
    expect((await send([ev()])).status).toBe(200);
  });
  it('refuses a fraction where Amplitude wants an integer: quantity, time, session_id, event_id', async () => {
    const r = await send([ev({ quantity: 1.5 }), ev({ time: 1_764_064_800_000.5 }), ev({ session_id: 17.2 }), ev({ event_id: 4.2 }), ev({ quantity: 2, price: 9.99, revenue: 19.98, session_id: -1, event_id: 3 })]);
    expect(r.json()).toEqual({ code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { quantity: [0], time: [1], session_id: [2], event_id: [3] } });
    expect((await send([ev({ quantity: 2, price: 9.99, revenue: 19.98, session_id: -1, event_id: 3, location_lat: 37.77 })])).status).toBe(200);
  });

  it('refuses a number or boolean in a string field: platform, country and the others', async () => {
    const r = await send([ev({ platform: 7 }), ev({ country: true }), ev({ app_version: 2.1 }), ev({ os_name: 'iOS', ip: '$remote', library: 'amplitude-node-ts/1.5.73' })]);
    expect(r.json()).toEqual({ code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { platform: [0], country: [1], app_version: [2] } });
  });

  it('refuses $add with anything but a number, in an $identify event', async () => {
    const add = (v: unknown) => ({ event_type: '$identify', user_id: 'user_1001', user_properties: { $add: { logins: v } } });
    const r = await send([add('1'), add(null), add(2), add(-0.5)]);
    expect(r.json()).toEqual({ code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { user_properties: [0, 1] } });
    expect((await send([add(2), add(-0.5)])).status).toBe(200);
    expect(amp.users.get('user_1001')).toEqual({ logins: 1.5 });
  });

  it('refuses a blocked id with spaces around it', async () => {
    const r = await send([ev({ user_id: 'null ' }), ev({ device_id: ' Anonymous', user_id: undefined }), ev({ user_id: 'nullable' })]);
    expect(r.json()).toEqual({ code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { user_id: [0], device_id: [1] } });
  });
});
