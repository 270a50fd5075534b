import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../errors.js';
import { startSandbox, describeDropped, describeReceived, describeRequest, describeStored } from '../sandbox/index.js';
import type { CommandIO } from './io.js';

/** The emulators of `ferry run --sandbox` and `ferry serve --sandbox`, as the commands use them. */
export interface CliSandbox {
  /** Provider settings that point every provider block at the emulators, with the keys they accept. */
  overrides: Record<string, Record<string, unknown>>;
  /** A few lines on what each emulator received; `verbose` adds a line per message Segment would drop. */
  describe(verbose: boolean): string;
  /** Every request each emulator received, one line each, then what they stored (`--verbose`). */
  details(): string;
  close(): Promise<void>;
}

export interface CliSandboxOptions {
  /** `--sandbox-seed FILE`: events the Amplitude export has besides those sent in this process. */
  seed?: string | undefined;
  /** Each request, as a line, once it is answered (`ferry serve --sandbox --verbose`). */
  onRequest?: (line: string) => void;
}

/**
 * Starts the built-in emulators and points the providers at them. Amplitude's export serves
 * the events the emulator received in this process (and the seed's): a workflow that sends
 * and then exports sees its own events.
 */
export async function startCliSandbox(io: CommandIO, options: CliSandboxOptions = {}): Promise<CliSandbox> {
  const seed = options.seed === undefined ? undefined : await readSeed(options.seed, io.cwd);
  const sandbox = await startSandbox();
  sandbox.amplitude.exportReceived(seed);
  const onRequest = options.onRequest;
  if (onRequest) {
    sandbox.amplitude.onAnswered = (r) => onRequest(describeRequest('amplitude', r));
    sandbox.segment.onAnswered = (r) => onRequest(describeRequest('segment', r));
  }
  return {
    overrides: {
      amplitude: { base_url: sandbox.amplitude.url, api_key: 'sandbox-amplitude-key', secret_key: 'sandbox-amplitude-secret' },
      segment: { base_url: sandbox.segment.url, write_key: 'sandbox-segment-key' },
    },
    describe: (verbose) => {
      const dropped = sandbox.segment.dropped.length === 0 ? [] : verbose ? describeDropped(sandbox.segment) : ['(--verbose says which Segment messages would be dropped, and why)'];
      return [describeReceived(sandbox), ...dropped].join('\n');
    },
    details: () => {
      // Both emulators' requests in the order they arrived (a stable sort keeps each one's own order).
      const requests = [...sandbox.amplitude.requests.map((r) => ({ at: r.at, line: describeRequest('amplitude', r) })), ...sandbox.segment.requests.map((r) => ({ at: r.at, line: describeRequest('segment', r) }))].sort((a, b) => a.at - b.at);
      const stored = describeStored(sandbox);
      return [...(requests.length > 0 ? ['requests, in the order they arrived:', ...requests.map((r) => `  ${r.line}`)] : []), ...(stored.length > 0 ? ['stored:', ...stored] : [])].join('\n');
    },
    close: () => sandbox.close(),
  };
}

const HOUR = /^\d{8}T\d{2}$/;

/**
 * `--sandbox-seed FILE`: events by UTC hour as JSON or YAML (`{"20260101T05": [{...}]}`, the
 * shape of a test case's `amplitude_export`), or NDJSON rows as `export_events` writes them
 * (each row's hour read from `server_upload_time`, else `event_time`).
 */
export async function readSeed(file: string, cwd: string): Promise<Map<string, object[]>> {
  let text: string;
  try {
    text = await readFile(path.resolve(cwd, file), 'utf8');
  } catch (error) {
    throw new UsageError(`--sandbox-seed: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  const seed = new Map<string, object[]>();
  if (/\.(ndjson|jsonl)$/i.test(file)) {
    for (const [i, line] of text.split('\n').entries()) {
      if (line.trim() === '') continue;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (error) {
        throw new UsageError(`--sandbox-seed ${file}:${i + 1}: not JSON (${(error as Error).message})`);
      }
      const hour = rowHour(row);
      if (hour === undefined) throw new UsageError(`--sandbox-seed ${file}:${i + 1}: a row needs server_upload_time or event_time (e.g. "2026-01-01 05:00:00.000000") to say its hour`);
      seed.set(hour, [...(seed.get(hour) ?? []), row as object]);
    }
    return seed;
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (error) {
    throw new UsageError(`--sandbox-seed ${file}: not JSON or YAML (${(error as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`--sandbox-seed ${file}: expected events by UTC hour, e.g. {"20260101T05": [{"event_type": "Signed Up", "user_id": "u_1"}]}`);
  for (const [hour, rows] of Object.entries(parsed)) {
    if (!HOUR.test(hour)) throw new UsageError(`--sandbox-seed ${file}: \`${hour}\` is not an hour formatted YYYYMMDDTHH`);
    if (!Array.isArray(rows) || rows.some((r) => r === null || typeof r !== 'object')) throw new UsageError(`--sandbox-seed ${file}: hour ${hour} must hold a list of events (objects)`);
    seed.set(hour, rows as object[]);
  }
  return seed;
}

function rowHour(row: unknown): string | undefined {
  if (row === null || typeof row !== 'object') return undefined;
  const r = row as Record<string, unknown>;
  const time = typeof r.server_upload_time === 'string' ? r.server_upload_time : typeof r.event_time === 'string' ? r.event_time : undefined;
  const m = time === undefined ? null : /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2})/.exec(time);
  return m ? `${m[1]}${m[2]}${m[3]}T${m[4]}` : undefined;
}
