import type { QueueLimits } from '../engine/queue.js';

/** An account's limits across processes, as BullMQ's queue meta and limiter keys hold them. */

/**
 * BullMQ's rate limiter is a fixed window, counted when a worker takes a call. The windows are
 * a twentieth of the limit, stretched by 21/20 and rounded up (200/s: 10 per 53 ms): a
 * sliding second then touches at most 20 windows, so the workers start at most the limit in it. The calls'
 * own spread on the way to the provider (event loops, the network) may bunch a few more into
 * one interval at the provider; without the stretch a loaded machine measured 235 in a second
 * at 200/s. Costs 5% of the rate. Without a rate, a limiter that never binds: a pause
 * (`queue.rateLimit`) holds only on a queue that has one.
 */
export function rateWindow(rate: QueueLimits['rate']): { max: number; duration: number } {
  if (!rate) return { max: NON_BINDING, duration: 1000 };
  const max = Math.max(1, Math.floor(rate.limit / 20));
  return { max, duration: Math.max(1, Math.ceil((max * rate.intervalMs * 21) / (rate.limit * 20))) };
}

export const NON_BINDING = 1_000_000_000;
/** What BullMQ's `queue.rateLimit` writes into the limiter key: above any max, so it holds. */
export const PAUSED = String(Number.MAX_SAFE_INTEGER);
/** Pauses a queue unless a longer pause runs (BullMQ's own rateLimit lets a shorter one win). */
export const PAUSE_SCRIPT = `
if redis.call('HEXISTS', KEYS[2], 'max') == 0 then redis.call('HSET', KEYS[2], 'max', ARGV[3], 'duration', 1000) end
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
if value >= tonumber(ARGV[2]) and redis.call('PTTL', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
return 1`;

/** The strictest of the limits every workflow naming an account stored (JSON texts). */
export function strictestOf(values: string[]): QueueLimits {
  let concurrency = Number.POSITIVE_INFINITY;
  let rate: QueueLimits['rate'];
  for (const value of values) {
    const limits = JSON.parse(value) as QueueLimits;
    concurrency = Math.min(concurrency, limits.concurrency);
    if (limits.rate && (!rate || limits.rate.limit / limits.rate.intervalMs < rate.limit / rate.intervalMs)) rate = limits.rate;
  }
  return { concurrency: Number.isFinite(concurrency) ? concurrency : 1, ...(rate ? { rate } : {}) };
}

export function sameLimits(a: QueueLimits, b: QueueLimits): boolean {
  return a.concurrency === b.concurrency && a.rate?.limit === b.rate?.limit && a.rate?.intervalMs === b.rate?.intervalMs;
}
