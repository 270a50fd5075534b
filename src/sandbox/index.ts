import { AmplitudeEmulator, type AmplitudeEmulatorOptions } from './amplitude.js';
import { SegmentEmulator, type SegmentEmulatorOptions } from './segment.js';
import type { EmulatorOptions } from './server.js';

export { AmplitudeEmulator, SegmentEmulator };
export type { AmplitudeEmulatorOptions, SegmentEmulatorOptions };
export type { DroppedMessage } from './segment.js';
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

const plural = (n: number, word: string, many = `${word}s`): string => `${n} ${n === 1 ? word : many}`;

/** What a newcomer calls each kind of Segment message, as `[one, many]`. */
const SEGMENT_WORDS: Record<string, [string, string]> = {
  identify: ['user identified', 'users identified'],
  track: ['event tracked', 'events tracked'],
  page: ['page view', 'page views'],
  screen: ['screen view', 'screen views'],
  group: ['user added to a group', 'users added to groups'],
  alias: ['alias', 'aliases'],
};

/**
 * What each emulator received, in a newcomer's words, one line per provider:
 * `Amplitude: 3 users identified, 3 events stored (2 requests)`. Reads counters only, never
 * walks the history.
 */
export function describeReceived(sandbox: Pick<Sandbox, 'amplitude' | 'segment'>): string {
  const a = sandbox.amplitude;
  const s = sandbox.segment;
  const amp: string[] = [];
  if (a.identifications.length > 0) amp.push(plural(a.identifications.length, 'user identified', 'users identified'));
  if (a.events.size > 0) amp.push(plural(a.events.size, 'event stored', 'events stored'));
  if (a.duplicateInsertIds > 0) amp.push(`${plural(a.duplicateInsertIds, 'repeated event', 'repeated events')} dropped by insert_id`);
  const seg = [...s.messagesPerType].map(([type, n]) => {
    const [one, many] = SEGMENT_WORDS[type] ?? [`${type} message`, `${type} messages`];
    return plural(n, one, many);
  });
  if (s.duplicateMessageIds > 0) seg.push(`${plural(s.duplicateMessageIds, 'repeated message', 'repeated messages')} dropped by messageId`);
  if (s.dropped.length > 0) seg.push(`${plural(s.dropped.length, 'message')} Segment would drop (answered 200, not stored)`);
  if (s.unknownWriteKeys > 0) seg.push(`${plural(s.unknownWriteKeys, 'request')} with an unknown write key (Segment answers 200 anyway)`);
  const line = (name: string, parts: string[], requests: number): string =>
    requests === 0 ? `${name}: nothing received` : `${name}: ${parts.length > 0 ? parts.join(', ') : 'nothing stored'} (${plural(requests, 'request')})`;
  return `${line('Amplitude', amp, a.requests.length)}\n${line('Segment', seg, s.requests.length)}`;
}

/** One line per message Segment would answer 200 and drop, with why: what production never tells. */
export function describeDropped(segment: Pick<Sandbox['segment'], 'dropped'>): string[] {
  return segment.dropped.map((d) => `Segment would drop message ${d.n}: ${d.reason}${d.messageId === undefined ? '' : ` (messageId ${d.messageId.length > 100 ? `${d.messageId.slice(0, 40)}…` : d.messageId})`}`);
}

export { describeRequest, describeStored } from './describe.js';
