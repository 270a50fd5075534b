import { ProviderError } from '../errors.js';
import type { ItemOutcome, RequestOutcome } from '../providers/define.js';
import { DEFAULT_MAX_WAIT_MS, type RetryPolicy } from '../workflow/types.js';
import type { CallSummary } from '../types.js';
import type { ProviderQueue } from './queue.js';
import { sleep } from './timers.js';

/**
 * The default judgement of a thrown error (DESIGN.md §4), from its status and code only:
 * 429 and an asked-for wait are throttled; 5xx except 501, connection errors and timeouts are
 * retryable; 413 splits a batch (a lone call or item fails); every other status is final.
 * Providers that know more (an item at fault, a refused key) return their own outcome.
 */
export function outcomeOf(error: unknown): RequestOutcome {
  if (!(error instanceof ProviderError)) return { kind: 'final', error };
  if (error.code === 'FERRY_ABORTED' || error.code === 'FERRY_PROVIDER_WAIT_TOO_LONG') return { kind: 'final', error };
  const { status } = error;
  if (status === undefined) {
    return error.code === 'FERRY_PROVIDER_NETWORK' || error.code === 'FERRY_PROVIDER_TIMEOUT' ? { kind: 'retryable', error } : { kind: 'final', error };
  }
  if (status === 429 || (status >= 500 && status !== 501)) {
    return status === 429 || error.retryAfterMs !== undefined ? { kind: 'throttled', error, afterMs: error.retryAfterMs } : { kind: 'retryable', error };
  }
  if (status === 413) return { kind: 'split', error };
  return { kind: 'final', error };
}

/** What to do after a failed try: stop with `error`, or wait `waitMs` (pausing the whole queue or not) and try again. */
export type Decision = { retry: false; error: unknown } | { retry: true; waitMs: number; pauseQueue: boolean };

/** An outcome that is not a success: of a call, an item or a whole request. */
export type FailedOutcome = Exclude<ItemOutcome<unknown>, { kind: 'ok' }> | RequestOutcome;

/**
 * The one retry decision, for single calls and batched items alike. `tries` counts the tries
 * sent so far, the failed one included. A wait the provider asked for pauses the queue and
 * may not exceed `maxWaitMs`; any other retry waits the policy's backoff, with its jitter.
 */
export function decide(outcome: FailedOutcome, tries: number, policy: RetryPolicy, maxWaitMs: number, random: () => number = Math.random): Decision {
  switch (outcome.kind) {
    case 'resend':
      // Not at fault: sent again at once, and the try is not counted.
      return { retry: true, waitMs: 0, pauseQueue: false };
    case 'throttled': {
      if (outcome.afterMs !== undefined && outcome.afterMs > maxWaitMs) return { retry: false, error: waitTooLong(outcome.error, outcome.afterMs, maxWaitMs) };
      if (tries >= policy.attempts) return { retry: false, error: outcome.error };
      if (outcome.afterMs !== undefined) return { retry: true, waitMs: outcome.afterMs, pauseQueue: true };
      return { retry: true, waitMs: backoffMs(tries, policy, random), pauseQueue: false };
    }
    case 'retryable':
      if (tries >= policy.attempts) return { retry: false, error: outcome.error };
      return { retry: true, waitMs: backoffMs(tries, policy, random), pauseQueue: false };
    default:
      // auth, final, item-fault, and a split that reached a lone item.
      return { retry: false, error: outcome.error };
  }
}

/** Exponential backoff bounded by `max`; full jitter picks uniformly in [0, wait]. */
export function backoffMs(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const wait = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, retry - 1));
  return policy.jitter === 'full' ? Math.round(random() * wait) : wait;
}

/**
 * The error that fails a call at once when the provider asks to wait longer than the
 * workflow's cap (the run stops, to be resumed later).
 */
export function waitTooLong(error: ProviderError, waitMs: number, maxWaitMs: number): ProviderError {
  const { provider } = error;
  // Only a plain header value is quoted: it came from the network.
  const raw = error.retryAfterHeader;
  const source = raw !== undefined && /^[\x20-\x7e]{1,64}$/.test(raw) ? `Retry-After: ${raw}` : error.status === undefined ? 'throttled' : `${provider}'s documented pause after a ${error.status}`;
  return new ProviderError(
    provider,
    `${provider} asked to wait ${formatWait(waitMs)} (${source}); longer than the ${formatWait(maxWaitMs)} this workflow allows (providers.${provider}.max_wait); the run is paused — resume later with ferry retry`,
    { code: 'FERRY_PROVIDER_WAIT_TOO_LONG', status: error.status, body: error.body, retryAfterMs: waitMs, cause: error },
  );
}

/**
 * Waits as `decision` says before the next try. A provider-asked wait pauses the whole queue:
 * the pause stays for other runs, only this wait ends when `signal` aborts.
 */
export async function waitBeforeRetry(decision: Extract<Decision, { retry: true }>, queue: ProviderQueue, failure: FailedOutcome, signal: AbortSignal | undefined): Promise<void> {
  if (!decision.pauseQueue) return sleep(decision.waitMs, signal);
  const status = failure.error instanceof ProviderError ? failure.error.status : undefined;
  queue.pause(decision.waitMs, status ? String(status) : 'throttled');
  await queue.whenRunning(signal);
}

/** Whether a try failed in a way that would have been tried again: cut short by a stop, it is an interruption. */
export function wouldRetry(outcome: FailedOutcome): boolean {
  return outcome.kind === 'retryable' || outcome.kind === 'throttled' || outcome.kind === 'resend';
}

/** The code a failed try adds to the call's stats: its status, or its error code. */
export function failureCode(error: unknown): number | string {
  return error instanceof ProviderError ? (error.status ?? error.code) : 'error';
}

/** A wait in its two largest units: `277777h 46m`, `15m`, `2.5s`, `250ms`. */
export function formatWait(ms: number): string {
  if (!Number.isFinite(ms)) return 'forever';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000 && ms % 1000 !== 0) return `${(ms / 1000).toFixed(1)}s`;
  const total = Math.floor(ms / 1000);
  const units: [number, string][] = [
    [Math.floor(total / 3600), 'h'],
    [Math.floor(total / 60) % 60, 'm'],
    [total % 60, 's'],
  ];
  const first = units.findIndex(([n]) => n > 0);
  return units
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n}${unit}`)
    .join(' ');
}

/** What happened to one call across its tries: goes into the step record. */
export interface CallStats {
  attempts: number;
  /** Status codes (or error codes for network failures) of failed tries, in order. */
  failures: (number | string)[];
  waitedMs: number;
}

/** Adds one call's stats to its step's summary. */
export function addStats(calls: CallSummary, stats: CallStats): void {
  calls.calls++;
  calls.attempts += stats.attempts;
  calls.waitedMs += stats.waitedMs;
  for (const f of stats.failures) calls.failures[String(f)] = (calls.failures[String(f)] ?? 0) + 1;
}

export interface RetryOptions {
  policy: RetryPolicy;
  queue: ProviderQueue;
  /** The longest wait the provider may ask for; a longer one fails the call. @default DEFAULT_MAX_WAIT_MS */
  maxWaitMs?: number | undefined;
  /** The run's stop: ends every wait of this call at once, and no new try starts. */
  signal?: AbortSignal | undefined;
  stats?: CallStats;
}

/**
 * Runs `attempt` through the provider queue until it succeeds, fails with a final error, or
 * runs out of tries, as `decide` says. A wait the provider asked for pauses the whole queue.
 */
export async function callWithRetry<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { policy, queue, signal, stats } = options;
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  let tries = 0;
  for (;;) {
    let failure: FailedOutcome;
    try {
      // A stopped run's call leaves the queue unsent (FERRY_ABORTED); one on the wire finishes.
      return await queue.add(() => {
        tries++;
        if (stats) stats.attempts++;
        return attempt();
      }, signal);
    } catch (error) {
      stats?.failures.push(failureCode(error));
      failure = outcomeOf(error);
    }
    // Stopping: no new try leaves; the call is interrupted, not failed by the provider.
    if (signal?.aborted && wouldRetry(failure)) throw stoppedWaiting(queue.provider, failure.error);
    const decision = decide(failure, tries, policy, maxWaitMs);
    if (!decision.retry) throw decision.error;
    const started = Date.now();
    await waitBeforeRetry(decision, queue, failure, signal);
    if (stats) stats.waitedMs += Date.now() - started;
    if (signal?.aborted) throw stoppedWaiting(queue.provider, failure.error);
  }
}

/** The error of a call whose wait for its next try was ended by the run's stop. */
export function stoppedWaiting(provider: string, last: unknown): ProviderError {
  return new ProviderError(provider, 'stopped waiting to retry: the run is stopping', { code: 'FERRY_ABORTED', cause: last });
}
