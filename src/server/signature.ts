import { createHmac, timingSafeEqual } from 'node:crypto';

/** GitHub's scheme: `sha256=<hex HMAC-SHA256 of the raw body>`. */
export const GITHUB_SIGNATURE = 'x-hub-signature-256';
/** Stripe-like scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`. */
export const FERRY_SIGNATURE = 'x-ferry-signature';
/** How far the `t=` of X-Ferry-Signature may be from now, either way. */
export const REPLAY_WINDOW_SECONDS = 300;

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function digest(secret: string, parts: readonly (string | Buffer)[]): Buffer {
  const hmac = createHmac('sha256', secret);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

/** Hex HMAC-SHA256 of the parts, in order: what a sender puts in a signature header. */
export function hmacHex(secret: string, ...parts: (string | Buffer)[]): string {
  return digest(secret, parts).toString('hex');
}

/** Constant-time check of a hex signature against the expected digest; malformed hex never matches. */
function matches(expected: Buffer, hex: string): boolean {
  if (!HEX_SHA256.test(hex)) return false;
  return timingSafeEqual(expected, Buffer.from(hex, 'hex'));
}

function single(value: string | string[] | undefined): string | undefined {
  // A repeated signature header is ambiguous: refuse it rather than pick one.
  return typeof value === 'string' ? value : undefined;
}

function githubValid(secret: string, body: Buffer, header: string): boolean {
  if (!header.startsWith('sha256=')) return false;
  return matches(digest(secret, [body]), header.slice('sha256='.length));
}

function ferryValid(secret: string, body: Buffer, header: string, nowMs: number): boolean {
  let t: string | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't') t = value;
    // Several v1 values let a sender sign with an old and a new secret while rotating.
    else if (key === 'v1') candidates.push(value);
  }
  if (t === undefined || !/^\d{1,12}$/.test(t) || candidates.length === 0) return false;
  if (Math.abs(nowMs / 1000 - Number(t)) > REPLAY_WINDOW_SECONDS) return false;
  const expected = digest(secret, [`${t}.`, body]);
  let ok = false;
  // Every candidate is compared, so the time taken does not tell which one matched.
  for (const candidate of candidates) ok = matches(expected, candidate) || ok;
  return ok;
}

/**
 * True when the request carries a valid signature of `body` in either scheme of DESIGN.md §6.
 * Deliberately a boolean: callers answer one generic 401 whatever part was wrong.
 */
export function verifySignature(secret: string, body: Buffer, headers: Headers, nowMs = Date.now()): boolean {
  const github = single(headers[GITHUB_SIGNATURE]);
  const ferry = single(headers[FERRY_SIGNATURE]);
  let ok = false;
  if (github !== undefined) ok = githubValid(secret, body, github) || ok;
  if (ferry !== undefined) ok = ferryValid(secret, body, ferry, nowMs) || ok;
  return ok;
}

/** The X-Ferry-Signature value for `body` at `nowMs`: for senders, tests and the benchmark. */
export function ferrySignature(secret: string, body: string | Buffer, nowMs = Date.now()): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${hmacHex(secret, `${t}.`, body)}`;
}

/** The X-Hub-Signature-256 value for `body`. */
export function githubSignature(secret: string, body: string | Buffer): string {
  return `sha256=${hmacHex(secret, body)}`;
}
