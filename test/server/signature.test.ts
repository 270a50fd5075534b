import { describe, expect, it } from 'vitest';
import { ferrySignature, githubSignature, hmacHex, verifySignature } from '../../src/server/signature.js';

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
});
