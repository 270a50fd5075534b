import { UsageError } from '../../errors.js';
import { resumeStateFrom, shapeOf } from '../../engine/run.js';
import { firstSourceChange, sourceChangedError } from '../../engine/sources.js';
import { builtinRegistry } from '../../providers/index.js';
import { resolveStateDir } from '../../store/paths.js';
import { incompatibilities, loadRun, stateOf } from '../../store/runs.js';
import { loadWorkflow } from '../../workflow/validate.js';
import type { Command } from '../run-command.js';
import { executeRun, resolveSecrets } from './run.js';

export const retryCommand: Command = {
  usage: 'ferry retry <run-id> [--state-dir DIR] [--json] [--verbose] [--quiet]',
  options: { json: { type: 'boolean' }, verbose: { type: 'boolean' }, quiet: { type: 'boolean' }, 'state-dir': { type: 'string' } },
  async run({ values, positionals }, io) {
    const runId = positionals[0];
    if (positionals.length !== 1 || runId === undefined) throw new UsageError(`name one run id\nUsage: ${this.usage}`);
    const stateDirFlag = values['state-dir'] as string | undefined;
    const stateDir = resolveStateDir(stateDirFlag, io.env, io.cwd);
    const run = await loadRun(stateDir, runId);
    if (!run) throw new UsageError(`no run \`${runId}\` in ${stateDir} (\`ferry runs\` lists them)`, 'FERRY_RUN_NOT_FOUND');
    const state = stateOf(run);
    if (state === 'succeeded') {
      io.stderr(`run ${runId} already succeeded; nothing to retry\n`);
      return 0;
    }
    if (state === 'running') throw new UsageError(`run ${runId} is still running (pid alive); stop it before retrying`, 'FERRY_RUN_BUSY');
    // The workflow as it is now on disk: a fixed file is picked up.
    const workflow = await loadWorkflow(run.start.file, builtinRegistry());
    const problems = incompatibilities(run, shapeOf(workflow.steps));
    if (problems.length > 0) {
      throw new UsageError(`${run.start.file} changed in a way this run cannot resume from:\n  ${problems.join('\n  ')}\nStart a new run with \`ferry run\` instead.`, 'FERRY_RETRY_INCOMPATIBLE');
    }
    // Loop files are resumed by row position: a changed file would skip or repeat rows.
    const resume = resumeStateFrom(run.entries);
    const changed = await firstSourceChange(resume.sources?.values() ?? []);
    if (changed !== undefined) throw new UsageError(sourceChangedError(changed, runId).message, 'FERRY_LOOP_FILE_CHANGED');
    const secrets = resolveSecrets(workflow, io.env, false);
    if (values.quiet !== true) io.stderr(`resuming run ${runId} of ${run.start.workflow}\n`);
    return executeRun(
      workflow,
      { runId, inputs: run.start.inputs, trigger: run.start.trigger, secrets, sandbox: false, stateDirFlag, values, resume },
      io,
    );
  },
};
