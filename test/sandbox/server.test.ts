import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { describeDropped, describeReceived, startAmplitudeEmulator, startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { AMP_KEY, basic, postIdentify, postJson, SEG_KEY } from './helpers.js';

let sb: Sandbox;
beforeAll(async () => {
  sb = await startSandbox();
});
afterAll(async () => sb.close());
beforeEach(() => {
  sb.amplitude.reset();
  sb.segment.reset();
  sb.amplitude.setLatency(0);
});

const event = (i: number) => ({ user_id: `user_${1000 + i}`, event_type: 'x', insert_id: `e${i}` });
const send = (i: number) => postJson(`${sb.amplitude.url}/2/httpapi`, { api_key: AMP_KEY, events: [event(i)] });

describe('emulator server', () => {
  it('listens on 127.0.0.1 with a random port for each emulator', () => {
    expect(sb.amplitude.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(sb.segment.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(sb.amplitude.url).not.toBe(sb.segment.url);
  });

  it('measures maxInFlight from arrival until the answer, latency included', async () => {
    sb.amplitude.setLatency(60);
    const started = Date.now();
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => send(i)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(55);
    expect(sb.amplitude.maxInFlight).toBe(6);
    expect(sb.amplitude.inFlight).toBe(0);
    sb.amplitude.reset();
    expect(sb.amplitude.maxInFlight).toBe(0);
    for (let i = 0; i < 3; i++) await send(i);
    expect(sb.amplitude.maxInFlight).toBe(1);
  });

  it('delays each answer by the latency', async () => {
    sb.amplitude.setLatency(40);
    const t = Date.now();
    await send(1);
    expect(Date.now() - t).toBeGreaterThanOrEqual(38);
  });

  it('records every request in arrival order with query, lower-case headers, raw and parsed body', async () => {
    await postJson(`${sb.amplitude.url}/2/httpapi?debug=1`, { api_key: AMP_KEY, events: [event(1)] }, { 'X-Trace': 't-1' });
    await postIdentify(sb.amplitude.url, { api_key: AMP_KEY, identification: { user_id: 'user_1' } });
    const [a, b] = sb.amplitude.requests;
    expect(a).toMatchObject({ method: 'POST', path: '/2/httpapi', query: { debug: '1' }, status: 200, body: { api_key: AMP_KEY, events: [event(1)] } });
    expect(a?.headers['x-trace']).toBe('t-1');
    expect(JSON.parse(a?.rawBody ?? '')).toEqual({ api_key: AMP_KEY, events: [event(1)] });
    expect(b?.path).toBe('/identify');
    expect((a?.at ?? 0) <= (b?.at ?? 0)).toBe(true);
  });

  it('keeps only method, path, status and time when recordBodies is off', async () => {
    const amp = await startAmplitudeEmulator({ recordBodies: false });
    try {
      await postJson(`${amp.url}/2/httpapi?x=1`, { api_key: AMP_KEY, events: [event(1)] });
      const [r] = amp.requests;
      expect(r).toMatchObject({ method: 'POST', path: '/2/httpapi', status: 200, rawBody: '', body: undefined, query: {}, headers: {} });
      expect(amp.events.size).toBe(1);
    } finally {
      await amp.close();
    }
  });

  it('forgets requests, stored data, faults and export data on reset', async () => {
    await send(1);
    sb.amplitude.inject({ kind: 'status', status: 500, times: 5 });
    sb.amplitude.setExportData(new Map([['20260101T00', [{ n: 1 }]]]));
    sb.amplitude.reset();
    expect([sb.amplitude.requests.length, sb.amplitude.events.size, sb.amplitude.eventsIngested]).toEqual([0, 0, 0]);
    expect((await send(2)).status).toBe(200);
    const res = await fetch(`${sb.amplitude.url}/api/2/export?start=20260101T00&end=20260101T00`, { headers: { authorization: basic(AMP_KEY, 'sandbox-amplitude-secret') } });
    expect(res.status).toBe(404);
  });

  it('answers 404 to paths the provider does not have', async () => {
    const r = await postJson(`${sb.amplitude.url}/3/httpapi`, {});
    expect([r.status, r.json()]).toEqual([404, { code: 404, error: 'Not found: POST /3/httpapi' }]);
  });

  it('describes what each provider received in words a newcomer understands', async () => {
    expect(describeReceived(sb)).toBe('Amplitude: nothing received\nSegment: nothing received');
    await postIdentify(sb.amplitude.url, { api_key: AMP_KEY, identification: [{ user_id: 'user_1' }, { user_id: 'user_2' }] });
    await postIdentify(sb.amplitude.url, { api_key: AMP_KEY, identification: { user_id: 'user_3' } });
    await send(1);
    await send(1);
    const auth = { authorization: basic(SEG_KEY, '') };
    await postJson(`${sb.segment.url}/v1/identify`, { userId: 'user_1', messageId: 's1' }, auth);
    await postJson(`${sb.segment.url}/v1/identify`, { userId: 'user_2', messageId: 's2' }, auth);
    expect(describeReceived(sb)).toBe(
      'Amplitude: 3 users identified, 1 event stored, 1 repeated event dropped by insert_id (4 requests)\n' + 'Segment: 2 users identified (2 requests)',
    );
  });

  it('counts the messages Segment would drop and describes each with its number, reason and messageId', async () => {
    const auth = { authorization: basic(SEG_KEY, '') };
    await postJson(`${sb.segment.url}/v1/batch`, { batch: [{ type: 'track', userId: 'user_1', event: 'ok', messageId: 'ok-1' }, { type: 'track', userId: 'user_1', event: '', messageId: 'bad-1' }, { type: 'alias', previousId: 'anon-1' }] }, auth);
    expect(describeReceived(sb)).toBe('Amplitude: nothing received\nSegment: 1 event tracked, 2 messages Segment would drop (answered 200, not stored) (1 request)');
    expect(describeDropped(sb.segment)).toEqual(['Segment would drop message 2: event: track requires event (a string) (messageId bad-1)', 'Segment would drop message 3: userId: userId or anonymousId is required']);
  });
});
