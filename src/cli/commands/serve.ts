import { stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../errors.js';
import { accountUses, limitConflicts } from '../../engine/accounts.js';
import { createFerry, type DeclaredAccount, type Ferry } from '../../engine/runtime.js';
import type { RunListener } from '../../engine/events.js';
import { envSecrets, type SecretSource } from '../../engine/secrets.js';
import { createHandler } from '../../server/handler.js';
import { listen } from '../../server/listen.js';
import type { ServedWorkflow } from '../../server/handler.js';
import { isLoopback, loadRoutes, type LoadedRoutes } from '../../server/routes.js';
import { Scheduler, scheduledOf } from '../../server/schedules.js';
import { RunManager } from '../../server/runs.js';
import { resolveStateDir } from '../../store/paths.js';
import type { CommandIO } from '../io.js';
import type { Command } from '../run-command.js';
import { expandPaths, formatIssueLine } from './validate.js';
import type { Pool } from '../../backend/pool.js';
import { PoolRuns } from '../../server/pool-runs.js';
import { commandBackend, openPool } from '../backend.js';
import type { CliSandbox } from '../sandbox.js';

/** After the runs stopped, how long open connections get to finish their answers. */
const CLOSE_GRACE_MS = 5_000;

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

function integer(value: unknown, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} expects an integer from ${min} to ${max}, got \`${String(value)}\``);
  return n;
}

/** A run's log lines on stderr, tagged with its id: a subscriber of the run's events. */
function runLog(write: (text: string) => void, runId: string, verbose: boolean): RunListener {
  return (event) => {
    if (event.type !== 'log' || (event.level === 'debug' && !verbose)) return;
    const { level, message, step, item } = event;
    const where = item.length > 0 ? `${step}#${item.join('.')}` : step;
    write(`  ${level === 'info' ? '' : `${level}: `}[${runId} ${where}] ${message}\n`);
  };
}

/**
 * Stderr for the lines of the listener's runs: what they write in one turn of the event loop
 * goes out in one write (a burst of deliveries would otherwise cost a write per line).
 */
function turnBuffered(io: CommandIO): { write(text: string): void; flush(): void } {
  let pending = '';
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    if (pending === '') return;
    const text = pending;
    pending = '';
    io.stderr(text);
  };
  return {
    write(text) {
      pending += text;
      if (scheduled) return;
      scheduled = true;
      setImmediate(flush);
    },
    flush,
  };
}

export const serveCommand: Command = {
  usage: 'ferry serve [--dir workflows] [--host 127.0.0.1] [--port 8787] [--max-runs 32] [--state-dir DIR] [--backend redis://HOST:PORT/DB] [--sandbox] [--verbose]',
  options: {
    dir: { type: 'string', default: 'workflows', help: 'the folder of workflows to serve' },
    host: { type: 'string', default: '127.0.0.1', help: 'the address to listen on' },
    port: { type: 'string', default: '8787', help: 'the port to listen on (0: any free port)' },
    'max-runs': { type: 'string', value: 'N', default: '32', help: 'runs at once; more deliveries wait their turn' },
    'state-dir': { type: 'string', value: 'DIR', help: 'where runs are kept (default: $FERRY_STATE_DIR, else .ferry)' },
    backend: { type: 'string', value: 'URL', help: 'share runs and provider limits through Redis: redis://HOST:PORT/DB (default: $FERRY_BACKEND)' },
    sandbox: { type: 'boolean', help: 'serve against the built-in emulators, with placeholder secrets' },
    verbose: { type: 'boolean', help: 'also show core.log lines at debug level (with --sandbox: each request the emulators answer)' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length > 0) throw new UsageError(`serve takes no arguments (use --dir)\nUsage: ${this.usage}`);
    const dir = String(values.dir);
    const host = String(values.host);
    const port = integer(values.port, '--port', 0, 65535);
    const maxRuns = integer(values['max-runs'], '--max-runs', 1, 100_000);
    const info = await stat(path.resolve(io.cwd, dir)).catch(() => undefined);
    if (!info?.isDirectory()) throw new UsageError(`--dir ${dir} is not a folder of workflows`);

    const backend = commandBackend(values, io);
    if (backend !== undefined && values.sandbox === true) throw new UsageError('--sandbox serves against emulators this process starts: leave out --backend (or FERRY_BACKEND) to use it');
    if (backend !== undefined) {
      // In a pool: its runtime routes calls through the pool's account queues.
      const pool = await openPool(backend, io);
      try {
        return await serve(pool.ferry, { dir, host, port, maxRuns, values, pool }, io);
      } finally {
        await pool.close();
      }
    }
    // One runtime for every run of the listener: one registry, one dispatcher, one queue per account.
    const ferry = createFerry({ env: io.env });
    try {
      return await serve(ferry, { dir, host, port, maxRuns, values }, io);
    } finally {
      await ferry.close();
    }
  },
};

interface ServeOptions {
  dir: string;
  host: string;
  port: number;
  maxRuns: number;
  values: Record<string, unknown>;
  /** The backend's pool this listener is part of: runs are recorded and queued there. */
  pool?: Pool;
}

async function serve(ferry: Ferry, { dir, host, port, maxRuns, values, pool }: ServeOptions, io: CommandIO): Promise<number> {
  const loopback = isLoopback(host);
  const sandboxMode = values.sandbox === true;
  // In the sandbox a secret the environment lacks is its placeholder (`sandbox-<name>`), as in `ferry run --sandbox`.
  const secrets = envSecrets(io.env, { placeholders: sandboxMode });
  const loaded = await loadRoutes({ files: await expandPaths([dir], io.cwd), cwd: io.cwd, env: io.env, secrets, registry: ferry.registry, loopback });
  for (const route of loaded.routes) io.redactor.add(route.secret);
  const apiToken = io.env.FERRY_API_TOKEN || undefined;
  io.redactor.add(apiToken);
  // A workflow whose secrets are missing is left out; the others are served.
  for (const issue of loaded.left) io.stderr(`${formatIssueLine(issue, 'text')}\n`);
  if (loaded.issues.length > 0) {
    for (const issue of loaded.issues) io.stderr(`${formatIssueLine(issue, 'text')}\n`);
    io.stderr(`ferry serve: ${plural(loaded.issues.length, 'problem')} in ${dir}; not starting\n`);
    return 2;
  }
  const leftOut = new Set(loaded.left.map((i) => i.file)).size;
  if (leftOut > 0) io.stderr(`ferry serve: left out ${plural(leftOut, 'workflow')} whose secrets are missing (or try ferry serve --sandbox)\n`);
  const scheduled = scheduledOf(loaded.served);
  if (loaded.routes.length === 0 && scheduled.length === 0) {
    throw new UsageError(leftOut > 0 ? `nothing left to serve in ${dir}: set the missing secrets and start again` : `no workflow in ${dir} has a webhook or schedule trigger; nothing to serve`);
  }
  for (const warning of loaded.warnings) io.stderr(`warning: ${warning}\n`);
  // Every served workflow's accounts get their scopes now: two workflows naming one account
  // with different limits both run at the stricter from the first call, and it is said once.
  const declared = new Map<ServedWorkflow, DeclaredAccount[]>(loaded.served.map((s) => [s, ferry.declare(s.workflow, { secrets: s.secrets, env: io.env })]));
  const uses = accountUses(loaded.served, ferry.registry, (named, provider) => declared.get(named as ServedWorkflow)?.find((d) => d.provider === provider)?.account);
  for (const warning of limitConflicts(uses)) io.stderr(`warning: ${warning}\n`);

  const log = (line: string): void => io.stderr(`${line}\n`);
  if (pool) return servePool(pool, { dir, host, port, maxRuns, values }, loaded, scheduled, io);
  const stateDir = resolveStateDir(values['state-dir'] as string | undefined, io.env, io.cwd);
  const sandbox = sandboxMode ? await startServeSandbox(io, values.verbose === true, log) : undefined;
  try {
    return await serveLocal(ferry, { dir, host, port, maxRuns, values }, { loaded, scheduled, secrets, stateDir, apiToken, sandbox, log }, io);
  } finally {
    if (sandbox) log(`sandbox — what the providers received:\n${sandbox.describe(values.verbose === true)}`);
    await sandbox?.close();
  }
}

/** The emulators of `ferry serve --sandbox`; with --verbose each request they answer is a log line. */
async function startServeSandbox(io: CommandIO, verbose: boolean, log: (line: string) => void): Promise<CliSandbox> {
  const sandbox = await (await import('../sandbox.js')).startCliSandbox(io, verbose ? { onRequest: (line) => log(`  sandbox: ${line}`) } : {});
  log('sandbox: runs call the built-in Amplitude and Segment emulators, never a provider; a secret missing from the environment is its placeholder `sandbox-<name>` (SIGNUP_WEBHOOK_SECRET -> sandbox-signup-webhook-secret)');
  return sandbox;
}

interface LocalServe {
  loaded: LoadedRoutes;
  scheduled: ServedWorkflow[];
  secrets: SecretSource;
  stateDir: string;
  apiToken: string | undefined;
  sandbox: CliSandbox | undefined;
  log: (line: string) => void;
}

/** The listener with its runs in this process and its state dir. */
async function serveLocal(ferry: Ferry, { dir, host, port, maxRuns, values }: ServeOptions, { loaded, scheduled, secrets, stateDir, apiToken, sandbox, log }: LocalServe, io: CommandIO): Promise<number> {
  const runLines = turnBuffered(io);
  const runs = new RunManager({
    stateDir,
    ferry,
    redactor: io.redactor,
    env: io.env,
    maxRuns,
    log: (line) => runLines.write(`${line}\n`),
    secrets,
    subscriber: (runId) => runLog(runLines.write, runId, values.verbose === true),
    ...(io.onRun ? { onRun: io.onRun } : {}),
    ...(sandbox ? { sandbox: { providerOverrides: sandbox.overrides } } : {}),
  });
  // The delivery index is complete before the first request; nothing runs before the port is ours.
  const resumed = await runs.open(loaded.served);
  const listener = await listen({ handler: createHandler({ routes: loaded.routes, runs, apiToken, inputs: ferry.inputs }), host, port, log });
  if (resumed.length > 0) log(`resuming ${plural(resumed.length, 'run')} accepted before the last stop: ${resumed.join(', ')}`);
  runs.start();
  const scheduler = new Scheduler({ served: scheduled, ticks: runs, log });
  logServed(log, dir, loaded, scheduler);
  log(`  GET  /healthz`);
  log(`  GET  /runs/<id>  ${apiToken ? 'with Authorization: Bearer <FERRY_API_TOKEN>' : 'off (set FERRY_API_TOKEN to turn it on)'}`);
  log(`listening on ${listener.url} (state ${path.relative(io.cwd, stateDir) || '.'}, at most ${maxRuns} runs at once)`);
  scheduler.start();

  const signal = io.signal;
  if (!signal) return new Promise<number>(() => undefined); // embedded without a signal: serve until the process ends
  if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));

  // The schedule stops at once: no tick starts a run from here on.
  await scheduler.stop();
  const waiting = runs.waiting;
  log(`ferry serve: ${String(signal.reason)}: no new deliveries; stopping ${plural(runs.running, 'running run')}, keeping ${plural(waiting, 'waiting run')} for the next start`);
  const closed = listener.close();
  await runs.stop(signal.reason);
  runLines.flush();
  const grace = new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref());
  await Promise.race([closed, grace]);
  listener.closeAll();
  await closed;
  log('ferry serve: stopped; unfinished runs resume when ferry serve starts again on this state dir');
  return 0;
}

/** What the listener serves: one line per webhook route, one per scheduled workflow with its next tick. */
function logServed(log: (line: string) => void, dir: string, loaded: LoadedRoutes, scheduler: Scheduler): void {
  const schedules = scheduler.describe();
  const what = [...(loaded.routes.length > 0 || schedules.length === 0 ? [plural(loaded.routes.length, 'webhook')] : []), ...(schedules.length > 0 ? [plural(schedules.length, 'scheduled workflow')] : [])];
  log(`ferry serve: ${what.join(' and ')} from ${dir}`);
  const width = Math.max(0, ...loaded.routes.map((r) => r.path.length));
  for (const r of loaded.routes) log(`  POST ${r.path.padEnd(width)}  -> ${r.served.workflow.name} (${r.served.file})${r.secret === undefined ? '  [unsigned]' : ''}`);
  for (const line of schedules) log(line);
}

/**
 * The listener in a backend's pool: deliveries are deduplicated, recorded and queued in
 * Redis, and this process also works as one of the pool's workers.
 */
async function servePool(pool: Pool, { dir, host, port, maxRuns }: ServeOptions, loaded: LoadedRoutes, scheduled: ServedWorkflow[], io: CommandIO): Promise<number> {
  const log = (line: string): void => io.stderr(`${line}\n`);
  const runs = new PoolRuns(pool, { redactor: io.redactor, served: loaded.served });
  await pool.work({ runs: maxRuns, log });
  const listener = await listen({ handler: createHandler({ routes: loaded.routes, runs, apiToken: io.env.FERRY_API_TOKEN || undefined, inputs: pool.ferry.inputs }), host, port, log });
  // Every process of the pool fires the schedule; the tick's claim in Redis lets one run start.
  const scheduler = new Scheduler({ served: scheduled, ticks: runs, log });
  logServed(log, dir, loaded, scheduler);
  log(`listening on ${listener.url} (pool ${pool.backend.label}, at most ${maxRuns} runs at once here)`);
  scheduler.start();
  const signal = io.signal;
  if (!signal) return new Promise<number>(() => undefined);
  if (!signal.aborted) await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  await scheduler.stop();
  log(`ferry serve: ${String(signal.reason)}: no new deliveries; runs of this process go back to the pool`);
  const closed = listener.close();
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref())]);
  listener.closeAll();
  await closed;
  return 0;
}
