import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** GitHub's scheme: `sha256=<hex HMAC-SHA256 of the raw body>`. */
export const GITHUB_SIGNATURE = 'x-hub-signature-256';
/** Stripe-like scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`. */
export const FERRY_SIGNATURE = 'x-ferry-signature';
/** Standard Webhooks (standardwebhooks.com): the three headers of one signed message. */
export const STANDARD_ID = 'webhook-id';
export const STANDARD_TIMESTAMP = 'webhook-timestamp';
/** Space-separated `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<raw body>">`. */
export const STANDARD_SIGNATURE = 'webhook-signature';
/** How far a signed timestamp (X-Ferry's `t=`, `webhook-timestamp`) may be from now, either way. */
export const REPLAY_WINDOW_SECONDS = 300;
/** GitHub signs only the body: the same signed body is taken for a replay this long. */
export const GITHUB_REPLAY_SECONDS = 24 * 60 * 60;
/** The Standard Webhooks prefix of a secret whose key is the base64 after it. */
export const STANDARD_SECRET_PREFIX = 'whsec_';

const HEX_SHA256 = /^[0-9a-fA-F]{64}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const UNIX_SECONDS = /^\d{1,12}$/;

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function digest(secret: string | Buffer, parts: readonly (string | Buffer)[]): Buffer {
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

/** A signed timestamp within REPLAY_WINDOW_SECONDS of now, or undefined. */
function freshSeconds(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined || !UNIX_SECONDS.test(value)) return undefined;
  const t = Number(value);
  return Math.abs(nowMs / 1000 - t) <= REPLAY_WINDOW_SECONDS ? t : undefined;
}

/** The signed `t` of a valid X-Ferry-Signature, or undefined. */
function ferryValid(secret: string, body: Buffer, header: string, nowMs: number): string | undefined {
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
  if (t === undefined || freshSeconds(t, nowMs) === undefined || candidates.length === 0) return undefined;
  const expected = digest(secret, [`${t}.`, body]);
  let ok = false;
  // Every candidate is compared, so the time taken does not tell which one matched.
  for (const candidate of candidates) ok = matches(expected, candidate) || ok;
  return ok ? t : undefined;
}

/**
 * The key of a Standard Webhooks secret: the base64 after `whsec_`, as that spec says; any
 * other secret is its UTF-8 bytes, as in the other schemes. Undefined when nothing is left to sign with.
 */
export function standardKey(secret: string): Buffer | undefined {
  if (!secret.startsWith(STANDARD_SECRET_PREFIX)) return secret === '' ? undefined : Buffer.from(secret, 'utf8');
  const encoded = secret.slice(STANDARD_SECRET_PREFIX.length);
  return encoded !== '' && BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : undefined;
}

function standardValid(secret: string, body: Buffer, id: string, timestamp: string, header: string, nowMs: number): boolean {
  const key = standardKey(secret);
  if (!key || id === '' || freshSeconds(timestamp, nowMs) === undefined) return false;
  const expected = digest(key, [`${id}.${timestamp}.`, body]);
  let ok = false;
  // Space-separated `version,signature` pairs: several while a secret rotates; other versions
  // (`v1a`, asymmetric) are not ours to check. Every v1 is compared, as for X-Ferry.
  for (const pair of header.split(' ')) {
    const comma = pair.indexOf(',');
    if (comma < 0 || pair.slice(0, comma) !== 'v1') continue;
    const encoded = pair.slice(comma + 1);
    const candidate = BASE64.test(encoded) ? Buffer.from(encoded, 'base64') : undefined;
    if (candidate?.length === expected.length) ok = timingSafeEqual(expected, candidate) || ok;
  }
  return ok;
}

/** How a replay of a signed delivery is told from a new one. */
export interface ReplayKey {
  /** Names what was signed (a digest, never the signature itself): the same key is the same delivery. */
  key: string;
  /** Until when (ms since the epoch) the key marks a duplicate. */
  untilMs: number;
}

/** What a valid signature vouches for besides the sender: how to recognise the delivery again. */
export interface SignedDelivery {
  /** The signed `webhook-id` of a Standard Webhooks delivery: the delivery id, kept as long as its run. */
  id?: string;
  /**
   * The signed content of the other schemes, which carry no signed id: GitHub's body for 24 h,
   * X-Ferry's `<t>.<body>` while its `t` is fresh (a later replay fails the signature anyway).
   */
  replays: ReplayKey[];
}

const sha256 = (...parts: (string | Buffer)[]): string => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
};

/**
 * Checks the request's signatures in every scheme of DESIGN.md §6. Undefined unless one holds;
 * callers answer one generic 401 whatever part was wrong. A request signed in several schemes
 * gets the replay key of each valid one, so a replay that keeps any of them is recognised.
 */
export function checkSignature(secret: string, body: Buffer, headers: Headers, nowMs = Date.now()): SignedDelivery | undefined {
  const github = single(headers[GITHUB_SIGNATURE]);
  const ferry = single(headers[FERRY_SIGNATURE]);
  const [id, timestamp, standard] = [single(headers[STANDARD_ID]), single(headers[STANDARD_TIMESTAMP]), single(headers[STANDARD_SIGNATURE])];
  const signed: SignedDelivery = { replays: [] };
  let ok = false;
  if (github !== undefined && githubValid(secret, body, github)) {
    ok = true;
    signed.replays.push({ key: `github:${sha256(body)}`, untilMs: nowMs + GITHUB_REPLAY_SECONDS * 1000 });
  }
  const t = ferry === undefined ? undefined : ferryValid(secret, body, ferry, nowMs);
  if (t !== undefined) {
    ok = true;
    // The signature stays valid until t + window; a second of slack for the rounding of now.
    signed.replays.push({ key: `ferry:${sha256(t, '.', body)}`, untilMs: (Number(t) + REPLAY_WINDOW_SECONDS + 1) * 1000 });
  }
  if (id !== undefined && timestamp !== undefined && standard !== undefined && standardValid(secret, body, id, timestamp, standard, nowMs)) {
    ok = true;
    signed.id = id;
  }
  return ok ? signed : undefined;
}

/** True when the request carries a valid signature of `body` in any scheme of DESIGN.md §6. */
export function verifySignature(secret: string, body: Buffer, headers: Headers, nowMs = Date.now()): boolean {
  return checkSignature(secret, body, headers, nowMs) !== undefined;
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

/** The Standard Webhooks headers for `body`: for senders and tests. */
export function standardSignature(secret: string, id: string, body: string | Buffer, nowMs = Date.now()): Record<string, string> {
  const key = standardKey(secret);
  if (!key) throw new TypeError(`Expected a Standard Webhooks secret (\`${STANDARD_SECRET_PREFIX}\` and base64, or plain text), got an unusable one`);
  const timestamp = String(Math.floor(nowMs / 1000));
  return { [STANDARD_ID]: id, [STANDARD_TIMESTAMP]: timestamp, [STANDARD_SIGNATURE]: `v1,${digest(key, [`${id}.${timestamp}.`, body]).toString('base64')}` };
}
