import { describe, expect, it } from 'vitest';
import { Redactor } from '../src/redact.js';
import { amplitude } from '../src/providers/amplitude/index.js';
import { segment } from '../src/providers/segment/index.js';
import { escapeControls } from '../src/terminal.js';

const redactor = (...values: string[]): Redactor => {
  const r = new Redactor();
  for (const v of values) r.add(v);
  return r;
};

describe('Redactor', () => {
  it.each([
    ['the value', 'key is s3cr3t-Value'],
    ['upper case', 'key is S3CR3T-VALUE'],
    ['lower case', 'key is s3cr3t-value'],
    ['URI encoded', `key is ${encodeURIComponent('s3cr3t-Value')}`],
    ['base64', `key is ${Buffer.from('s3cr3t-Value').toString('base64')}`],
  ])('redacts %s inside text', (_, text) => {
    expect(redactor('s3cr3t-Value').redact(text)).toBe('key is [redacted]');
  });

  it('redacts the form encoding of a query parameter, spaces as `+`', () => {
    const r = redactor('a b/c+d');
    expect(r.redact(`url ?t=${new URLSearchParams({ t: 'a b/c+d' }).toString().slice(2)}&x=1`)).toBe('url ?t=[redacted]&x=1');
  });

  it('hides a short secret where it is a whole string value, but not inside text or as a number', () => {
    const r = redactor('1', 'ab');
    expect(r.redactValue({ pin: '1', count: 1, note: 'ab and 1', list: ['ab'] })).toEqual({ pin: '[redacted]', count: 1, note: 'ab and 1', list: ['[redacted]'] });
    expect(r.redact('tab 1')).toBe('tab 1');
  });

  it('redacts values, never JSON text: a secret `true` leaves booleans and the JSON valid', () => {
    const r = redactor('true', '12345');
    const value = { ok: true, text: 'it is true', n: 12345, m: 7 };
    const json = r.redactJson(value, 2);
    expect(JSON.parse(json)).toEqual({ ok: true, text: 'it is [redacted]', n: '[redacted]', m: 7 });
  });

  it('returns the plain JSON when no secret is in it', () => {
    const value = { a: 'b', n: [1, 2] };
    expect(redactor('s3cr3t-Value').redactJson(value)).toBe(JSON.stringify(value));
    expect(new Redactor().redactJson(value)).toBe(JSON.stringify(value));
  });

  it('redacts JSON lines value by value, rewriting only the lines that hold a secret', () => {
    const r = new Redactor();
    r.add('true');
    r.add('s3cr3t-key');
    const lines = `${JSON.stringify({ t: 'step', ok: true, n: 1 })}\n${JSON.stringify({ t: 'step', said: 'key s3cr3t-key echoed', flag: 'true' })}\n`;
    const out = r.redactJsonLines(lines);
    expect(out.split('\n')[0]).toBe(lines.split('\n')[0]);
    expect(out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown)).toEqual([
      { t: 'step', ok: true, n: 1 },
      { t: 'step', said: 'key [redacted] echoed', flag: '[redacted]' },
    ]);
    expect(out.endsWith('\n')).toBe(true);
  });

  it('finds a secret that JSON escaping changes (a quote in it)', () => {
    const r = redactor('pa"ss\\word');
    expect(JSON.parse(r.redactJson({ k: 'x pa"ss\\word y' }))).toEqual({ k: 'x [redacted] y' });
  });
});

describe('credential forms declared by the providers', () => {
  const key = 'wk_Segment7Key';
  it("Segment's Basic header of `key:` is redacted although it shares no base64 block with the key", () => {
    const r = redactor(key);
    const header = `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
    expect(r.redact(header)).toBe(header);
    for (const form of segment.credentialForms?.({ write_key: key }) ?? []) r.add(form);
    expect(r.redact(`echo: ${header}`)).toBe('echo: [redacted]');
    expect(r.redact(`echo: ${header.slice(6)}`)).toBe('echo: [redacted]');
  });

  it("Amplitude's export Basic header of `api_key:secret_key` is redacted", () => {
    const r = new Redactor();
    for (const form of amplitude.credentialForms?.({ api_key: 'ampKey_1234567', secret_key: 'ampSecret_9876' }) ?? []) r.add(form);
    expect(r.redact(`got Basic ${Buffer.from('ampKey_1234567:ampSecret_9876').toString('base64')}`)).toBe('got [redacted]');
  });
});

describe('escapeControls', () => {
  it('escapes C0 (but tab and newline), DEL, C1 and bidi overrides as \\u escapes', () => {
    expect(escapeControls('a\u001b[2J\u0007\tb\nc\u0000\u007f\u009b\u202e\r')).toBe('a\\u001b[2J\\u0007\tb\nc\\u0000\\u007f\\u009b\\u202e\\u000d');
  });

  it('leaves a JSON document valid and equal in value', () => {
    const value = { s: 'x\u009by\u202ez\u007f' };
    const text = escapeControls(JSON.stringify(value));
    expect(text).not.toMatch(/[\u007f-\u009f\u202e]/);
    expect(JSON.parse(text)).toEqual(value);
  });
});
