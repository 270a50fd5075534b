import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';

/**
 * A real redis-server for one test file, on a free loopback port, with nothing persisted.
 * Debian's package is installed with apt-get when the machine lacks it (CI runs as root).
 */
export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** Stops the server (a Redis outage); `start()` brings it back on the same port, empty. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good and removes its folder. */
  close(): Promise<void>;
}

export function redisServerPath(): string {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).stdout.trim();
  if (found !== '') return found;
  if (process.getuid?.() === 0) {
    // The Debian mirror is reachable from these machines; npm's registry alone is not enough.
    spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
    const installed = spawnSync('apt-get', ['install', '-y', '-qq', 'redis-server'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (installed.status === 0) return execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim();
  }
  throw new Error('redis-server is not installed and could not be installed: `apt-get install redis-server` (Debian) and run the tests again');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * `persist`: an append-only file fsynced on every write, so that `stop()` and `start()` are an
 * outage of a Redis that keeps its data (as production Redis is set up, docs/SCALING.md).
 */
export async function startRedis(options: { persist?: boolean } = {}): Promise<TestRedis> {
  const binary = redisServerPath();
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-redis-'));
  const port = await freePort();
  let child: ReturnType<typeof spawn> | undefined;
  const start = async (): Promise<void> => {
    child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', ...(options.persist ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']), '--dir', dir, '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ping = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' });
      if (ping.stdout.trim() === 'PONG') return;
      if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((r) => running.once('exit', r));
    running.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    stop,
    start,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Every key in Redis with its type and every value it holds (strings, hashes, lists, sets, sorted sets, streams). */
export async function redisContents(redis: Redis): Promise<{ key: string; type: string; values: string[] }[]> {
  const out: { key: string; type: string; values: string[] }[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 500);
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      const values: string[] = [];
      if (type === 'string') values.push((await redis.get(key)) ?? '');
      else if (type === 'hash') values.push(...Object.entries(await redis.hgetall(key)).flat());
      else if (type === 'list') values.push(...(await redis.lrange(key, 0, -1)));
      else if (type === 'set') values.push(...(await redis.smembers(key)));
      else if (type === 'zset') values.push(...(await redis.zrange(key, 0, -1)));
      else if (type === 'stream') values.push(...(await redis.xrange(key, '-', '+')).flatMap(([id, fields]) => [id, ...fields]));
      out.push({ key, type, values });
    }
  } while (cursor !== '0');
  return out;
}

/** The keys (as `type key`) whose name or a value holds one of `forms`. */
export async function redisHolding(redis: Redis, forms: readonly string[]): Promise<string[]> {
  return (await redisContents(redis)).filter(({ key, values }) => [key, ...values].some((v) => forms.some((f) => v.includes(f)))).map(({ key, type }) => `${type} ${key}`);
}
