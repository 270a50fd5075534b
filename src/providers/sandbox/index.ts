import { AmplitudeEmulator, type ExportSource } from './amplitude.js';
import { SegmentEmulator } from './segment.js';

export { AmplitudeEmulator, SegmentEmulator };
export type { ExportSource };
export type { Fault } from './faults.js';
export type { RecordedRequest } from './server.js';

export interface SandboxOptions {
  /** Added delay before each answer, in ms. @default 0 */
  latencyMs?: number;
  /** Keep request bodies (off for big benchmarks). @default true */
  recordBodies?: boolean;
  /** @default ['sandbox-amplitude-key'] */
  amplitudeApiKeys?: string[];
  /** @default 'sandbox-amplitude-secret' */
  amplitudeSecretKey?: string;
  /** @default ['sandbox-segment-key'] */
  segmentWriteKeys?: string[];
}

export interface Sandbox {
  amplitude: AmplitudeEmulator;
  segment: SegmentEmulator;
  close(): Promise<void>;
}

const base = (o: SandboxOptions) => ({ ...(o.latencyMs === undefined ? {} : { latencyMs: o.latencyMs }), ...(o.recordBodies === undefined ? {} : { recordBodies: o.recordBodies }) });

export function startAmplitudeEmulator(options: SandboxOptions = {}): Promise<AmplitudeEmulator> {
  return new AmplitudeEmulator({ ...base(options), ...(options.amplitudeApiKeys ? { apiKeys: options.amplitudeApiKeys } : {}), ...(options.amplitudeSecretKey ? { secretKey: options.amplitudeSecretKey } : {}) }).start();
}

export function startSegmentEmulator(options: SandboxOptions = {}): Promise<SegmentEmulator> {
  return new SegmentEmulator({ ...base(options), ...(options.segmentWriteKeys ? { writeKeys: options.segmentWriteKeys } : {}) }).start();
}

/** Both emulators on 127.0.0.1, random ports: what `ferry run --sandbox` and the tests use. */
export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const [amplitude, segment] = await Promise.all([startAmplitudeEmulator(options), startSegmentEmulator(options)]);
  return { amplitude, segment, close: async () => void (await Promise.all([amplitude.close(), segment.close()])) };
}

function countBy(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
}

/** A few human lines on what each emulator received. */
export function describeReceived(sandbox: Sandbox): string {
  const a = sandbox.amplitude;
  const s = sandbox.segment;
  const lines = [
    `  amplitude: ${a.requests.length} request${a.requests.length === 1 ? '' : 's'}${a.requests.length ? ` (${countBy(a.requests.map((r) => r.path))})` : ''}, ${a.identifications.length} identification${a.identifications.length === 1 ? '' : 's'}, ${a.events.size} event${a.events.size === 1 ? '' : 's'}`,
    `  segment:   ${s.requests.length} request${s.requests.length === 1 ? '' : 's'}${s.requests.length ? ` (${countBy(s.requests.map((r) => r.path))})` : ''}, ${s.messages.size} message${s.messages.size === 1 ? '' : 's'}${s.messages.size ? ` (${countBy([...s.messages.values()].map((m) => String(m.type)))})` : ''}`,
  ];
  for (const [who, props] of [...a.users].slice(0, 5)) lines.push(`    amplitude user ${who}: ${JSON.stringify(props)}`);
  return lines.join('\n');
}
