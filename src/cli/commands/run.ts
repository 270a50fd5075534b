import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../../errors.js';
import type { RunListener } from '../../engine/events.js';
import type { ResumeState } from '../../engine/run.js';
import { declaredInputs, inputFromText } from '../../engine/inputs.js';
import { envSecrets, type SecretSource } from '../../engine/secrets.js';
import { createFerry, type Ferry } from '../../engine/runtime.js';
import { resumeRun, startRun, type RunSession, type RunSessionOptions } from '../../engine/session.js';
import type { RunLock } from '../../store/lock.js';
import type { RunRecord } from '../../store/record.js';
import { resolveStateDir } from '../../store/paths.js';
import type { RunSummary, TriggerData } from '../../types.js';
import type { Workflow } from '../../workflow/types.js';
import type { CommandIO } from '../io.js';
import type { Command } from '../run-command.js';
import { printSummary } from '../output.js';
import { startProgress } from '../progress.js';
import { commandBackend, openPool, queueRun } from '../backend.js';
import type { CliSandbox } from '../sandbox.js';

/**
 * `--input k=v`, `@path` reads a file: the text as the type `declared` gives the input (see
 * inputFromText); an input without a declared type takes the value as JSON when it parses.
 */
export async function parseInputs(pairs: string[], jsonFile: string | undefined, cwd: string, declared?: Record<string, Record<string, unknown>>): Promise<Record<string, unknown>> {
  const inputs: Record<string, unknown> = {};
  if (jsonFile !== undefined) {
    const parsed = await readJson(path.resolve(cwd, jsonFile), '--input-json');
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`--input-json ${jsonFile} must hold a JSON object of inputs`);
    Object.assign(inputs, parsed);
  }
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--input expects name=value, got \`${pair}\``);
    const name = pair.slice(0, eq);
    let raw = pair.slice(eq + 1);
    if (raw.startsWith('@')) {
      const file = path.resolve(cwd, raw.slice(1));
      raw = await readFile(file, 'utf8').catch(() => {
        throw new UsageError(`--input ${name}: cannot read ${raw.slice(1)}`);
      });
    }
    inputs[name] = inputFromText(raw, declared && Object.hasOwn(declared, name) ? declared[name] : undefined);
  }
  return inputs;
}

async function readJson(file: string, flag: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${flag}: ${file} is not JSON: ${(error as Error).message}`);
  }
}

export const runCommandMain: Command = {
  usage: 'ferry run <file> [--input k=v]... [--input-json FILE] [--body FILE] [--dry-run [--limit N]] [--sandbox [--sandbox-seed FILE]] [--json] [--verbose] [--quiet] [--state-dir DIR] [--backend redis://HOST:PORT/DB]',
  options: {
    input: { type: 'string', multiple: true, value: 'k=v', help: 'an input: the value is parsed as JSON when it parses, `@path` reads a file' },
    'input-json': { type: 'string', value: 'FILE', help: 'a JSON object holding all inputs' },
    body: { type: 'string', value: 'FILE', help: 'start the run as its webhook trigger would, with this body' },
    'dry-run': { type: 'boolean', help: 'render every call it would make and send nothing' },
    limit: { type: 'string', value: 'N', help: 'with --dry-run: only the first N items of each loop' },
    sandbox: { type: 'boolean', help: 'send to the built-in Amplitude and Segment emulators, not the real services' },
    'sandbox-seed': { type: 'string', value: 'FILE', help: "with --sandbox: events the Amplitude emulator's export serves besides this run's (JSON/YAML by hour, or NDJSON rows)" },
    json: { type: 'boolean', help: 'print the run summary as JSON on stdout' },
    verbose: { type: 'boolean', help: 'also show core.log lines at debug level' },
    quiet: { type: 'boolean', help: 'print errors only' },
    'state-dir': { type: 'string', value: 'DIR', help: 'where runs are kept (default: $FERRY_STATE_DIR, else .ferry)' },
    backend: { type: 'string', value: 'URL', help: 'share runs and provider limits through Redis: redis://HOST:PORT/DB (default: $FERRY_BACKEND)' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`name one workflow file\nUsage: ${this.usage}`);
    const file = positionals[0] as string;
    const backend = values['dry-run'] === true ? undefined : commandBackend(values, io);
    if (backend !== undefined) return runInPool(backend, file, values, io);
    // The command's runtime: its dispatcher is made at the first provider call and closed here.
    const ferry = createFerry({ env: io.env });
    try {
      return await runOnce(ferry, file, values, io);
    } finally {
      await ferry.close();
    }
  },
};

async function runOnce(ferry: Ferry, file: string, values: Record<string, unknown>, io: CommandIO): Promise<number> {
  const workflow = await ferry.load(path.resolve(io.cwd, file)).catch((error: unknown) => {
    // Report positions relative to what the user typed.
    if (error instanceof Error && 'issues' in error) (error as Error).message = (error as Error).message.split(path.resolve(io.cwd, file)).join(file);
    throw error;
  });
  const sandboxMode = values.sandbox === true;
  const dry = values['dry-run'] === true;
  const limit = parseLimit(values.limit, dry);
  if (dry && sandboxMode) throw new UsageError('use either --dry-run (send nothing) or --sandbox (send to the emulators), not both');
  if (values['sandbox-seed'] !== undefined && !sandboxMode) throw new UsageError('--sandbox-seed goes with --sandbox: it seeds the Amplitude emulator\'s export');
  const { inputs, trigger } = await startValues(values, io, workflow);
  // Loaded only for --dry-run: it answers calls with undici's MockAgent, which a run does not load.
  if (dry) return (await import('../dry-run.js')).dryRun(workflow, { registry: ferry.registry, inputs, trigger, limit, json: values.json === true, verbose: values.verbose === true }, io);
  // Placeholders stand in for secrets the environment lacks in the sandbox, as in `ferry test`.
  const secrets = envSecrets(io.env, { placeholders: sandboxMode });
  return executeRun(ferry, workflow, { inputs, trigger, secrets, sandbox: sandboxMode, stateDirFlag: values['state-dir'] as string | undefined, values }, io);
}

/** `ferry run --backend`: the run is queued in the pool, which any worker runs. */
async function runInPool(url: string, file: string, values: Record<string, unknown>, io: CommandIO): Promise<number> {
  if (values.sandbox === true) throw new UsageError('--sandbox runs in this process alone, against emulators it starts: leave out --backend (or FERRY_BACKEND) to use it');
  const pool = await openPool(url, io);
  try {
    const workflow = await pool.ferry.load(path.resolve(io.cwd, file));
    const { inputs, trigger } = await startValues(values, io, workflow);
    return await queueRun(pool, { file: path.relative(io.cwd, workflow.file) || file, workflow, inputs, trigger }, values, io);
  } finally {
    await pool.close();
  }
}

/** Inputs and trigger of a start: `--input`, `--input-json`, `--body`. */
async function startValues(values: Record<string, unknown>, io: CommandIO, workflow: Workflow): Promise<{ inputs: Record<string, unknown>; trigger: TriggerData }> {
  let trigger: TriggerData = { type: 'manual' };
  if (values.body !== undefined) {
    const body = await readJson(path.resolve(io.cwd, String(values.body)), '--body');
    trigger = { type: 'webhook', body, headers: {}, query: {} };
  }
  const inputs = await parseInputs((values.input as string[] | undefined) ?? [], values['input-json'] as string | undefined, io.cwd, declaredInputs(workflow, trigger));
  return { inputs, trigger };
}

function parseLimit(raw: unknown, dry: boolean): number | undefined {
  if (raw === undefined) return undefined;
  if (!dry) throw new UsageError('--limit goes with --dry-run');
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`Expected \`--limit\` to be a positive integer, got \`${String(raw)}\``);
  return n;
}

export interface ExecuteOptions {
  /** Inputs as given; the session checks them (a resume passes the recorded ones). */
  inputs: Record<string, unknown>;
  trigger: TriggerData;
  secrets: SecretSource;
  /** What a missing-secret error suggests besides setting it. */
  secretHint?: string;
  sandbox: boolean;
  stateDirFlag: string | undefined;
  values: Record<string, unknown>;
  /** Resume this recorded run (`ferry retry`), carrying on its record (`run.json`). */
  resume?: { runId: string; state: ResumeState; record?: RunRecord | undefined; resendFailed?: boolean };
  /** The run's lock when the caller took it already (`retry` takes it before reading the journal). */
  lock?: RunLock;
  /** More subscribers of the run's events, ahead of the progress display. */
  subscribers?: RunListener[];
}

/**
 * Runs (or resumes) a session with its journal in the state dir; shared by `run` and `retry`.
 * The run's lock is held from before its first entry to its end, so one run never has two
 * runners. Progress and the human output are subscribers of the session's events.
 */
export async function executeRun(ferry: Ferry, workflow: Workflow, options: ExecuteOptions, io: CommandIO): Promise<number> {
  const { values } = options;
  const stateDir = resolveStateDir(options.stateDirFlag, io.env, io.cwd);
  let sandbox: CliSandbox | undefined;
  let received: string | undefined;
  let summary: RunSummary;
  let session: RunSession;
  const progress = startProgress(io, workflow, { verbose: values.verbose === true, quiet: values.quiet === true });
  try {
    if (options.sandbox) sandbox = await (await import('../sandbox.js')).startCliSandbox(io, { seed: values['sandbox-seed'] as string | undefined });
    const common: RunSessionOptions = {
      ferry,
      inputs: options.inputs,
      trigger: options.trigger,
      secrets: options.secrets,
      ...(options.secretHint === undefined ? {} : { secretHint: options.secretHint }),
      env: io.env,
      redactor: io.redactor,
      stateDir,
      mode: options.sandbox ? 'sandbox' : 'live',
      ...(options.lock ? { lock: options.lock } : {}),
      ...(io.signal ? { signal: io.signal } : {}),
      ...(sandbox ? { providerOverrides: sandbox.overrides } : {}),
      subscribers: [...(options.subscribers ?? []), progress.listener],
    };
    session = options.resume ? resumeRun(workflow, { ...common, runId: options.resume.runId, inputs: options.inputs, resume: options.resume.state, ...(options.resume.record ? { record: options.resume.record } : {}), ...(options.resume.resendFailed ? { resendFailed: true } : {}) }) : startRun(workflow, common);
    io.onRun?.(session);
    summary = await session.done;
    progress.stop();
    if (sandbox) {
      received = sandbox.describe(values.verbose === true);
      // Each request as the emulator saw it, credentials left out; then what it keeps.
      if (values.verbose === true && values.quiet !== true) io.stderr(`\n${sandbox.details()}\n`);
    }
  } finally {
    progress.stop();
    options.lock?.release();
    await sandbox?.close();
  }
  printSummary(summary, io, { json: values.json === true, quiet: values.quiet === true });
  // Last, where a newcomer's eye lands after `npm run demo`: what the run amounted to.
  if (received !== undefined && values.quiet !== true) io.stderr(`\nThe sandbox received (nothing left this machine):\n${received.replace(/^/gm, '  ')}\n`);
  const journalFailure = session.journalFailure;
  if (journalFailure) io.stderr(`${journalFailure.message}\n`);
  if (summary.status === 'succeeded' && !journalFailure) return 0;
  const stateFlag = options.stateDirFlag === undefined ? '' : ` --state-dir ${options.stateDirFlag}`;
  io.stderr(`resume with: ferry retry ${summary.runId}${stateFlag}\n`);
  const reason = io.signal?.aborted ? String(io.signal.reason) : undefined;
  return reason === 'SIGINT' ? 130 : reason === 'SIGTERM' ? 143 : 1;
}

export type { CommandIO };
