import { hostname } from 'node:os';
import { FerryError } from '../errors.js';
import { Redactor } from '../redact.js';

/**
 * One HTTP request as a queued call carries it (DESIGN.md §7: no credential ever enters
 * Redis). `stripSecrets` replaces every secret in it by a marker naming the secret and its
 * encoding; the process that sends it puts the values back from its own environment.
 */
export interface CallRequest {
  origin: string;
  /** Path and query. */
  path: string;
  method: string;
  headers: Record<string, string>;
  body: string | Buffer | null;
  /**
   * Headers (lower-case names) whose value here is the decoded `user:password` of a Basic
   * Authorization header: filled, then encoded again as `Basic <base64>`.
   */
  basic?: string[] | undefined;
}

/** How a secret was written where a marker stands: filled back in the same encoding. */
type Encoding = 'plain' | 'json' | 'uri' | 'form';

const ENCODERS: Record<Encoding, (value: string) => string> = {
  plain: (v) => v,
  // Inside a JSON string (a body that is JSON): quotes, backslashes, controls escaped.
  json: (v) => JSON.stringify(v).slice(1, -1),
  uri: (v) => encodeURIComponent(v),
  // application/x-www-form-urlencoded (Amplitude's Identify body, query strings): spaces as `+`.
  form: (v) => new URLSearchParams([['', v]]).toString().slice(1),
};

// NUL never appears in a header, a URL or a JSON text ferry builds, so a marker cannot be
// mistaken for data; a request that holds one anyway is not queued (see `stripSecrets`).
const MARK = '\u0000ferry-secret:';
// eslint-disable-next-line no-control-regex -- the NUL around a marker is the point (see above)
const MARKER = /\u0000ferry-secret:([^:\u0000]+):(plain|json|uri|form)\u0000/g;

const marker = (name: string, encoding: Encoding): string => `${MARK}${name}:${encoding}\u0000`;

export interface Stripped {
  request: CallRequest;
  /** The secrets whose markers the request holds: the sender needs each in its environment. */
  names: string[];
}

/**
 * Replaces each secret value (longest form first) in the path, header values and body by a
 * marker naming the secret and its encoding: as written, JSON-escaped, `encodeURIComponent`
 * and form-encoded. A `Basic` Authorization header is decoded and stripped inside. Filling
 * gives back the exact request (`fillSecrets(stripSecrets(r).request, env)` equals `r` when
 * env holds the same values). What it cannot take out (another encoding, a binary body)
 * stays: `secretsLeft` finds it, and such a request is sent from its own process instead.
 */
export function stripSecrets(request: CallRequest, secrets: Record<string, string>): Stripped {
  return new SecretStripper(secrets).strip(request);
}

/** The secrets of which something is still readable in `request` (see SecretStripper.left). */
export function secretsLeft(request: CallRequest, secrets: Record<string, string>): string[] {
  return new SecretStripper(secrets).left(request);
}

/** stripSecrets and secretsLeft for one set of secrets, their patterns made once (a run's many calls). */
export class SecretStripper {
  readonly #secrets: [string, string][];
  /** Each form of each secret -> its marker. */
  readonly #forms = new Map<string, string>();
  readonly #pattern: RegExp | undefined;
  readonly #redactor = new Redactor();

  constructor(secrets: Record<string, string>) {
    this.#secrets = Object.entries(secrets).filter(([, value]) => value !== '');
    for (const [name, value] of this.#secrets) {
      this.#redactor.add(value);
      for (const encoding of Object.keys(ENCODERS) as Encoding[]) {
        const form = ENCODERS[encoding](value);
        // Identical forms (a key of letters and digits reads the same in all four) fill as `plain`.
        if (!this.#forms.has(form)) this.#forms.set(form, marker(name, encoding));
      }
    }
    this.#pattern = this.#forms.size === 0 ? undefined : alternation([...this.#forms.keys()]);
  }

  /** True when a request holds text that reads like a marker: it cannot be queued safely. */
  static holdsMarker(request: CallRequest): boolean {
    const has = (text: string): boolean => text.includes(MARK);
    if (has(request.path) || has(request.origin)) return true;
    if (Object.entries(request.headers).some(([k, v]) => has(k) || has(v))) return true;
    return request.body !== null && request.body.includes(MARK);
  }

  strip(request: CallRequest): Stripped {
    const pattern = this.#pattern;
    if (pattern === undefined) return { request, names: [] };
    const names = new Set<string>();
    const strip = (text: string): string =>
      text.replace(pattern, (found) => {
        const mark = this.#forms.get(found) as string;
        names.add(mark.slice(MARK.length, mark.indexOf(':', MARK.length)));
        return mark;
      });
    const headers: Record<string, string> = {};
    const basic: string[] = [...(request.basic ?? [])];
    for (const [name, value] of Object.entries(request.headers)) {
      const credentials = basic.includes(name.toLowerCase()) ? undefined : basicCredentials(name, value);
      const inside = credentials === undefined ? undefined : strip(credentials);
      if (inside !== undefined && inside !== credentials) {
        headers[name] = inside;
        basic.push(name.toLowerCase());
      } else {
        headers[name] = strip(value);
      }
    }
    let body = request.body;
    if (typeof body === 'string') body = strip(body);
    else if (body !== null && isUtf8(body)) {
      const text = body.toString('utf8');
      const stripped = strip(text);
      if (stripped !== text) body = Buffer.from(stripped, 'utf8');
    }
    return {
      request: { ...request, path: strip(request.path), headers, body, ...(basic.length > 0 ? { basic } : {}) },
      names: [...names],
    };
  }

  /**
   * The secrets of which something is still readable in `request` (after stripping): any form
   * the Redactor knows (as written, upper/lower case, URI, form and JSON escaping, base64) in
   * any part of it, and any secret inside a base64 token of a header or the path (a credential
   * encoded with more around it, like `base64(key:)`).
   */
  left(request: CallRequest): string[] {
    if (this.#secrets.length === 0) return [];
    const body = request.body === null ? '' : typeof request.body === 'string' ? request.body : request.body.toString(isUtf8(request.body) ? 'utf8' : 'latin1');
    const texts = [request.origin, request.path, ...Object.keys(request.headers), ...Object.values(request.headers), body];
    const decoded = [request.path, ...Object.values(request.headers)].flatMap(decodedTokens);
    // One search with every secret's forms; only on a hit is each secret looked for alone.
    const hit = texts.some((text) => this.#redactor.redact(text) !== text);
    return this.#secrets
      .filter(([, value]) => {
        if (texts.some((text) => text.includes(value)) || decoded.some((text) => text.includes(value))) return true;
        if (!hit) return false;
        const one = new Redactor();
        one.add(value);
        return texts.some((text) => one.redact(text) !== text);
      })
      .map(([name]) => name);
  }
}

/**
 * Puts the secrets back from `env` (the sending process's own environment). A secret it lacks
 * throws FERRY_BACKEND_SECRET_MISSING, naming the secret and this host, never a value.
 */
export function fillSecrets(request: CallRequest, env: Record<string, string | undefined>): CallRequest {
  const fill = (text: string): string =>
    text.includes(MARK)
      ? text.replace(MARKER, (_, name: string, encoding: Encoding) => {
          const value = env[name];
          if (value === undefined || value === '') throw missingSecret(name, request.origin);
          return ENCODERS[encoding](value);
        })
      : text;
  const basic = new Set(request.basic ?? []);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    const filled = fill(value);
    headers[name] = basic.has(name.toLowerCase()) ? `Basic ${Buffer.from(filled, 'utf8').toString('base64')}` : filled;
  }
  let body = request.body;
  if (typeof body === 'string') body = fill(body);
  else if (body !== null && body.includes(MARK)) body = Buffer.from(fill(body.toString('utf8')), 'utf8');
  const { basic: _done, ...rest } = request;
  return { ...rest, path: fill(request.path), headers, body };
}

function missingSecret(name: string, origin: string): FerryError {
  let host = origin;
  try {
    host = new URL(origin).host;
  } catch {
    // An origin that is no URL is named as it came.
  }
  return new FerryError(
    'FERRY_BACKEND_SECRET_MISSING',
    `secret \`${name}\` is not set in the environment of the ferry process on host ${hostname()} (pid ${process.pid}) that took this call to ${host}: every process that joins the backend needs the workflow's secrets (export ${name}=... there)`,
  );
}

/** The texts of the base64 (and base64url) tokens in `text`. */
function decodedTokens(text: string): string[] {
  const out: string[] = [];
  for (const [token] of text.matchAll(/[A-Za-z0-9+/_-]{6,}={0,2}/g)) {
    out.push(Buffer.from(token, 'base64').toString('latin1'), Buffer.from(token, 'base64url').toString('latin1'));
  }
  return out;
}

/** The `user:password` of a `Basic <base64>` Authorization header, when filling gives back the same header. */
function basicCredentials(name: string, value: string): string | undefined {
  if (name.toLowerCase() !== 'authorization') return undefined;
  const match = /^Basic ([A-Za-z0-9+/]+={0,2})$/.exec(value);
  if (!match) return undefined;
  const encoded = match[1] as string;
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  return Buffer.from(decoded, 'utf8').toString('base64') === encoded ? decoded : undefined;
}

function isUtf8(buffer: Buffer): boolean {
  return Buffer.from(buffer.toString('utf8'), 'utf8').equals(buffer);
}

function alternation(forms: string[]): RegExp {
  return new RegExp(
    forms
      .sort((a, b) => b.length - a.length)
      .map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('|'),
    'g',
  );
}
