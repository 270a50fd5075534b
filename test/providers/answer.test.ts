import { describe, expect, it } from 'vitest';
import { answerOf } from '../../src/providers/http.js';

describe("a provider's own words in its answer", () => {
  it.each([
    ['Amplitude', 400, '{"code":400,"error":"Invalid API key: abc"}', {}, { status: 400, error: 'Invalid API key: abc' }],
    ['Amplitude with a field', 400, '{"code":400,"error":"Request missing required field","missing_field":"api_key"}', {}, { status: 400, error: 'Request missing required field', detail: { missing_field: 'api_key' } }],
    ['Segment', 400, '{"success":false,"error":"invalid JSON: x"}', {}, { status: 400, error: 'invalid JSON: x' }],
    ['a `message` field', 422, '{"message":"email is invalid","field":"email"}', {}, { status: 422, error: 'email is invalid', detail: { field: 'email' } }],
    ['a nested error object', 402, '{"error":{"message":"card declined","type":"card_error"}}', {}, { status: 402, error: 'card declined', detail: { error: { type: 'card_error' } } }],
    ['plain text', 502, '<html>Bad gateway</html>', {}, { status: 502, body: '<html>Bad gateway</html>' }],
    ['plain text that is the error', 400, 'invalid identification[0].user_id: x\n', { textIsError: true }, { status: 400, error: 'invalid identification[0].user_id: x' }],
    ['a JSON array', 500, '[1,2]', {}, { status: 500, body: '[1,2]' }],
    ['an empty body', 503, '', {}, { status: 503 }],
  ])('reads %s', (_case, status, text, options, expected) => {
    expect(answerOf(status, text, options)).toEqual(expected);
  });

  it('keeps bounded excerpts: a long error text, and the body instead of a large detail', () => {
    const long = answerOf(400, JSON.stringify({ error: 'e'.repeat(2000) }));
    expect(long.error).toBe(`${'e'.repeat(500)}…`);
    const big = answerOf(400, JSON.stringify({ error: 'too many', users: Array.from({ length: 500 }, (_, i) => `user_${i}`) }));
    expect(big).toMatchObject({ status: 400, error: 'too many' });
    expect(big.detail).toBeUndefined();
    expect(big.body).toMatch(/^\{"error":"too many","users":\["user_0",.*…$/);
    expect(big.body?.length).toBe(501);
  });
});
