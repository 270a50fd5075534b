import { UsageError } from '../../errors.js';
import type { RunListener } from '../../engine/events.js';
import { ResumeFold, shapeOf } from '../../engine/run.js';
import { envSecrets } from '../../engine/secrets.js';
import { firstSourceChange, sourceChangedError } from '../../engine/sources.js';
import { createFerry } from '../../engine/runtime.js';
import { resolveStateDir } from '../../store/paths.js';
import { acquireRunLock } from '../../store/lock.js';
import { currentRecord, incompatibilities, loadRun, readRun, recordOf, stateOf } from '../../store/runs.js';
import type { Command } from '../run-command.js';
import { executeRun } from './run.js';
import { commandBackend, openPool, queueRetry } from '../backend.js';

export const retryCommand: Command = {
  usage: 'ferry retry <run-id> [--state-dir DIR] [--backend redis://HOST:PORT/DB] [--json] [--verbose] [--quiet]',
  options: {
    json: { type: 'boolean', help: 'print the run summary as JSON on stdout' },
    verbose: { type: 'boolean', help: 'also show core.log lines at debug level' },
    quiet: { type: 'boolean', help: 'print errors only' },
    'state-dir': { type: 'string', value: 'DIR', help: 'where runs are kept (default: $FERRY_STATE_DIR, else .ferry)' },
    backend: { type: 'string', value: 'URL', help: 'share runs and provider limits through Redis: redis://HOST:PORT/DB (default: $FERRY_BACKEND)' },
  },
  async run({ values, positionals }, io) {
    const runId = positionals[0];
    if (positionals.length !== 1 || runId === undefined) throw new UsageError(`name one run id\nUsage: ${this.usage}`);
    const backend = commandBackend(values, io);
    if (backend !== undefined) {
      const pool = await openPool(backend, io);
      try {
        return await queueRetry(pool, runId, values, io);
      } finally {
        await pool.close();
      }
    }
    const stateDirFlag = values['state-dir'] as string | undefined;
    const stateDir = resolveStateDir(stateDirFlag, io.env, io.cwd);
    // An up-to-date record says the run is there and readable without reading its journal twice.
    const found = currentRecord(stateDir, runId) ?? (await readRun(stateDir, runId));
    if (!found) throw new UsageError(`no run \`${runId}\` in ${stateDir} (\`ferry runs\` lists them)`, 'FERRY_RUN_NOT_FOUND');
    if ('corrupt' in found) throw new UsageError(`run ${runId} cannot be resumed: its journal is corrupt (${found.corrupt}); start a new run with \`ferry run\``, 'FERRY_RUN_CORRUPT');
    // The lock first, the journal after: a retry that raced another one reads what that one did.
    const lock = acquireRunLock(stateDir, runId);
    // The command's runtime: its dispatcher is made at the first provider call and closed below.
    const ferry = createFerry({ env: io.env });
    try {
      const folding = new ResumeFold();
      const run = await loadRun(stateDir, runId, (entry) => folding.add(entry));
      if (!run) throw new UsageError(`run ${runId} in ${stateDir} can no longer be read`, 'FERRY_RUN_NOT_FOUND');
      const state = stateOf(run);
      if (state === 'succeeded') {
        io.stderr(`run ${runId} already succeeded; nothing to retry\n`);
        return 0;
      }
      if (state === 'running') throw new UsageError(`run ${runId} is still running (pid alive); stop it before retrying`, 'FERRY_RUN_BUSY');
      // The workflow as it is now on disk: a fixed file is picked up.
      const workflow = await ferry.load(run.start.file);
      const problems = incompatibilities(run, shapeOf(workflow.steps));
      if (problems.length > 0) {
        throw new UsageError(`${run.start.file} changed in a way this run cannot resume from:\n  ${problems.join('\n  ')}\nStart a new run with \`ferry run\` instead.`, 'FERRY_RETRY_INCOMPATIBLE');
      }
      // Loop files are resumed by row position: a changed file would skip or repeat rows.
      const resume = folding.result();
      const changed = await firstSourceChange(resume.sources?.values() ?? []);
      if (changed !== undefined) throw new UsageError(sourceChangedError(changed, runId).message, 'FERRY_LOOP_FILE_CHANGED');
      // A run is resumed where it started: a sandbox run in the sandbox, a live run live.
      const sandbox = run.start.mode === 'sandbox';
      const secrets = envSecrets(io.env, { placeholders: sandbox });
      const secretHint = `then retry again (run ${runId} is a live run: a retry sends to the real providers, as the run did)`;
      // Said once the session read the secrets and took up the run, before its first step.
      const announce: RunListener = (event) => {
        if (event.type === 'run-resumed' && values.quiet !== true) io.stderr(`resuming run ${runId} of ${run.start.workflow}${sandbox ? ' in the sandbox, where it started (--sandbox)' : ''}\n`);
      };
      return await executeRun(
        ferry,
        workflow,
        { inputs: run.start.inputs, trigger: run.start.trigger, secrets, secretHint, sandbox, stateDirFlag, values, resume: { runId, state: resume, record: recordOf(run), resendFailed: true }, lock, subscribers: [announce] },
        io,
      );
    } finally {
      lock.release();
      await ferry.close();
    }
  },
};
