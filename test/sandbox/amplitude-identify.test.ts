import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startAmplitudeEmulator, type AmplitudeEmulator } from '../../src/sandbox/index.js';
import { AMP_KEY, postIdentify, postJson } from './helpers.js';

let amp: AmplitudeEmulator;
beforeAll(async () => {
  amp = await startAmplitudeEmulator();
});
afterAll(async () => amp.close());
beforeEach(() => amp.reset());

const identify = (identification: unknown, api_key = AMP_KEY) => postIdentify(amp.url, { api_key, identification });

describe('Amplitude Identify API emulator', () => {
  it('answers 200 with the text "success" and records the parsed identification', async () => {
    const r = await identify({ user_id: 'user_1001', country: 'Iceland', user_properties: { plan: 'pro' } });
    expect(r.status).toBe(200);
    expect(r.text).toBe('success');
    expect(amp.identifications).toEqual([{ user_id: 'user_1001', country: 'Iceland', user_properties: { plan: 'pro' } }]);
    expect(amp.users.get('user_1001')).toEqual({ plan: 'pro' });
    const [req] = amp.requests;
    expect(req).toMatchObject({ method: 'POST', path: '/identify', status: 200 });
    expect(req?.body).toEqual({ api_key: AMP_KEY, identification: { user_id: 'user_1001', country: 'Iceland', user_properties: { plan: 'pro' } } });
    expect(req?.rawBody).toContain('api_key=sandbox-amplitude-key&identification=');
  });

  it('accepts an array of identifications keyed by user_id or device_id', async () => {
    const r = await identify([{ user_id: 'user_1' }, { device_id: 'device-1', user_properties: { a: 1 } }]);
    expect(r.status).toBe(200);
    expect(amp.identifications).toHaveLength(2);
    expect(amp.users.get('device-1')).toEqual({ a: 1 });
  });

  it('applies every operator to the stored user properties, in order', async () => {
    await identify({ user_id: 'user_1', user_properties: { tags: ['a'], n: 1, gone: true, keep: 'x' } });
    await identify({
      user_id: 'user_1',
      user_properties: {
        $set: { plan: 'pro' },
        $setOnce: { keep: 'y', first: '2026-01-01' },
        $add: { n: 2 },
        $append: { tags: 'b' },
        $prepend: { tags: 'z' },
        $unset: { gone: '-' },
        $preInsert: { tags: ['a', 'y'] },
        $postInsert: { tags: ['b', 'w'] },
        $remove: { tags: 'z' },
      },
    });
    expect(amp.users.get('user_1')).toEqual({ plan: 'pro', keep: 'x', first: '2026-01-01', n: 3, tags: ['y', 'a', 'b', 'w'] });
  });

  it('refuses user_properties that mix operators and plain keys, naming the field', async () => {
    const r = await identify({ user_id: 'user_1', user_properties: { $set: { plan: 'pro' }, seats: 5 } });
    expect(r.status).toBe(400);
    expect(r.text).toBe('invalid identification[0].user_properties: mixes operators ($set) with plain keys (seats)');
    expect(amp.identifications).toHaveLength(0);
  });

  it('refuses the snake_case $set_once: the wire operator is $setOnce', async () => {
    const r = await identify({ user_id: 'user_1', user_properties: { $set_once: { first: 'x' } } });
    expect(r.status).toBe(400);
    expect(r.text).toContain('unknown operator $set_once');
    expect(r.text).toContain('$setOnce');
  });

  it('refuses an identification without user_id or device_id', async () => {
    const r = await identify([{ user_id: 'user_1' }, { country: 'Iceland' }]);
    expect(r.status).toBe(400);
    expect(r.text).toBe('missing identification[1].user_id: user_id or device_id is required');
    // One bad identification refuses the request: the good one is not stored either.
    expect(amp.identifications).toHaveLength(0);
  });

  it('answers a bad api key with 400, never 401, and echoes the key', async () => {
    const r = await identify({ user_id: 'user_1' }, 'not-the-right-key-123');
    expect(r.status).toBe(400);
    expect(r.text).toBe('invalid api_key: Invalid API key: not-the-right-key-123');
    const missing = await postIdentify(amp.url, { identification: { user_id: 'user_1' } });
    expect(missing.status).toBe(400);
    expect(missing.text).toContain('missing api_key');
  });

  it('refuses a missing identification, malformed JSON and a non-object', async () => {
    const missing = await postIdentify(amp.url, { api_key: AMP_KEY });
    expect([missing.status, missing.text]).toEqual([400, 'missing identification: the form field identification is required']);
    const malformed = await postIdentify(amp.url, { api_key: AMP_KEY, identification: '{"user_id": user_1}' });
    expect(malformed.status).toBe(400);
    expect(malformed.text).toMatch(/^invalid identification: not valid JSON/);
    const scalar = await identify(42);
    expect(scalar.status).toBe(400);
    expect(scalar.text).toBe('invalid identification: must be a JSON object or an array of objects');
  });

  it('refuses unknown identification keys and non-scalar values', async () => {
    const unknown = await identify({ user_id: 'user_1', event_type: 'x' });
    expect([unknown.status, unknown.text]).toEqual([400, 'invalid identification[0].event_type: unknown field']);
    const nested = await identify({ user_id: 'user_1', country: { name: 'Iceland' } });
    expect(nested.text).toBe('invalid identification[0].country: must be a string');
    const ok = await identify({ user_id: 'user_1', paying: true, dma: 'x', start_version: '1.0', groups: { org: 'a' } });
    expect(ok.status).toBe(200);
  });

  it('refuses a number where a string field goes, and $add with a non-number', async () => {
    expect((await identify({ user_id: 'user_1', platform: 7 })).text).toBe('invalid identification[0].platform: must be a string');
    expect((await identify({ user_id: 'user_1', country: false })).text).toBe('invalid identification[0].country: must be a string');
    expect((await identify({ user_id: 'user_1', paying: 1 })).text).toBe('invalid identification[0].paying: must be a string or a boolean');
    expect((await identify({ user_id: 'user_1', user_properties: { $add: { logins: '2' } } })).text).toBe('invalid identification[0].user_properties: operator $add takes numbers (logins is "2")');
    expect((await identify({ user_id: 'user_1', paying: 'true', platform: 'Web', user_properties: { $add: { logins: 2 } } })).status).toBe(200);
    expect(amp.users.get('user_1')).toEqual({ logins: 2 });
  });

  it('allows user_properties nested 40 levels and refuses 41', async () => {
    const nest = (levels: number): Record<string, unknown> => {
      let v: Record<string, unknown> = { leaf: 1 };
      for (let i = 1; i < levels; i++) v = { k: v };
      return v;
    };
    expect((await identify({ user_id: 'user_1', user_properties: nest(40) })).status).toBe(200);
    const r = await identify({ user_id: 'user_1', user_properties: nest(41) });
    expect(r.status).toBe(400);
    expect(r.text).toBe('invalid identification[0].user_properties: nests deeper than 40 levels');
  });

  it('answers 413 for 2001 identifications but takes 2000', async () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => ({ user_id: `user_${i}` }));
    expect((await identify(many(2000))).status).toBe(200);
    const r = await identify(many(2001));
    expect([r.status, r.text]).toEqual([413, 'Payload too large']);
    expect(amp.identifications).toHaveLength(2000);
  });

  it('answers 413 for a body over 1 MB', async () => {
    const r = await identify({ user_id: 'user_1', user_properties: { blob: 'x'.repeat(1_000_001) } });
    expect(r.status).toBe(413);
    expect(amp.requests[0]?.status).toBe(413);
  });

  it('wants a form body: JSON is refused', async () => {
    const r = await postJson(`${amp.url}/identify`, { api_key: AMP_KEY, identification: { user_id: 'user_1' } });
    expect(r.status).toBe(400);
    expect(r.text).toContain('application/x-www-form-urlencoded');
  });
});
