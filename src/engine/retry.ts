import pRetry from 'p-retry';
import { ProviderError } from '../errors.js';
import type { RetryPolicy } from '../workflow/types.js';
import type { ProviderQueue } from './limiter.js';

/**
 * The one place that decides retryability (DESIGN.md §4): 429, 5xx except 501, connection
 * errors and timeouts retry; every other status fails at once.
 */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof ProviderError)) return false;
  if (error.code === 'FERRY_ABORTED') return false;
  if (error.status === undefined) return error.code === 'FERRY_PROVIDER_NETWORK' || error.code === 'FERRY_PROVIDER_TIMEOUT';
  return error.status === 429 || (error.status >= 500 && error.status !== 501);
}

/** Exponential backoff bounded by `max`; full jitter picks uniformly in [0, wait]. */
export function backoffMs(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const wait = Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.max(0, retry - 1));
  return policy.jitter === 'full' ? Math.round(random() * wait) : wait;
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
  signal?: AbortSignal | undefined;
  stats?: CallStats;
}

/**
 * Runs `attempt` through the provider queue until it succeeds, fails with a final error, or
 * runs out of tries. A wait the provider asked for pauses the whole provider queue.
 */
export async function callWithRetry<T>(attempt: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { policy, queue, stats } = options;
  return pRetry(
    async () =>
      queue.add(() => {
        // A graceful stop lets calls on the wire finish but starts no new one.
        if (options.signal?.aborted) throw new ProviderError(queue.provider, 'not sent: the run is stopping', { code: 'FERRY_ABORTED' });
        if (stats) stats.attempts++;
        return attempt();
      }),
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
          await queue.whenRunning();
        } else {
          await sleep(backoffMs(retriesConsumed + 1, policy), options.signal);
        }
        if (stats) stats.waitedMs += Date.now() - started;
        // Stopping: the call ends with its last error; the run's journal marks it for retry.
        return !options.signal?.aborted;
      },
    },
  );
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
