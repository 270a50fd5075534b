import { describe, expect, it } from 'vitest';
import { createHmac } from 'node:crypto';
import { checkSignature, ferrySignature, githubSignature, hmacHex, standardKey, standardSignature, verifySignature } from '../../src/server/signature.js';

const secret = 'It\'s a Secret to Everybody';
const body = Buffer.from('Hello, World!');
const vector = '757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17';
const now = Date.UTC(2026, 0, 1);
const t = Math.floor(now / 1000);

describe('webhook signatures', () => {
  it('computes the GitHub test vector from PROVIDERS.md', () => {
    expect(hmacHex(secret, body)).toBe(vector);
    expect(githubSignature(secret, body)).toBe(`sha256=${vector}`);
  });

  it('accepts the GitHub test vector in X-Hub-Signature-256, in either letter case', () => {
    expect(verifySignature(secret, body, { 'x-hub-signature-256': `sha256=${vector}` })).toBe(true);
    expect(verifySignature(secret, body, { 'x-hub-signature-256': `sha256=${vector.toUpperCase()}` })).toBe(true);
  });

  it.each([
    ['a missing header', {}],
    ['another secret', { 'x-hub-signature-256': githubSignature('another secret', body) }],
    ['one flipped digit', { 'x-hub-signature-256': `sha256=${vector.slice(0, -1)}f` }],
    ['a truncated digest', { 'x-hub-signature-256': `sha256=${vector.slice(0, 62)}` }],
    ['a longer digest', { 'x-hub-signature-256': `sha256=${vector}00` }],
    ['no scheme prefix', { 'x-hub-signature-256': vector }],
    ['the sha1 scheme', { 'x-hub-signature-256': `sha1=${vector}` }],
    ['non-hex characters', { 'x-hub-signature-256': `sha256=${'z'.repeat(64)}` }],
    ['a repeated header', { 'x-hub-signature-256': [`sha256=${vector}`, `sha256=${vector}`] }],
  ])('refuses %s', (_case, headers) => {
    expect(verifySignature(secret, body, headers)).toBe(false);
  });

  it('accepts X-Ferry-Signature over "<t>.<body>" within 300 s either way', () => {
    for (const skew of [0, 299, -299]) {
      expect(verifySignature(secret, body, { 'x-ferry-signature': ferrySignature(secret, body, now + skew * 1000) }, now)).toBe(true);
    }
    const manual = `t=${t},v1=${hmacHex(secret, `${t}.Hello, World!`)}`;
    expect(verifySignature(secret, body, { 'x-ferry-signature': manual }, now)).toBe(true);
  });

  it('refuses a stale or future X-Ferry-Signature even when its HMAC is right', () => {
    for (const skew of [301, -301, 86_400]) {
      expect(verifySignature(secret, body, { 'x-ferry-signature': ferrySignature(secret, body, now - skew * 1000) }, now)).toBe(false);
    }
  });

  it('binds the timestamp into the HMAC: a signature moved to another t fails', () => {
    const v1 = hmacHex(secret, `${t}.`, body);
    expect(verifySignature(secret, body, { 'x-ferry-signature': `t=${t + 1},v1=${v1}` }, now)).toBe(false);
  });

  it('accepts any of several v1 values, as a sender rotating its secret sends', () => {
    const header = `t=${t},v1=${hmacHex('old secret', `${t}.`, body)},v1=${hmacHex(secret, `${t}.`, body)}`;
    expect(verifySignature(secret, body, { 'x-ferry-signature': header }, now)).toBe(true);
  });

  it.each(['', 't=,v1=', `v1=${hmacHex(secret, `${t}.`, body)}`, `t=${t}`, `t=abc,v1=${hmacHex(secret, 'abc.', body)}`, 'garbage', `t=${t},v1=${'0'.repeat(64)}`])(
    'refuses the malformed X-Ferry-Signature %j',
    (header) => {
      expect(verifySignature(secret, body, { 'x-ferry-signature': header }, now)).toBe(false);
    },
  );

  it('checks the raw bytes: the same JSON with other whitespace does not verify', () => {
    const signed = Buffer.from('{"a":1}');
    const header = { 'x-hub-signature-256': githubSignature(secret, signed) };
    expect(verifySignature(secret, signed, header)).toBe(true);
    expect(verifySignature(secret, Buffer.from('{"a": 1}'), header)).toBe(false);
  });

  it('keys a GitHub delivery by its body for 24 h and an X-Ferry one by "<t>.<body>" until its t goes stale', () => {
    const github = checkSignature(secret, body, { 'x-hub-signature-256': `sha256=${vector}` }, now);
    expect(github).toEqual({ replays: [{ key: expect.stringMatching(/^github:[0-9a-f]{64}$/), untilMs: now + 24 * 3600 * 1000 }] });
    const ferry = checkSignature(secret, body, { 'x-ferry-signature': ferrySignature(secret, body, now - 100_000) }, now);
    expect(ferry?.replays).toEqual([{ key: expect.stringMatching(/^ferry:[0-9a-f]{64}$/), untilMs: (t - 100 + 301) * 1000 }]);
    // Another t is another signed content: a new delivery of the same body.
    const later = checkSignature(secret, body, { 'x-ferry-signature': ferrySignature(secret, body, now) }, now);
    expect(later?.replays[0]?.key).not.toBe(ferry?.replays[0]?.key);
    expect(checkSignature(secret, body, { 'x-hub-signature-256': githubSignature('other', body) }, now)).toBeUndefined();
  });
});

describe('Standard Webhooks signatures', () => {
  // The published test vector of the Standard Webhooks reference libraries.
  const spec = {
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    id: 'msg_p5jXN8AQM9LWM0D4loKWxJek',
    timestamp: '1614265330',
    body: Buffer.from('{"test": 2432232314}'),
    signature: 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
  };
  const at = Number(spec.timestamp) * 1000;
  const headers = (extra: Record<string, string> = {}) => ({ 'webhook-id': spec.id, 'webhook-timestamp': spec.timestamp, 'webhook-signature': spec.signature, ...extra });

  it('accepts the spec test vector, and the signed webhook-id names the delivery', () => {
    expect(checkSignature(spec.secret, spec.body, headers(), at)).toEqual({ id: spec.id, replays: [] });
  });

  it('signs as the spec says: base64 HMAC-SHA256 of "id.timestamp.body" with the base64 key after whsec_', () => {
    const key = Buffer.from(spec.secret.slice('whsec_'.length), 'base64');
    const manual = createHmac('sha256', key).update(`${spec.id}.${spec.timestamp}.${spec.body.toString()}`).digest('base64');
    expect(`v1,${manual}`).toBe(spec.signature);
    expect(standardSignature(spec.secret, spec.id, spec.body, at)).toEqual({ 'webhook-id': spec.id, 'webhook-timestamp': spec.timestamp, 'webhook-signature': spec.signature });
  });

  it('uses a secret without whsec_ as its UTF-8 bytes', () => {
    const plainSig = `v1,${createHmac('sha256', 'plain secret').update(`${spec.id}.${spec.timestamp}.`).update(spec.body).digest('base64')}`;
    expect(verifySignature('plain secret', spec.body, headers({ 'webhook-signature': plainSig }), at)).toBe(true);
    // The whsec_ secret used as text instead of as its base64 key does not verify.
    const asText = `v1,${createHmac('sha256', spec.secret).update(`${spec.id}.${spec.timestamp}.`).update(spec.body).digest('base64')}`;
    expect(verifySignature(spec.secret, spec.body, headers({ 'webhook-signature': asText }), at)).toBe(false);
    expect(standardKey('whsec_')).toBeUndefined();
    expect(standardKey('whsec_not base64!')).toBeUndefined();
  });

  it('accepts any of several space-separated signatures, skipping other versions', () => {
    for (const list of [`v1,bm9wZQ== ${spec.signature}`, `v1a,${'A'.repeat(88)} ${spec.signature}`, `${spec.signature} v1,${'B'.repeat(44)}`]) {
      expect(verifySignature(spec.secret, spec.body, headers({ 'webhook-signature': list }), at)).toBe(true);
    }
  });

  it('accepts a timestamp within 300 s either way and refuses one older or newer', () => {
    for (const skew of [0, 300, -300]) expect(verifySignature(spec.secret, spec.body, headers(), at + skew * 1000)).toBe(true);
    for (const skew of [301, -301, 86_400]) expect(verifySignature(spec.secret, spec.body, headers(), at + skew * 1000)).toBe(false);
  });

  it.each([
    ['another secret', { secret: 'whsec_' + Buffer.from('another key').toString('base64') }],
    ['another webhook-id', { headers: { 'webhook-id': 'msg_other' } }],
    ['another timestamp', { headers: { 'webhook-timestamp': '1614265331' } }],
    ['another body', { body: Buffer.from('{"test": 2432232315}') }],
    ['no webhook-id', { headers: { 'webhook-id': undefined } }],
    ['no webhook-timestamp', { headers: { 'webhook-timestamp': undefined } }],
    ['a non-numeric timestamp', { headers: { 'webhook-timestamp': '1614265330.0' } }],
    ['only a v2 signature', { headers: { 'webhook-signature': spec.signature.replace('v1,', 'v2,') } }],
    ['a signature without version', { headers: { 'webhook-signature': spec.signature.slice(3) } }],
    ['a truncated signature', { headers: { 'webhook-signature': spec.signature.slice(0, -4) } }],
    ['malformed base64', { headers: { 'webhook-signature': `${spec.signature.slice(0, -1)}!` } }],
    ['an empty signature list', { headers: { 'webhook-signature': '' } }],
    ['a repeated header', { headers: { 'webhook-signature': [spec.signature, spec.signature] } }],
  ])('refuses %s', (_case, change: { secret?: string; body?: Buffer; headers?: Record<string, string | string[] | undefined> }) => {
    const sent = { ...headers(), ...change.headers };
    expect(checkSignature(change.secret ?? spec.secret, change.body ?? spec.body, sent, at)).toBeUndefined();
  });
});
