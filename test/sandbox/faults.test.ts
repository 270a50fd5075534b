import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { AMP_KEY, basic, postIdentify, postJson, rawPost, SEG_KEY } from './helpers.js';

let sb: Sandbox;
beforeAll(async () => {
  sb = await startSandbox();
});
afterAll(async () => sb.close());
beforeEach(() => {
  sb.amplitude.reset();
  sb.segment.reset();
});

const ev = (user_id: string, insert_id = `${user_id}-1`) => ({ user_id, event_type: 'x', insert_id });
const sendEvents = (events: unknown[]) => postJson(`${sb.amplitude.url}/2/httpapi`, { api_key: AMP_KEY, events });
const track = (userId: string) => postJson(`${sb.segment.url}/v1/track`, { userId, event: 'x' }, { authorization: basic(SEG_KEY, '') });

describe('injected faults', () => {
  it('answers a status fault with Retry-After in seconds, then goes back to normal', async () => {
    sb.amplitude.inject({ kind: 'status', status: 503, retryAfter: 7 });
    const first = await sendEvents([ev('user_1001')]);
    expect(first.status).toBe(503);
    expect(first.headers.get('retry-after')).toBe('7');
    expect(first.json()).toEqual({ code: 503, error: 'Service Unavailable' });
    expect((await sendEvents([ev('user_1001')])).status).toBe(200);
    expect(sb.amplitude.requests.map((r) => r.status)).toEqual([503, 200]);
    expect(sb.amplitude.events.size).toBe(1);
  });

  it('sends an HTTP-date Retry-After as given, and a body override as is', async () => {
    const date = new Date(Date.now() + 5000).toUTCString();
    sb.amplitude.inject({ kind: 'status', status: 500, retryAfter: date, body: { oops: true } });
    sb.amplitude.inject({ kind: 'status', status: 502, body: 'upstream gone' });
    const a = await sendEvents([ev('user_1001')]);
    expect([a.status, a.headers.get('retry-after'), a.json()]).toEqual([500, date, { oops: true }]);
    const b = await sendEvents([ev('user_1001')]);
    expect([b.status, b.text, b.headers.get('content-type')]).toEqual([502, 'upstream gone', 'text/plain; charset=utf-8']);
  });

  it('consumes faults in injection order, `times` uses each, and `path` limits one to a path', async () => {
    sb.amplitude.inject({ kind: 'status', status: 500, path: '/identify' });
    sb.amplitude.inject({ kind: 'status', status: 502, times: 2 });
    sb.amplitude.inject({ kind: 'status', status: 504 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await sendEvents([ev('user_1001')])).status);
    expect(statuses).toEqual([502, 502, 504, 200]);
    expect((await postIdentify(sb.amplitude.url, { api_key: AMP_KEY, identification: { user_id: 'user_1' } })).status).toBe(500);
    expect((await postIdentify(sb.amplitude.url, { api_key: AMP_KEY, identification: { user_id: 'user_1' } })).status).toBe(200);
  });

  it('answers a 429 status fault on Amplitude with the throttled body naming the request users', async () => {
    sb.amplitude.inject({ kind: 'status', status: 429 });
    const r = await sendEvents([ev('user_1001'), { event_type: 'x', device_id: 'device-9' }, ev('user_2002')]);
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBeNull();
    expect(r.json()).toEqual({ code: 429, error: 'Too many requests for some devices and users', eps_threshold: 30, throttled_devices: { 'device-9': 31 }, throttled_users: { user_1001: 31, user_2002: 31 }, throttled_events: [0, 1, 2] });
    expect(sb.amplitude.events.size).toBe(0);
  });

  it('destroys the socket without an answer on a reset fault, and records status 0', async () => {
    sb.amplitude.inject({ kind: 'reset', times: 2, path: '/2/httpapi' });
    const body = JSON.stringify({ api_key: AMP_KEY, events: [ev('user_1001')] });
    const first = await rawPost(`${sb.amplitude.url}/2/httpapi`, body);
    expect(first).toEqual({ error: 'ECONNRESET' });
    await expect(sendEvents([ev('user_1001')])).rejects.toThrow(/fetch failed/);
    const third = await rawPost(`${sb.amplitude.url}/2/httpapi`, body);
    expect(third).toMatchObject({ status: 200 });
    expect(sb.amplitude.requests.map((r) => r.status)).toEqual([0, 0, 200]);
    expect(sb.amplitude.inFlight).toBe(0);
  });

  it('rejects every request carrying a rejected user, permanently, with the provider 400 body', async () => {
    sb.amplitude.inject({ kind: 'reject-user', userId: 'user_bad01' });
    for (let i = 0; i < 3; i++) {
      const r = await sendEvents([ev('user_1001'), ev('user_bad01'), ev('user_2002')]);
      expect([r.status, r.json()]).toEqual([400, { code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { user_id: [1] } }]);
    }
    expect((await sendEvents([ev('user_1001'), ev('user_2002')])).status).toBe(200);
    const id = await postIdentify(sb.amplitude.url, { api_key: AMP_KEY, identification: [{ user_id: 'user_1' }, { user_id: 'user_bad01' }] });
    expect([id.status, id.text]).toEqual([400, 'invalid identification[1].user_id: user_bad01 is rejected']);
    expect(sb.amplitude.events.size).toBe(2);
    expect(sb.amplitude.identifications).toHaveLength(0);

    sb.segment.inject({ kind: 'reject-user', userId: 'user_bad01', status: 403 });
    const seg = await track('user_bad01');
    expect([seg.status, seg.json()]).toEqual([403, { success: false, error: 'userId: user_bad01 is rejected' }]);
    expect((await track('user_ok001')).status).toBe(200);
    expect((await track('user_bad01')).status).toBe(403);
  });

  it('throttles one user: 429 naming its events, the other events stored, then normal again', async () => {
    sb.amplitude.inject({ kind: 'throttle-user', userId: 'user_hot01' });
    const r = await sendEvents([ev('user_1001'), ev('user_hot01', 'h1'), ev('user_2002'), ev('user_hot01', 'h2')]);
    expect(r.status).toBe(429);
    expect(r.json()).toEqual({ code: 429, error: 'Too many requests for some devices and users', eps_threshold: 30, throttled_devices: {}, throttled_users: { user_hot01: 31 }, throttled_events: [1, 3] });
    expect([...sb.amplitude.events.values()].map((e) => e.user_id)).toEqual(['user_1001', 'user_2002']);
    expect((await sendEvents([ev('user_hot01', 'h1'), ev('user_hot01', 'h2')])).status).toBe(200);
    expect(sb.amplitude.events.size).toBe(4);
    expect(sb.amplitude.duplicateInsertIds).toBe(0);
  });

  it('sends Retry-After with a throttle-user fault when asked, and refuses an invalid request instead of throttling it', async () => {
    sb.amplitude.inject({ kind: 'throttle-user', userId: 'user_hot01', retryAfter: 3, times: 2 });
    const invalid = await sendEvents([ev('user_1001'), { ...ev('user_hot01'), time: '2026-01-01T00:00:00Z' }]);
    expect(invalid.status).toBe(400);
    const r = await sendEvents([ev('user_hot01')]);
    expect([r.status, r.headers.get('retry-after')]).toEqual([429, '3']);
    expect(sb.amplitude.events.size).toBe(0);
  });

  it('refuses throttle-user on Segment, which has no such answer', () => {
    expect(() => sb.segment.inject({ kind: 'throttle-user', userId: 'u' })).toThrow(/Amplitude/);
  });

  it('answers a Segment 429 with Retry-After and X-RateLimit-Reset', async () => {
    sb.segment.inject({ kind: 'status', status: 429, retryAfter: 2 });
    const before = Math.floor(Date.now() / 1000);
    const r = await track('user_1001');
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).toBe('2');
    const reset = Number(r.headers.get('x-ratelimit-reset'));
    expect(reset).toBeGreaterThanOrEqual(before + 2);
    expect(reset).toBeLessThanOrEqual(before + 4);
    sb.segment.inject({ kind: 'status', status: 429 });
    expect((await track('user_1001')).headers.get('retry-after')).toBe('1');
  });

  it('draws random faults from the seed: the same seed gives the same sequence, another seed another', async () => {
    const run = async (seed: number): Promise<string> => {
      sb.amplitude.reset();
      sb.amplitude.inject({ kind: 'random', rate429: 0.2, rate503: 0.2, rateReset: 0.1, retryAfter: 0, seed });
      const out: string[] = [];
      for (let i = 0; i < 40; i++) {
        const r = await rawPost(`${sb.amplitude.url}/2/httpapi`, JSON.stringify({ api_key: AMP_KEY, events: [ev('user_1001', `r${i}`)] }));
        out.push('error' in r ? 'reset' : String(r.status));
      }
      return out.join(',');
    };
    const a = await run(42);
    const b = await run(42);
    const c = await run(43);
    expect(a).toBe(b);
    expect(c).not.toBe(a);
    for (const kind of ['200', '429', '503', 'reset']) expect(a.split(',')).toContain(kind);
    const throttled = sb.amplitude.requests.find((r) => r.status === 429);
    expect(throttled).toBeDefined();
  });

  it('keeps reject-user and random faults through clearFaults only until called', async () => {
    sb.segment.inject({ kind: 'reject-user', userId: 'user_bad01' });
    expect((await track('user_bad01')).status).toBe(400);
    sb.segment.clearFaults();
    expect((await track('user_bad01')).status).toBe(200);
  });
});
