import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { FerryError, UsageError } from '../errors.js';
import { maskUrl } from './url.js';

// Kept here for callers that import them with the connection; ./url.js loads no Redis client.
export { backendUrl, maskUrl } from './url.js';

/**
 * The Redis a pool of ferry processes shares (DESIGN.md §7): one command connection per
 * process, and new ones for BullMQ's blocking reads. Every key ferry writes starts with
 * `prefix` (`ferry:`), so one Redis can hold other data beside it.
 */
export interface Backend {
  /** The URL as given, with any password replaced by `***`: safe to print. */
  readonly label: string;
  /** Prefix of every key and of the BullMQ queues: `ferry`. */
  readonly prefix: string;
  /**
   * The command connection. It never gives up a command while Redis is away: commands wait
   * for the reconnection (with backoff) instead of failing, so a Redis restart is a pause.
   */
  readonly redis: Redis;
  /** A key of ferry's: `ferry:` and the parts joined by `:`. */
  key(...parts: string[]): string;
  /** A new connection with the same settings (BullMQ workers and queue events need their own). */
  connection(): Redis;
  /** Settings BullMQ queues, workers and queue events are made with. */
  readonly bullmq: { connection: Redis; prefix: string };
  /** Closes every connection this backend made. */
  close(): Promise<void>;
}

export interface OpenBackendOptions {
  /** How long the first connection may take before ferry says Redis is unreachable. @default 3000 */
  connectTimeoutMs?: number;
  /** Key prefix. @default 'ferry' */
  prefix?: string;
}

/**
 * Connects to the backend and checks it answers. Redis that is not there is a usage error
 * (exit 2) naming the URL: nothing was queued or sent.
 */
export async function openBackend(url: string, options: OpenBackendOptions = {}): Promise<Backend> {
  const label = maskUrl(url);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`backend \`${label}\` is not a URL: give redis://HOST:PORT/DB (--backend or FERRY_BACKEND)`, 'FERRY_BACKEND_INVALID');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new UsageError(`backend \`${label}\` is not a Redis URL: give redis://HOST:PORT/DB (--backend or FERRY_BACKEND)`, 'FERRY_BACKEND_INVALID');
  }
  const settings: RedisOptions = {
    // BullMQ's workers need this; ferry's own commands wait for Redis to come back too.
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectTimeout: options.connectTimeoutMs ?? 3000,
    retryStrategy: () => null,
  };
  const connections = new Set<Redis>();
  const make = (): Redis => {
    const redis = new Redis(url, settings);
    // The first connection of the process fails at once when Redis is not there (exit 2);
    // once connected, a lost connection is retried with backoff for as long as the process lives.
    redis.once('ready', () => {
      redis.options.retryStrategy = reconnect;
    });
    // ioredis reports every failed reconnection as an 'error' event; without a listener Node
    // would print each one. The commands waiting on it carry on once Redis is back.
    redis.on('error', () => undefined);
    connections.add(redis);
    redis.once('end', () => connections.delete(redis));
    return redis;
  };
  const redis = make();
  try {
    await withTimeout(ready(redis), options.connectTimeoutMs ?? 3000);
    await withTimeout(redis.ping(), options.connectTimeoutMs ?? 3000);
  } catch (error) {
    // A connection that ended is left alone: disconnecting it again holds the process for 2 s.
    if (redis.status !== 'end') redis.disconnect();
    const reason = error instanceof Error ? error.message : String(error);
    throw new UsageError(`backend ${label} is not reachable (${reason}): start Redis there, or leave out --backend / FERRY_BACKEND to run in this process alone`, 'FERRY_BACKEND_UNREACHABLE');
  }
  const prefix = options.prefix ?? 'ferry';
  return {
    label,
    prefix,
    redis,
    key: (...parts) => [prefix, ...parts].join(':'),
    connection: make,
    bullmq: { connection: redis, prefix },
    async close() {
      await Promise.all(
        [...connections].map(async (c) => {
          try {
            await c.quit();
          } catch {
            c.disconnect();
          }
        }),
      );
    },
  };
}

/** Resolves when the first connection is ready; rejects with the reason when it ends first. */
function ready(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let last: unknown;
    const onError = (error: unknown): void => {
      last = error;
    };
    redis.on('error', onError);
    redis.once('ready', () => {
      redis.off('error', onError);
      resolve();
    });
    redis.once('end', () => {
      redis.off('error', onError);
      reject(last instanceof Error ? last : new Error('the connection closed'));
    });
  });
}

/** Reconnect with backoff, up to 2 s between tries. */
const reconnect = (times: number): number => Math.min(50 * 2 ** Math.min(times, 6), 2000);

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FerryError('FERRY_BACKEND_UNREACHABLE', `no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A Lua script run by its SHA1 (EVALSHA): its text crosses the connection only the first time
 * a Redis sees it (and again after a restart emptied its script cache).
 */
export function luaScript(lua: string): (redis: Redis, keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown> {
  const sha = createHash('sha1').update(lua).digest('hex');
  return async (redis, keys, args) => {
    try {
      return await redis.evalsha(sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
      return redis.eval(lua, keys.length, ...keys, ...args);
    }
  };
}
