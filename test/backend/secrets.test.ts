import { describe, expect, it } from 'vitest';
import { fillSecrets, secretsLeft, stripSecrets, type CallRequest } from '../../src/backend/secrets.js';

const KEY = 'k3y with spaces&"quotes"/+é';
const SECRETS = { AMP_KEY: KEY, AMP_SECRET: 'plain-secret-0042' };
const env = { ...SECRETS };

const request = (over: Partial<CallRequest>): CallRequest => ({ origin: 'https://api.example.test', path: '/x', method: 'POST', headers: {}, body: null, ...over });

/** No form of any secret is in the stripped request: the text a job would carry. */
function carries(stripped: CallRequest): string {
  return JSON.stringify({ ...stripped, body: stripped.body === null ? null : stripped.body.toString() });
}

describe('stripping secrets out of a queued call and filling them back', () => {
  const cases: [string, CallRequest][] = [
    ['written as is in a header', request({ headers: { 'x-api-key': SECRETS.AMP_SECRET } })],
    ['JSON-escaped in a JSON body', request({ body: JSON.stringify({ api_key: KEY, events: [{ user_id: 'u1' }] }) })],
    ['encodeURIComponent in the query', request({ path: `/export?api_key=${encodeURIComponent(KEY)}&start=1` })],
    ['form-encoded (+ for space) in a form body', request({ body: new URLSearchParams({ api_key: KEY, identification: '[]' }).toString() })],
    ['in a Buffer body', request({ body: Buffer.from(JSON.stringify({ api_key: KEY })) })],
    ['inside a Basic Authorization header (key:secret)', request({ headers: { Authorization: `Basic ${Buffer.from(`${KEY}:${SECRETS.AMP_SECRET}`).toString('base64')}` } })],
    ['inside a Basic Authorization header (Segment: key and an empty password)', request({ headers: { authorization: `Basic ${Buffer.from(`${SECRETS.AMP_SECRET}:`).toString('base64')}` } })],
  ];

  it.each(cases)('takes out a secret %s, and fills it back to the exact request', (_, original) => {
    const { request: stripped, names } = stripSecrets(original, SECRETS);
    expect(names.length).toBeGreaterThan(0);
    const text = carries(stripped);
    for (const value of Object.values(SECRETS)) {
      expect(text).not.toContain(value);
      expect(text).not.toContain(encodeURIComponent(value));
      expect(text).not.toContain(Buffer.from(value).toString('base64'));
    }
    expect(text).not.toContain(Buffer.from(`${SECRETS.AMP_SECRET}:`).toString('base64'));
    expect(secretsLeft(stripped, SECRETS)).toEqual([]);
    const filled = fillSecrets(stripped, env);
    expect(filled).toEqual(original);
  });

  it('replaces the longest secret first when one secret contains another', () => {
    const secrets = { SHORT: 'abcd1234', LONG: 'abcd1234-and-more' };
    const original = request({ body: 'a=abcd1234-and-more&b=abcd1234' });
    const { request: stripped, names } = stripSecrets(original, secrets);
    expect(names.sort()).toEqual(['LONG', 'SHORT']);
    expect(fillSecrets(stripped, secrets)).toEqual(original);
  });

  it('finds what it cannot take out: a secret in base64 with more around it, in another header', () => {
    const original = request({ headers: { 'x-auth': Buffer.from(`token=${SECRETS.AMP_SECRET};`).toString('base64') } });
    const { request: stripped } = stripSecrets(original, SECRETS);
    expect(secretsLeft(stripped, SECRETS)).toEqual(['AMP_SECRET']);
  });

  it('finds an upper-cased secret in a body', () => {
    const { request: stripped } = stripSecrets(request({ body: `key=${SECRETS.AMP_SECRET.toUpperCase()}` }), SECRETS);
    expect(secretsLeft(stripped, SECRETS)).toEqual(['AMP_SECRET']);
  });

  it('fails to fill a secret the environment lacks, naming it and the host, never a value', () => {
    const { request: stripped } = stripSecrets(request({ headers: { 'x-api-key': SECRETS.AMP_SECRET } }), SECRETS);
    let error: unknown;
    try {
      fillSecrets(stripped, {});
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'FERRY_BACKEND_SECRET_MISSING' });
    expect((error as Error).message).toContain('`AMP_SECRET`');
    expect((error as Error).message).toContain('api.example.test');
    expect((error as Error).message).not.toContain(SECRETS.AMP_SECRET);
  });

  it('leaves a request without secrets as it is', () => {
    const original = request({ body: '{"a":1}', headers: { 'content-type': 'application/json' } });
    const { request: stripped, names } = stripSecrets(original, SECRETS);
    expect(names).toEqual([]);
    expect(stripped).toEqual(original);
    expect(secretsLeft(stripped, SECRETS)).toEqual([]);
  });
});
