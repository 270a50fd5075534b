import { request } from 'node:http';
import { crc32, gunzipSync } from 'node:zlib';

export const AMP_KEY = 'sandbox-amplitude-key';
export const AMP_SECRET = 'sandbox-amplitude-secret';
export const SEG_KEY = 'sandbox-segment-key';

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: () => unknown;
}

async function reply(res: Response): Promise<Reply> {
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const payload = typeof body === 'string' ? body : JSON.stringify(body);
  return reply(await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: payload }));
}

/** The Identify API's form body; `identification` is JSON-encoded unless already a string. */
export async function postIdentify(base: string, fields: { api_key?: string; identification?: unknown }, headers: Record<string, string> = {}): Promise<Reply> {
  const form = new URLSearchParams();
  if (fields.api_key !== undefined) form.set('api_key', fields.api_key);
  if (fields.identification !== undefined) form.set('identification', typeof fields.identification === 'string' ? fields.identification : JSON.stringify(fields.identification));
  return reply(await fetch(`${base}/identify`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: form.toString() }));
}

export async function get(url: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(url, signal ? { headers, signal } : { headers });
}

export const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A raw node:http POST that reports how the exchange ended, socket resets included. */
export function rawPost(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end(body);
  });
}

export interface UnzippedEntry {
  name: string;
  method: number;
  flags: number;
  crc: number;
  /** The entry's bytes (the gzip file). */
  data: Buffer;
  /** The gunzipped NDJSON text. */
  text: string;
}

/**
 * A tiny zip reader: end-of-central-directory record, central directory, then each local
 * header to find the data. It checks what a strict reader checks: signatures, CRC, sizes.
 */
export function unzip(zip: Buffer): UnzippedEntry[] {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('no end of central directory record');
  const count = zip.readUInt16LE(eocd + 10);
  const cdSize = zip.readUInt32LE(eocd + 12);
  let p = zip.readUInt32LE(eocd + 16);
  if (p + cdSize !== eocd) throw new Error(`central directory at ${p} + ${cdSize} does not end at ${eocd}`);
  const out: UnzippedEntry[] = [];
  for (let n = 0; n < count; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error(`bad central directory signature at ${p}`);
    const flags = zip.readUInt16LE(p + 8);
    const method = zip.readUInt16LE(p + 10);
    const crc = zip.readUInt32LE(p + 16);
    const compressed = zip.readUInt32LE(p + 20);
    const uncompressed = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.toString('utf8', p + 46, p + 46 + nameLen);
    p += 46 + nameLen + extraLen + commentLen;
    if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error(`bad local header signature for ${name}`);
    const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
    const data = zip.subarray(start, start + compressed);
    if (method !== 0 || compressed !== uncompressed) throw new Error(`${name}: expected a stored entry`);
    if ((crc32(data) >>> 0) !== crc) throw new Error(`${name}: CRC mismatch`);
    if (flags & 0x08 && zip.readUInt32LE(start + compressed) !== 0x08074b50) throw new Error(`${name}: no data descriptor`);
    out.push({ name, method, flags, crc, data, text: gunzipSync(data).toString('utf8') });
  }
  return out;
}

export const lines = (text: string): unknown[] => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
