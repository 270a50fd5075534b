import { request } from 'node:http';
import { connect } from 'node:net';
import { prng } from '../../src/sandbox/faults.js';
import { ferrySignature, githubSignature } from '../../src/server/signature.js';

/** What a fuzzed request got: a status, or null when the server closed without answering. */
export interface FuzzOutcome {
  kind: 'http' | 'raw';
  what: string;
  status: number | null;
}

export interface FuzzTarget {
  url: string;
  /** Paths the server routes, with the secret of each (undefined: unsigned). */
  hooks: { path: string; secret: string | undefined }[];
  /** A run id that exists, so that some GET /runs/<id> find one. */
  runId: string;
}

const TOKEN = 'abcdefghijklmnopqrstuvwxyz0123456789-_';
const METHODS = ['GET', 'POST', 'POST', 'POST', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'];
const HEADER_NAMES = ['x-hub-signature-256', 'x-ferry-signature', 'x-github-delivery', 'x-ferry-delivery', 'idempotency-key', 'authorization', 'content-type', 'accept', 'user-agent'];

/** A seeded generator of hostile requests: the same seed sends the same requests. */
export function fuzzer(seed: number, target: FuzzTarget) {
  const random = prng(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)] as T;
  const bytes = (n: number): Buffer => {
    const out = Buffer.alloc(n + 4);
    for (let at = 0; at < n; at += 4) out.writeUInt32LE(Math.floor(random() * 2 ** 32), at);
    return out.subarray(0, n);
  };
  const word = (n: number, alphabet = TOKEN): string => Array.from({ length: n }, () => alphabet[int(alphabet.length)]).join('');
  const printable = (n: number): string => Array.from({ length: n }, () => String.fromCharCode(32 + int(95))).join('');
  const url = new URL(target.url);

  function size(): number {
    const r = random();
    if (r < 0.6) return int(2048);
    if (r < 0.9) return int(64 * 1024);
    if (r < 0.95) return 1024 * 1024 - 8 + int(16); // right at the limit
    return 1024 * 1024 + int(2 * 1024 * 1024);
  }

  function body(): Buffer {
    const r = random();
    if (r < 0.4) return Buffer.from(JSON.stringify({ [word(5)]: printable(int(40)), n: int(1000), list: [word(3), null, true] }));
    if (r < 0.5) return Buffer.from(pick(['', 'null', '[]', '{}', '"x"', '{"a":', '\u0000', '{"__proto__":{"x":1}}']));
    return bytes(size());
  }

  function path(): string {
    const hook = pick(target.hooks).path;
    return pick([
      hook,
      hook,
      `${hook}?${word(4)}=${encodeURIComponent(printable(int(20)))}`,
      `${hook}/`,
      '/healthz',
      `/runs/${target.runId}`,
      `/runs/${word(26, '0123456789ABCDEFGHJKMNPQRSTVWXYZ')}`,
      `/runs/${encodeURIComponent(printable(int(30)))}`,
      `/${encodeURIComponent(printable(int(60)))}`,
      '/%',
      '/runs/%E0%A4%A',
    ]);
  }

  function headers(payload: Buffer, hookSecret: string | undefined): Record<string, string> {
    const out: Record<string, string> = {};
    for (let i = int(8); i > 0; i--) out[random() < 0.5 ? pick(HEADER_NAMES) : `x-${word(1 + int(12))}`] = printable(int(200));
    const secret = hookSecret ?? 'not-the-secret';
    const r = random();
    if (r < 0.3) out['x-hub-signature-256'] = githubSignature(random() < 0.7 ? secret : 'wrong', payload);
    else if (r < 0.5) out['x-ferry-signature'] = ferrySignature(secret, payload, Date.now() - int(3) * 200_000);
    return out;
  }

  /** One request through node's HTTP client: valid HTTP with random method, path, headers and body. */
  function viaHttp(): Promise<FuzzOutcome> {
    const method = pick(METHODS);
    const target_ = path();
    const hook = target.hooks.find((h) => target_.startsWith(h.path));
    const payload = method === 'GET' || method === 'HEAD' ? (random() < 0.8 ? Buffer.alloc(0) : body()) : body();
    const chunked = random() < 0.3;
    const what = `${method} ${target_.slice(0, 80)} (${payload.length} bytes${chunked ? ', chunked' : ''})`;
    return new Promise((resolve) => {
      let settled = false;
      const done = (status: number | null): void => {
        if (!settled) resolve({ kind: 'http', what, status });
        settled = true;
      };
      const req = request(
        { host: url.hostname, port: url.port, method, path: target_, agent: false, headers: { ...headers(payload, hook?.secret), ...(chunked ? {} : { 'content-length': String(payload.length) }) } },
        (res) => {
          done(res.statusCode ?? null);
          res.resume();
        },
      );
      // A 413 may close the connection while the body is still going out: the answer counts.
      req.on('error', () => done(null));
      if (chunked) {
        for (let at = 0; at < payload.length; at += 16 * 1024) req.write(payload.subarray(at, at + 16 * 1024));
        req.end();
      } else req.end(payload);
    });
  }

  /** Bytes straight onto a socket: garbage, broken request lines, bodies shorter or longer than declared. */
  function viaSocket(): Promise<FuzzOutcome> {
    const r = random();
    let data: Buffer;
    let what: string;
    if (r < 0.4) {
      data = bytes(1 + int(4096));
      what = `${data.length} random bytes`;
    } else if (r < 0.7) {
      const declared = int(4096);
      data = Buffer.concat([Buffer.from(`POST ${pick(target.hooks).path} HTTP/1.1\r\nhost: x\r\ncontent-length: ${declared}\r\n\r\n`), bytes(int(2 * declared + 1))]);
      what = `a body of ${data.length} bytes declared as ${declared}`;
    } else {
      data = Buffer.from(`${word(1 + int(8)).toUpperCase()} /${printable(int(100))} HTTP/1.${int(3)}\r\n${printable(int(300))}\r\n\r\n`);
      what = 'a random request line and header';
    }
    return new Promise((resolve) => {
      const socket = connect(Number(url.port), url.hostname);
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => {
        const status = /^HTTP\/1\.1 (\d{3}) /.exec(answer)?.[1];
        resolve({ kind: 'raw', what, status: status === undefined ? null : Number(status) });
      });
      // Half-close after writing: an unfinished request then ends instead of waiting for a timeout.
      socket.end(data);
      socket.setTimeout(5_000, () => socket.destroy());
    });
  }

  return { next: (): Promise<FuzzOutcome> => (random() < 0.7 ? viaHttp() : viaSocket()) };
}
