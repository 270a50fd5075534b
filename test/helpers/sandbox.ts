import path from 'node:path';
import { runWorkflow } from '../../src/engine/run.js';
import { Redactor } from '../../src/redact.js';
import { createFerry, type Ferry } from '../../src/engine/runtime.js';
import type { RunSummary } from '../../src/types.js';
import { builtinRegistry } from '../../src/providers/index.js';
import type { Sandbox } from '../../src/sandbox/index.js';
import { workflowFrom } from './workflow.js';

export const AMPLITUDE_KEY = 'sandbox-amplitude-key';
export const SEGMENT_KEY = 'sandbox-segment-key';

/** Provider blocks that point at the sandbox emulators. */
export function sandboxProviders(sandbox: Sandbox, extra: { amplitude?: string; segment?: string } = {}): string {
  return `providers:
  amplitude:
    api_key: ${AMPLITUDE_KEY}
    secret_key: sandbox-amplitude-secret
    base_url: ${sandbox.amplitude.url}
${extra.amplitude ?? ''}
  segment:
    write_key: ${SEGMENT_KEY}
    base_url: ${sandbox.segment.url}
${extra.segment ?? ''}`;
}

/** Runs inline workflow YAML against the sandbox in `ferry`, else in a fresh runtime (fresh provider queues). */
export async function runAgainst(yaml: string, options: { inputs?: Record<string, unknown>; runId?: string; ferry?: Ferry; secrets?: Record<string, string> } = {}): Promise<RunSummary & { logs: string[] }> {
  const ferry = options.ferry ?? createFerry({ registry: builtinRegistry() });
  const workflow = workflowFrom(yaml, ferry.registry);
  const logs: string[] = [];
  const summary = await runWorkflow(workflow, {
    ferry,
    redactor: new Redactor(),
    ...(options.inputs ? { inputs: options.inputs } : {}),
    ...(options.runId ? { runId: options.runId } : {}),
    ...(options.secrets ? { secrets: options.secrets } : {}),
    observer: { log: (_level, message) => logs.push(message) },
  });
  return { ...summary, logs };
}

export const fastRetry = 'retry: { attempts: 6, backoff: { initial: 5ms, factor: 2, max: 40ms } }';

/** `n` user ids that pass Amplitude's 5-character minimum: `user_10000`, `user_10001`, … */
export const userIds = (n: number, from = 10_000): string[] => Array.from({ length: n }, (_, i) => `user_${from + i}`);

/** A workflow whose one step exports `start`..`end` from the sandbox into `dir/out`. */
export function exportWorkflow(sandbox: Sandbox, dir: string, start: string, end: string, out: string): string {
  return `
name: exp
${fastRetry}
${sandboxProviders(sandbox)}
steps:
  - id: exp
    action: amplitude.export_events
    with: { start: "${start}", end: "${end}", output: ${path.join(dir, out)} }
`;
}

