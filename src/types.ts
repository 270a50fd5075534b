/** What engine, store, server and CLI share: run summaries, errors and triggers. Imports nothing of theirs. */
import type { ProviderAnswer } from './errors.js';

/** How loud a log line of a run is: `debug` lines show with --verbose. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type StepStatus = 'succeeded' | 'failed' | 'skipped';

/** Retry statistics of a step (summed over loop items for steps inside a loop). */
export interface CallSummary {
  /** Provider calls made (each with one or more attempts). */
  calls: number;
  attempts: number;
  /** Failed attempts by status code or error code, e.g. `{ "429": 3, "FERRY_PROVIDER_NETWORK": 1 }`. */
  failures: Record<string, number>;
  /** Time spent waiting between attempts, in ms. */
  waitedMs: number;
}

export interface StepSummary {
  status: StepStatus;
  output: unknown;
  durationMs: number;
  calls?: CallSummary;
  error?: string;
  /** True when the output came back from the journal of an earlier attempt (`ferry retry`). */
  resumed?: boolean;
  /** For loops: per inner step, how its items ended and the calls they made. */
  steps?: Record<string, InnerStepSummary>;
}

export interface InnerStepSummary {
  succeeded: number;
  failed: number;
  skipped: number;
  calls: CallSummary;
}

/** The provider's answer behind a run error, in its own words (DESIGN.md §4). */
export interface ProviderAnswerInfo extends ProviderAnswer {
  /** The provider as workflows name it: `amplitude`, `segment`, `http`. */
  name: string;
}

export interface RunErrorInfo {
  step: string;
  /** Index of the loop item that failed (innermost loop), or null outside loops. */
  item: number | null;
  message: string;
  /** Loop indexes from the outermost loop in, when loops nest. */
  itemPath?: number[];
  /** For an item of a file loop: the line of the file it came from (1-based; a CSV's header is line 1). */
  line?: number;
  code?: string;
  status?: number;
  /** What the provider answered: status, its error text, the detail that concerns this call or item. */
  provider?: ProviderAnswerInfo;
}

export interface RunSummary {
  runId: string;
  workflow: string;
  status: 'succeeded' | 'failed';
  error: RunErrorInfo | null;
  /**
   * Loop items set aside by `on_error: continue` that are failed now (listed in the run's
   * `failed.jsonl`); absent when there are none. `ferry retry` sends them again.
   */
  failed_items?: number;
  steps: Record<string, StepSummary>;
  startedAt: string;
  durationMs: number;
}

/** Hooks for output while a run goes: the CLI prints, the journal records. */
export interface RunObserver {
  stepStarted?(step: string, item: readonly number[]): void;
  stepFinished?(step: string, item: readonly number[], summary: StepSummary): void;
  log?(level: LogLevel, message: string, step: string, item: readonly number[]): void;
}

export interface TriggerData {
  type: 'manual' | 'webhook' | 'schedule';
  /** The tick a scheduled run was started for (ISO time). */
  scheduled_at?: string;
  body?: unknown;
  headers?: Record<string, string>;
  query?: Record<string, string>;
}
