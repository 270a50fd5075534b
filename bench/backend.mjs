// The Redis backend (DESIGN.md §7): workers of one pool as real processes, against the
// emulator in its own process and a real redis-server.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { median, startEmulator } from './lib.mjs';

const cli = new URL('../dist/cli.js', import.meta.url).pathname;
const AMP_KEY = 'sandbox-amplitude-key';

async function freePort() {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

/** A redis-server of its own, nothing persisted; `cpuMs()` reads its CPU time. */
async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bench-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  for (let i = 0; i < 200; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}/0`,
    flush: () => spawnSync('redis-cli', ['-p', String(port), 'flushall']),
    /** Commands Redis has run since it started (INFO stats). */
    commands: () => Number(/total_commands_processed:(\d+)/.exec(spawnSync('redis-cli', ['-p', String(port), 'info', 'stats'], { encoding: 'utf8' }).stdout)?.[1] ?? 0),
    cpuMs: () => cpuMs(child.pid),
    close: async () => {
      child.kill('SIGKILL');
      await once(child, 'exit');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** User + system CPU time of a process, in ms (Linux /proc, 100 ticks per second). */
function cpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

function ferry(args, env, cwd) {
  const child = spawn(process.execPath, [cli, ...args], { cwd, env: { PATH: process.env.PATH, CI: 'true', AMP_KEY, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const done = once(child, 'exit').then(([code]) => ({ code, stderr: err }));
  return { child, done, stderr: () => err };
}

async function startWorkers(n, url, cwd, extra = []) {
  const workers = Array.from({ length: n }, () => ferry(['worker', '--backend', url, ...extra], {}, cwd));
  for (const w of workers) {
    while (!w.stderr().includes('joined')) await new Promise((r) => setTimeout(r, 20));
  }
  return {
    workers,
    cpuMs: () => workers.reduce((sum, w) => sum + cpuMs(w.child.pid), 0),
    close: async () => {
      for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGTERM');
      await Promise.all(workers.map((w) => w.done));
    },
  };
}

function workflow(dir, name, rows, { action, amplitude, provider, loopConcurrency }) {
  writeFileSync(path.join(dir, `${name}.jsonl`), Array.from({ length: rows }, (_, i) => `{"id":"user_${100000 + i}"}`).join('\n') + '\n');
  const withLine = action === 'amplitude.identify_user' ? '{ user_id: <<row.id>>, user_properties: { $set: { plan: pro } } }' : '{ user_id: <<row.id>>, event_type: bench }';
  writeFileSync(
    path.join(dir, `${name}.yaml`),
    `name: ${name}
secrets: [AMP_KEY]
providers:
  amplitude:
    api_key: <<secrets.AMP_KEY>>
    base_url: ${amplitude}
${provider}
steps:
  - id: each
    loop: { file: ${name}.jsonl, as: row, concurrency: ${loopConcurrency} }
    steps:
      - id: send
        action: ${action}
        with: ${withLine}
`,
  );
  return `${name}.yaml`;
}

async function timed(args, env, cwd) {
  const start = performance.now();
  const run = ferry(args, env, cwd);
  const { code, stderr } = await run.done;
  if (code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`);
  return performance.now() - start;
}

/**
 * Unbatched calls at 100 ms latency through 1, 2 and 4 workers, limits not binding. Throughput
 * is measured at the emulator, from the first request to the last: process start-up and the
 * queue's first pick-up are not part of it (the whole command's time is reported beside it).
 */
export async function benchWorkers({ items = 4000, latency = 100, counts = [1, 2, 4], calls = 32 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bench-pool-'));
  const emu = await startEmulator({ LATENCY_MS: String(latency) });
  const redis = await startRedis();
  const file = workflow(dir, 'scale', items, { action: 'amplitude.send_event', amplitude: emu.amplitude, provider: '    concurrency: 1000\n    batch: false', loopConcurrency: 512 });
  const rows = [];
  for (const n of counts) {
    redis.flush();
    await emu.reset();
    const pool = await startWorkers(n, redis.url, dir, ['--calls', String(calls)]);
    const before = { redis: redis.cpuMs(), workers: pool.cpuMs(), commands: redis.commands() };
    const ms = await timed(['run', file, '--backend', redis.url, '--quiet'], {}, dir);
    const cost = { redisUs: ((redis.cpuMs() - before.redis) * 1000) / items, workersUs: ((pool.cpuMs() - before.workers) * 1000) / items, commands: (redis.commands() - before.commands) / items };
    const stats = await emu.stats();
    await pool.close();
    const sendingMs = stats.amplitude.lastAt - stats.amplitude.firstAt + latency;
    rows.push({ workers: n, ms, sendingMs, ...cost, rate: items / (sendingMs / 1000), events: stats.amplitude.events, maxInFlight: stats.amplitude.maxInFlight });
  }
  await redis.close();
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
  const one = rows[0].rate;
  return { items, latency, calls, rows: rows.map((r) => ({ ...r, speedup: r.rate / one })) };
}

/** 100,000 batched identify_user items: one process alone vs the same through the backend with one worker. */
export async function benchBackendBatched({ items = 100_000, latency = 20, rounds = 3 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bench-pool-'));
  const emu = await startEmulator({ LATENCY_MS: String(latency) });
  const redis = await startRedis();
  const file = workflow(dir, 'batched', items, { action: 'amplitude.identify_user', amplitude: emu.amplitude, provider: '    concurrency: 10', loopConcurrency: 2000 });
  const local = [];
  const pooled = [];
  let cpu;
  for (let round = 0; round < rounds; round++) {
    await emu.reset();
    local.push(await timed(['run', file, '--quiet', '--state-dir', path.join(dir, `state${round}`)], {}, dir));
    redis.flush();
    await emu.reset();
    const pool = await startWorkers(1, redis.url, dir);
    const redisBefore = redis.cpuMs();
    const workerBefore = pool.cpuMs();
    pooled.push(await timed(['run', file, '--backend', redis.url, '--quiet'], {}, dir));
    cpu = { redisMs: redis.cpuMs() - redisBefore, workerMs: pool.cpuMs() - workerBefore };
    const stats = await emu.stats();
    if (stats.amplitude.identifications !== items) throw new Error(`the pool stored ${stats.amplitude.identifications} of ${items} identifications`);
    await pool.close();
  }
  await redis.close();
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
  const localMs = median(local);
  const pooledMs = median(pooled);
  return { items, latency, localMs, pooledMs, ratio: localMs / pooledMs, redisUsPerItem: (cpu.redisMs * 1000) / items, workerUsPerItem: (cpu.workerMs * 1000) / items };
}

/** From SIGKILL of the worker running a run to another worker holding its lease (median of `rounds`). */
export async function benchTakeover({ rounds = 5, takeover = '15s' } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bench-pool-'));
  const emu = await startEmulator({ LATENCY_MS: '50' });
  const redis = await startRedis();
  const { Redis } = await import('ioredis');
  const client = new Redis(redis.url);
  const file = workflow(dir, 'takeover', 20_000, { action: 'amplitude.send_event', amplitude: emu.amplitude, provider: '    concurrency: 4\n    batch: false', loopConcurrency: 4 });
  const times = [];
  for (let round = 0; round < rounds; round++) {
    redis.flush();
    await emu.reset();
    const pool = await startWorkers(2, redis.url, dir, ['--takeover', takeover]);
    const run = ferry(['run', file, '--backend', redis.url, '--quiet'], {}, dir);
    let owner;
    while (!owner) {
      const keys = await client.keys('ferry:run:*:owner');
      if (keys.length > 0) owner = { key: keys[0], value: await client.get(keys[0]) };
      else await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 1000));
    const holder = JSON.parse(owner.value);
    process.kill(holder.pid, 'SIGKILL');
    const killed = performance.now();
    for (;;) {
      const now = await client.get(owner.key);
      if (now && JSON.parse(now).pid !== holder.pid) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    times.push(performance.now() - killed);
    run.child.kill('SIGKILL');
    await run.done;
    await pool.close();
  }
  await client.quit();
  await redis.close();
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
  return { rounds, takeover, times, medianMs: median(times) };
}
