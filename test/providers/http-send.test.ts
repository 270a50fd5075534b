import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ProviderError } from '../../src/errors.js';
import { createAgent, send } from '../../src/providers/http.js';
import { startServer } from '../helpers/server.js';

// `send` is the one way provider calls reach the network: what it hands back (status,
// headers, the whole body) and how it fails are what every action builds on.
let close: (() => Promise<void>) | undefined;
const agent = createAgent();
afterEach(async () => {
  await close?.();
  close = undefined;
});
afterAll(() => agent.close());

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProviderError);
  return error as ProviderError;
}

describe('send', () => {
  it('returns status, lower-case headers (repeated ones as arrays) and a body that came in many chunks', async () => {
    const text = `${'é'.repeat(40_000)}end`;
    const server = await startServer((_req, res) => {
      res.writeHead(207, [['X-Trace', 'abc'], ['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2']]);
      const bytes = Buffer.from(text);
      // Split inside a two-byte character: decoding must wait for the whole body.
      res.write(bytes.subarray(0, 1001));
      setTimeout(() => res.end(bytes.subarray(1001)), 20);
    });
    close = server.close;
    const answer = await send('http', agent, { method: 'POST', url: `${server.url}/x?page=2`, body: '{"a":1}', headers: { 'content-type': 'application/json' }, timeoutMs: 30_000 });
    expect(answer.status).toBe(207);
    expect(answer.headers['x-trace']).toBe('abc');
    expect(answer.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(answer.text).toBe(text);
    expect(server.seen[0]).toMatchObject({ method: 'POST', url: '/x?page=2', body: '{"a":1}' });
  });

  it('gives up after a short timeout with FERRY_PROVIDER_TIMEOUT', async () => {
    const server = await startServer(() => undefined); // never answers
    close = server.close;
    const error = await failure(send('http', agent, { method: 'GET', url: `${server.url}/slow`, timeoutMs: 100 }));
    expect(error.code).toBe('FERRY_PROVIDER_TIMEOUT');
    expect(error.message).toBe('http did not answer within 100ms');
  });

  it('stops a call when its signal aborts, with FERRY_ABORTED', async () => {
    const server = await startServer(() => undefined);
    close = server.close;
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 50);
    const error = await failure(send('http', agent, { method: 'GET', url: `${server.url}/slow`, timeoutMs: 30_000, signal: stop.signal }));
    expect(error.code).toBe('FERRY_ABORTED');
  });

  it('does not send at all when the signal is already aborted', async () => {
    const server = await startServer((_req, res) => void res.end('ok'));
    close = server.close;
    const error = await failure(send('http', agent, { method: 'GET', url: `${server.url}/`, timeoutMs: 30_000, signal: AbortSignal.abort() }));
    expect(error.code).toBe('FERRY_ABORTED');
    expect(server.seen).toHaveLength(0);
  });

  it('reports a refused connection as FERRY_PROVIDER_NETWORK with the reason', async () => {
    const server = await startServer(() => undefined);
    const url = server.url;
    await server.close();
    const error = await failure(send('segment', agent, { method: 'GET', url, timeoutMs: 30_000 }));
    expect(error.code).toBe('FERRY_PROVIDER_NETWORK');
    expect(error.message).toMatch(/^segment could not be reached \(ECONNREFUSED\)/);
  });
});
