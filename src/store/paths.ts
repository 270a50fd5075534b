import path from 'node:path';

/** The state dir: `--state-dir`, else FERRY_STATE_DIR, else `.ferry` in the working directory. */
export function resolveStateDir(flag: string | undefined, env: Record<string, string | undefined>, cwd: string): string {
  return path.resolve(cwd, flag ?? env.FERRY_STATE_DIR ?? '.ferry');
}

export function runsDir(stateDir: string): string {
  return path.join(stateDir, 'runs');
}

export function runDir(stateDir: string, runId: string): string {
  return path.join(runsDir(stateDir), runId);
}

export const JOURNAL_FILE = 'journal.jsonl';
export const WORKFLOW_COPY = 'workflow.yaml';

/** Run ids are ULID-like: refuse anything else before it becomes a path. */
export function isRunId(value: string): boolean {
  return /^[0-9A-HJKMNP-TV-Z]{26}$/.test(value);
}
