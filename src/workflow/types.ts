import type { CompiledTemplate } from '../template/compile.js';
import type { CompiledValue } from '../template/value.js';

/** The typed workflow after validation: templates compiled, durations in ms, defaults applied. */
export interface Workflow {
  /** Absolute path of the file it was loaded from. */
  file: string;
  /** The file's text as loaded (copied into the run's state dir). */
  source: string;
  name: string;
  description: string | undefined;
  triggers: Trigger[];
  secrets: string[];
  providers: Record<string, ProviderSettings>;
  retry: RetryPolicy;
  timeoutMs: number;
  steps: Step[];
}

export type Trigger = ManualTrigger | WebhookTrigger | ScheduleTrigger;

export interface ManualTrigger {
  type: 'manual';
  inputs: Record<string, Record<string, unknown>> | undefined;
}

export interface WebhookTrigger {
  type: 'webhook';
  path: string;
  secret: CompiledValue | undefined;
  inputs: Record<string, Record<string, unknown>> | undefined;
}

/** `ferry serve` starts a run at each tick of `cron` (checked by validation) read in `timezone`. */
export interface ScheduleTrigger {
  type: 'schedule';
  /** 5 fields, or 6 with seconds first. */
  cron: string;
  /** IANA time zone. @default 'UTC' */
  timezone: string;
}

export interface ProviderSettings {
  /** The provider block's own fields (keys, region, base_url), rendered when a run starts. */
  config: CompiledValue;
  concurrency: number | undefined;
  rate: { limit: number; intervalMs: number } | undefined;
  /** `max_wait`: the longest pause this workflow accepts from the provider, in ms. */
  maxWaitMs: number | undefined;
}

export interface RetryPolicy {
  /** Total tries, 1..10. */
  attempts: number;
  initialMs: number;
  factor: number;
  maxMs: number;
  jitter: 'full' | 'none';
}

export type Step = ActionStep | LoopStep;

interface StepBase {
  id: string;
  /** Renders to the condition; undefined when the step has no `if:`. */
  if: CompiledTemplate | boolean | undefined;
  /** 1-based line of the step in its file, for messages. */
  line: number;
}

export interface ActionStep extends StepBase {
  kind: 'action';
  action: string;
  with: CompiledValue;
  /**
   * `with:` fields written as templates: their values may come from data (inputs, a webhook
   * body, a step's output), so a file path among them must stay inside the allowed folders.
   * Holds `*` when `with:` as a whole is one template.
   */
  templated: ReadonlySet<string>;
  retry: RetryPolicy | undefined;
  timeoutMs: number | undefined;
  /**
   * `on_error` (steps inside a loop only): `continue` records an item that still fails after
   * its retries in the run's `failed.jsonl` and lets the loop go on; `stop` fails the run there.
   */
  onError: 'stop' | 'continue';
  /**
   * Inside a loop whose items no template reads: the fields of this step's output that some
   * template reads (`steps.<id>.output.<field>`); the action may leave out the others
   * (workflow/output-reads.ts). Undefined when the whole output may be read: always outside loops.
   */
  outputReads: ReadonlySet<string> | undefined;
}

export interface LoopStep extends StepBase {
  kind: 'loop';
  over: CompiledValue | undefined;
  /** Absolute path of `loop.file` when written literally (the author's choice, used as is). */
  file: string | undefined;
  /**
   * `loop.file` written as a template: renders to a path relative to the workflow file, which
   * must resolve inside the workflow's folder or the state dir (engine/data-paths.ts).
   */
  fileTemplate: CompiledValue | undefined;
  as: string;
  concurrency: number;
  steps: Step[];
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, initialMs: 500, factor: 2, maxMs: 30_000, jitter: 'full' };
export const DEFAULT_TIMEOUT_MS = 30_000;
/** A provider that asks for a longer pause fails the call instead: the run is retried later. */
export const DEFAULT_MAX_WAIT_MS = 15 * 60_000;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `250ms`, `2s`, `5m`, `1h` in ms; undefined when the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+)(ms|s|m|h)$/.exec(text);
  if (!match) return undefined;
  return Number(match[1]) * (UNITS[match[2] as string] as number);
}
