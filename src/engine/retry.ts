import pRetry from 'p-retry';
import { ProviderError } from '../errors.js';
import { DEFAULT_MAX_WAIT_MS, type RetryPolicy } from '../workflow/types.js';
import type { ProviderQueue } from './limiter.js';
import { sleep } from './timers.js';

/**
 * The one place that decides retryability (DESIGN.md §4): 429, 5xx except 501, connection
 * errors and timeouts retry; every other status fails at once.
 */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof ProviderError)) return false;
  if (error.code === 'FERRY_ABORTED' || error.code === 'FERRY_PROVIDER_WAIT_TOO_LONG') return false;
  if (error.status === undefined) return error.code === 'FERRY_PROVIDER_NETWORK' || error.code === 'FERRY_PROVIDER_TIMEOUT';
  return error.status === 429 || (error.status >= 500 && error.status !== 501);
}

/** Exponential backoff bounded by `max`; full jitter picks uniformly in [0, wait]. */
export function backoffMs(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const wait = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, retry - 1));
  return policy.jitter === 'full' ? Math.round(random() * wait) : wait;
}

/**
 * A retryable failure whose asked-for wait is over the workflow's cap, as the error that fails
 * the call at once (the run stops, to be resumed later); undefined when the wait is allowed.
 */
export function waitTooLong(error: unknown, maxWaitMs: number): ProviderError | undefined {
  if (!(error instanceof ProviderError) || error.retryAfterMs === undefined || !isRetryable(error)) return undefined;
  if (error.retryAfterMs <= maxWaitMs) return undefined;
  const { provider } = error;
  // Only a plain header value is quoted: it came from the network.
  const raw = error.retryAfterHeader;
  const source = raw !== undefined && /^[\x20-\x7e]{1,64}$/.test(raw) ? `Retry-After: ${raw}` : error.status === undefined ? 'throttled' : `${provider}'s documented pause after a ${error.status}`;
  return new ProviderError(
    provider,
    `${provider} asked to wait ${formatWait(error.retryAfterMs)} (${source}); longer than the ${formatWait(maxWaitMs)} this workflow allows (providers.${provider}.max_wait); the run is paused — resume later with ferry retry`,
    { code: 'FERRY_PROVIDER_WAIT_TOO_LONG', status: error.status, body: error.body, retryAfterMs: error.retryAfterMs, cause: error },
  );
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
 * runs out of tries. A wait the provider asked for pauses the whole provider queue.
 */
export async function callWithRetry<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { queue, signal } = options;
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  try {
    return await retrying(attempt, options, maxWaitMs);
  } catch (error) {
    // A wait cut short by the run's stop: the call is interrupted, not failed by the provider.
    if (signal?.aborted && isRetryable(error)) throw stoppedWaiting(queue.provider, error);
    throw error;
  }
}

/** The error of a call whose wait for its next try was ended by the run's stop. */
export function stoppedWaiting(provider: string, last: unknown): ProviderError {
  return new ProviderError(provider, 'stopped waiting to retry: the run is stopping', { code: 'FERRY_ABORTED', cause: last });
}

function retrying<T>(attempt: () => Promise<T>, options: RetryOptions, maxWaitMs: number): Promise<T> {
  const { policy, queue, stats, signal } = options;
  return pRetry(
    async () => {
      try {
        return await queue.add(() => {
          // A graceful stop lets calls on the wire finish but starts no new one.
          if (signal?.aborted) throw new ProviderError(queue.provider, 'not sent: the run is stopping', { code: 'FERRY_ABORTED' });
          if (stats) stats.attempts++;
          return attempt();
        }, signal);
      } catch (error) {
        throw waitTooLong(error, maxWaitMs) ?? error;
      }
    },
    {
      retries: policy.attempts - 1,
      minTimeout: 0,
      maxTimeout: 0,
      randomize: false,
      onFailedAttempt: ({ error }) => {
        if (stats) stats.failures.push(error instanceof ProviderError ? (error.status ?? error.code) : 'error');
      },
      // p-retry asks this only when a try is left; the wait happens here so that it can be
      // the provider's Retry-After (shared by the whole queue) or our jittered backoff.
      shouldRetry: async ({ error, retriesConsumed }) => {
        if (!isRetryable(error)) return false;
        const asked = error instanceof ProviderError ? error.retryAfterMs : undefined;
        const started = Date.now();
        if (asked !== undefined) {
          queue.pause(asked, `${error instanceof ProviderError && error.status ? error.status : 'throttled'}`);
          // The pause stays for other runs; only this call stops waiting when its run stops.
          await queue.whenRunning(signal);
        } else {
          await sleep(backoffMs(retriesConsumed + 1, policy), signal);
        }
        if (stats) stats.waitedMs += Date.now() - started;
        // Stopping: the call ends with its last error; the run's journal marks it for retry.
        return !signal?.aborted;
      },
    },
  );
}
