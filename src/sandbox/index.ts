import { AmplitudeEmulator, type AmplitudeEmulatorOptions } from './amplitude.js';
import { SegmentEmulator, type SegmentEmulatorOptions } from './segment.js';
import type { EmulatorOptions } from './server.js';

export { AmplitudeEmulator, SegmentEmulator };
export type { AmplitudeEmulatorOptions, SegmentEmulatorOptions };
export type { ExportSizeOf, ExportSource } from './amplitude-export.js';
export type { Fault } from './faults.js';
export type { EmulatorBase, EmulatorOptions, RecordedRequest } from './server.js';

export interface SandboxOptions {
  /** Added delay before each answer, in ms. @default 0 */
  latencyMs?: number;
  /** Keep query, headers and bodies of requests; off for big benchmarks. @default true */
  recordBodies?: boolean;
  /** Amplitude api keys that are accepted (others get 400 "Invalid API key"). @default ['sandbox-amplitude-key'] */
  amplitudeApiKeys?: string[];
  /** Amplitude secret key for export Basic auth. @default 'sandbox-amplitude-secret' */
  amplitudeSecretKey?: string;
  /** Segment write keys considered valid. @default ['sandbox-segment-key'] */
  segmentWriteKeys?: string[];
}

export interface Sandbox {
  amplitude: AmplitudeEmulator;
  segment: SegmentEmulator;
  close(): Promise<void>;
}

function base(o: SandboxOptions): EmulatorOptions {
  return { ...(o.latencyMs === undefined ? {} : { latencyMs: o.latencyMs }), ...(o.recordBodies === undefined ? {} : { recordBodies: o.recordBodies }) };
}

export function startAmplitudeEmulator(opts: SandboxOptions = {}): Promise<AmplitudeEmulator> {
  const options: AmplitudeEmulatorOptions = {
    ...base(opts),
    ...(opts.amplitudeApiKeys === undefined ? {} : { apiKeys: opts.amplitudeApiKeys }),
    ...(opts.amplitudeSecretKey === undefined ? {} : { secretKey: opts.amplitudeSecretKey }),
  };
  return new AmplitudeEmulator(options).start();
}

export function startSegmentEmulator(opts: SandboxOptions = {}): Promise<SegmentEmulator> {
  const options: SegmentEmulatorOptions = { ...base(opts), ...(opts.segmentWriteKeys === undefined ? {} : { writeKeys: opts.segmentWriteKeys }) };
  return new SegmentEmulator(options).start();
}

/** Both emulators on 127.0.0.1 with random ports: what `ferry run --sandbox` and the tests use. */
export async function startSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const [a, s] = await Promise.allSettled([startAmplitudeEmulator(opts), startSegmentEmulator(opts)]);
  if (a.status === 'rejected' || s.status === 'rejected') {
    if (a.status === 'fulfilled') await a.value.close();
    if (s.status === 'fulfilled') await s.value.close();
    throw a.status === 'rejected' ? a.reason : (s as PromiseRejectedResult).reason;
  }
  const amplitude = a.value;
  const segment = s.value;
  return {
    amplitude,
    segment,
    close: async () => {
      await Promise.all([amplitude.close(), segment.close()]);
    },
  };
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
/** `/2/httpapi` → `httpapi`, `/v1/track` → `track`. */
const label = (path: string): string => path.slice(path.lastIndexOf('/') + 1) || path;

/** A few human lines on what each emulator received; reads counters only, never walks the history. */
export function describeReceived(sandbox: Pick<Sandbox, 'amplitude' | 'segment'>): string {
  const a = sandbox.amplitude;
  const s = sandbox.segment;
  const paths = [...a.requestsPerPath].map(([path, n]) => `${n} ${label(path)}`).join(', ');
  let amp = `amplitude: ${plural(a.requests.length, 'request')}${paths ? ` (${paths})` : ''}, ${plural(a.identifications.length, 'identification')}, ${plural(a.events.size, 'event')}`;
  if (a.duplicateInsertIds > 0) amp += ` (${a.duplicateInsertIds} duplicate insert_id${a.duplicateInsertIds === 1 ? '' : 's'} dropped)`;
  const types = [...s.messagesPerType].map(([type, n]) => `${type}×${n}`).join(', ');
  let seg = `segment: ${plural(s.requests.length, 'request')}, ${plural(s.messages.size, 'message')}${types ? ` (${types})` : ''}`;
  if (s.duplicateMessageIds > 0) seg += `, ${s.duplicateMessageIds} duplicate messageId${s.duplicateMessageIds === 1 ? '' : 's'} dropped`;
  if (s.unknownWriteKeys > 0) seg += `, ${plural(s.unknownWriteKeys, 'request')} with an unknown write key (Segment answers 200 anyway)`;
  return `${amp}\n${seg}`;
}

export { describeRequest, describeStored } from './describe.js';
