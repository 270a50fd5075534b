import path from 'node:path';
import { UsageError } from '../errors.js';
import type { Pool } from '../backend/pool.js';
import { watchRun } from '../backend/relay.js';
import { runInputs } from '../engine/inputs.js';
import { shapeOf } from '../engine/resume.js';
import { newRunId } from '../engine/run-id.js';
import { incompatibilities, summarize } from '../store/runs.js';
import type { TriggerData } from '../types.js';
import type { Workflow } from '../workflow/types.js';
import type { CommandIO } from './io.js';
import { printSummary } from './output.js';
import { startProgress } from './progress.js';
import { backendUrl } from '../backend/url.js';

/** The backend URL of a command (`--backend`, else FERRY_BACKEND), or none. */
export function commandBackend(values: Record<string, unknown>, io: CommandIO): string | undefined {
  return backendUrl(values.backend as string | undefined, io.env);
}

/** Joins the pool of `url` for one command; the caller closes it. */
export async function openPool(url: string, io: CommandIO): Promise<Pool> {
  const { Pool } = await import('../backend/pool.js');
  return Pool.open(url, { env: io.env });
}

/** Exit codes of a run job's end: a run that could not start in the worker is a usage error, as locally. */
const USAGE_CODES = new Set(['FERRY_SECRET_MISSING', 'FERRY_INPUT_INVALID', 'FERRY_RETRY_INCOMPATIBLE']);

interface QueuedRun {
  /** The workflow file as the user named it, relative to the working directory: every process of the pool resolves it from its own. */
  file: string;
  workflow: Workflow;
  inputs: Record<string, unknown>;
  trigger: TriggerData;
}

/**
 * `ferry run --backend`: checks the inputs here, records the run in Redis, queues it, shows
 * its progress as the worker running it relays it, and exits like a local run.
 */
export async function queueRun(pool: Pool, run: QueuedRun, values: Record<string, unknown>, io: CommandIO): Promise<number> {
  const { workflow } = run;
  const inputs = runInputs(workflow, run.trigger, run.inputs, undefined, pool.ferry.inputs);
  const runId = newRunId();
  const job = await pool.queue(workflow, { runId, file: run.file, inputs, trigger: run.trigger }, io.redactor);
  if (values.quiet !== true) io.stderr(`queued run ${runId} of ${workflow.name} on ${pool.backend.label}\n`);
  return waitForRun(pool, workflow, runId, job, values, io);
}

/** `ferry retry --backend`: the run's workflow as it is on disk now, queued to resume. */
export async function queueRetry(pool: Pool, runId: string, values: Record<string, unknown>, io: CommandIO): Promise<number> {
  const run = await pool.store.read(runId);
  if (!run) throw new UsageError(`no run \`${runId}\` in ${pool.backend.label} (\`ferry runs --backend …\` lists them)`, 'FERRY_RUN_NOT_FOUND');
  if ('corrupt' in run) throw new UsageError(`run ${runId} cannot be resumed: its journal is corrupt (${run.corrupt}); start a new run with \`ferry run\``, 'FERRY_RUN_CORRUPT');
  if (run.end?.status === 'succeeded') {
    io.stderr(`run ${runId} already succeeded; nothing to retry\n`);
    return 0;
  }
  if (!run.end && typeof run.lock === 'object') throw new UsageError(`run ${runId} is running in the pool now (${describeHolder(run.lock)}); it needs no retry`, 'FERRY_RUN_BUSY');
  const file = path.resolve(io.cwd, run.start.file);
  const workflow = await pool.ferry.load(file);
  const problems = incompatibilities(run, shapeOf(workflow.steps));
  if (problems.length > 0) {
    throw new UsageError(`${run.start.file} changed in a way this run cannot resume from:\n  ${problems.join('\n  ')}\nStart a new run with \`ferry run\` instead.`, 'FERRY_RETRY_INCOMPATIBLE');
  }
  await pool.store.setWorkflow(runId, { file: run.start.file, source: workflow.source });
  const job = await pool.runs.add(runId, `retry${Date.now()}`, { resendFailed: true });
  if (values.quiet !== true) io.stderr(`queued run ${runId} of ${run.start.workflow} to resume on ${pool.backend.label}\n`);
  return waitForRun(pool, workflow, runId, job, values, io);
}

function describeHolder(holder: object): string {
  const h = holder as { host?: string; pid?: number };
  return `pid ${h.pid ?? '?'} on ${h.host ?? '?'}`;
}

async function waitForRun(pool: Pool, workflow: Workflow, runId: string, job: Awaited<ReturnType<Pool['runs']['add']>>, values: Record<string, unknown>, io: CommandIO): Promise<number> {
  const progress = startProgress(io, workflow, { verbose: values.verbose === true, quiet: values.quiet === true });
  const watching = new AbortController();
  const watcher = watchRun(pool.backend, runId, progress.listener, watching.signal);
  // Nobody to run it: say so once, and keep waiting (a worker may join).
  const lonely = setTimeout(() => {
    void pool.runs.workers().then((n) => {
      if (n === 0) io.stderr(`no worker in the pool yet: start one with \`ferry worker --backend ${pool.backend.label}\`; run ${runId} waits in the queue\n`);
    });
  }, 3000);
  let result;
  try {
    result = await pool.runs.finished(job, io.signal);
  } catch (error) {
    if (io.signal?.aborted) {
      io.stderr(`\nstopped waiting; run ${runId} goes on in the pool: \`ferry show ${runId} --backend …\`\n`);
      return String(io.signal.reason) === 'SIGINT' ? 130 : 143;
    }
    throw error;
  } finally {
    clearTimeout(lonely);
    watching.abort();
    await watcher;
    progress.stop();
  }
  const run = await pool.store.load(runId);
  if (!run) throw new UsageError(`run ${runId} is no longer in ${pool.backend.label}`, 'FERRY_RUN_NOT_FOUND');
  const summary = summarize(run);
  const { state: _state, ...plain } = summary;
  printSummary(plain, io, { json: values.json === true, quiet: values.quiet === true });
  if (summary.status === 'succeeded') return 0;
  if (result.code !== undefined && USAGE_CODES.has(result.code)) return 2;
  io.stderr(`resume with: ferry retry ${runId} --backend ${pool.backend.label}\n`);
  return 1;
}
