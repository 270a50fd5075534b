import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError, type FerryError } from '../../errors.js';
import { runWorkflow, type ResumeState } from '../../engine/run.js';
import { newRunId } from '../../engine/run-id.js';
import { createFerry, type Ferry } from '../../engine/runtime.js';
import { FileJournal } from '../../store/journal.js';
import { acquireRunLock, type RunLock } from '../../store/lock.js';
import { JOURNAL_FILE, resolveStateDir, runDir } from '../../store/paths.js';
import type { RunRecord } from '../../store/record.js';
import type { RunSummary, TriggerData } from '../../engine/types.js';
import type { Workflow } from '../../workflow/types.js';
import type { CommandIO } from '../io.js';
import type { Command } from '../run-command.js';
import { dryRun } from '../dry-run.js';
import { printSummary } from '../output.js';
import { startProgress } from '../progress.js';

/** `--input k=v`: the value as JSON when it parses, `@path` reads a file (JSON when it parses). */
export async function parseInputs(pairs: string[], jsonFile: string | undefined, cwd: string): Promise<Record<string, unknown>> {
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
    inputs[name] = parseMaybeJson(raw);
  }
  return inputs;
}

function parseMaybeJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
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

/** Declared secrets from the environment; placeholders in sandbox and dry-run mode. */
export function resolveSecrets(workflow: Workflow, env: Record<string, string | undefined>, placeholders: boolean, hint = 'or try the run with --sandbox'): Record<string, string> {
  const secrets: Record<string, string> = {};
  const missing: string[] = [];
  for (const name of workflow.secrets) {
    const value = env[name];
    if (value !== undefined && value !== '') secrets[name] = value;
    else if (placeholders) secrets[name] = `sandbox-${name.toLowerCase().replace(/_/g, '-')}`;
    else missing.push(name);
  }
  if (missing.length > 0) {
    throw new UsageError(`missing secret${missing.length > 1 ? 's' : ''} ${missing.map((m) => `\`${m}\``).join(', ')}: set ${missing.length > 1 ? 'them' : 'it'} in the environment (e.g. export ${missing[0]}=...), ${hint}`, 'FERRY_SECRET_MISSING');
  }
  return secrets;
}

export const runCommandMain: Command = {
  usage: 'ferry run <file> [--input k=v]... [--input-json FILE] [--body FILE] [--dry-run [--limit N]] [--sandbox] [--json] [--verbose] [--quiet]',
  options: {
    'dry-run': { type: 'boolean' },
    limit: { type: 'string' },
    input: { type: 'string', multiple: true },
    'input-json': { type: 'string' },
    body: { type: 'string' },
    sandbox: { type: 'boolean' },
    json: { type: 'boolean' },
    verbose: { type: 'boolean' },
    quiet: { type: 'boolean' },
    'state-dir': { type: 'string' },
  },
  async run({ values, positionals }, io) {
    if (positionals.length !== 1) throw new UsageError(`name one workflow file\nUsage: ${this.usage}`);
    const file = positionals[0] as string;
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
  let trigger: TriggerData = { type: 'manual' };
  let inputs = await parseInputs((values.input as string[] | undefined) ?? [], values['input-json'] as string | undefined, io.cwd);
  if (values.body !== undefined) {
    const body = await readJson(path.resolve(io.cwd, String(values.body)), '--body');
    trigger = { type: 'webhook', body, headers: {}, query: {} };
    const hook = workflow.triggers.find((t) => t.type === 'webhook');
    if (hook?.inputs && body !== null && typeof body === 'object' && !Array.isArray(body)) inputs = { ...(body as Record<string, unknown>), ...inputs };
  }
  inputs = ferry.inputs.check(workflow, trigger.type, inputs);
  // A dry run never reads real secrets: placeholders stand in, and are redacted like secrets.
  const secrets = resolveSecrets(workflow, dry ? {} : io.env, sandboxMode || dry);
  if (dry) return dryRun(workflow, { registry: ferry.registry, inputs, trigger, secrets, limit, json: values.json === true, verbose: values.verbose === true }, io);

  const runId = newRunId();
  return executeRun(ferry, workflow, { runId, inputs, trigger, secrets, sandbox: sandboxMode, stateDirFlag: values['state-dir'] as string | undefined, values }, io);
}

function parseLimit(raw: unknown, dry: boolean): number | undefined {
  if (raw === undefined) return undefined;
  if (!dry) throw new UsageError('--limit goes with --dry-run');
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`Expected \`--limit\` to be a positive integer, got \`${String(raw)}\``);
  return n;
}

export interface ExecuteOptions {
  runId: string;
  inputs: Record<string, unknown>;
  trigger: TriggerData;
  secrets: Record<string, string>;
  sandbox: boolean;
  stateDirFlag: string | undefined;
  values: Record<string, unknown>;
  resume?: ResumeState;
  /** The run's record (`run.json`) as its earlier attempts left it, carried on by a resume. */
  record?: RunRecord;
  /** The run's lock when the caller took it already (`retry` takes it before reading the journal). */
  lock?: RunLock;
}

/**
 * Runs (or resumes) with a journal in the state dir; shared by `run` and `retry`. The run's
 * lock is held from before its first entry to its end, so one run never has two runners.
 */
export async function executeRun(ferry: Ferry, workflow: Workflow, options: ExecuteOptions, io: CommandIO): Promise<number> {
  const { values } = options;
  for (const value of Object.values(options.secrets)) io.redactor.add(value);
  const stateDir = resolveStateDir(options.stateDirFlag, io.env, io.cwd);
  const lock = options.lock ?? acquireRunLock(stateDir, options.runId);
  // A journal that cannot be written (full disk) stops the run: nothing after it would be recorded.
  const journalStop = new AbortController();
  const journalOptions = { onFailure: (error: FerryError) => journalStop.abort(error.code === 'FERRY_DISK_FULL' ? 'a full disk' : 'a journal write error') };
  let journal: FileJournal;
  try {
    journal = options.resume
      ? new FileJournal(path.join(runDir(stateDir, options.runId), JOURNAL_FILE), io.redactor, { ...journalOptions, ...(options.record ? { record: options.record } : {}) })
      : FileJournal.create(stateDir, options.runId, workflow.source, io.redactor, journalOptions);
  } catch (error) {
    lock.release();
    throw error;
  }
  const signal = io.signal ? AbortSignal.any([io.signal, journalStop.signal]) : journalStop.signal;
  let sandbox: CliSandbox | undefined;
  let summary: RunSummary;
  const progress = startProgress(io, workflow, { verbose: values.verbose === true, quiet: values.quiet === true }, ferry.limits);
  try {
    if (options.sandbox) sandbox = await (await import('../sandbox.js')).startCliSandbox();
    summary = await runWorkflow(progress.workflow, {
      ferry,
      runId: options.runId,
      inputs: options.inputs,
      trigger: options.trigger,
      secrets: options.secrets,
      env: io.env,
      redactor: io.redactor,
      journal,
      stateDir,
      mode: options.sandbox ? 'sandbox' : 'live',
      ...(options.resume ? { resume: options.resume } : {}),
      signal,
      ...(sandbox ? { providerOverrides: sandbox.overrides } : {}),
      observer: progress.observer,
    });
    progress.stop();
    if (sandbox && values.quiet !== true) io.stderr(`\nsandbox — what the providers received:\n${sandbox.describe()}\n`);
  } finally {
    progress.stop();
    journal.close();
    lock.release();
    await sandbox?.close();
  }
  printSummary(summary, io, { json: values.json === true, quiet: values.quiet === true });
  if (journal.failure) io.stderr(`${journal.failure.message}\n`);
  if (summary.status === 'succeeded' && !journal.failure) return 0;
  const stateFlag = options.stateDirFlag === undefined ? '' : ` --state-dir ${options.stateDirFlag}`;
  io.stderr(`resume with: ferry retry ${summary.runId}${stateFlag}\n`);
  const reason = io.signal?.aborted ? String(io.signal.reason) : undefined;
  return reason === 'SIGINT' ? 130 : reason === 'SIGTERM' ? 143 : 1;
}

export interface CliSandbox {
  overrides: Record<string, Record<string, unknown>>;
  describe(): string;
  close(): Promise<void>;
}

export type { CommandIO };
