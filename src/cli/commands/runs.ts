import type { ProviderAnswerInfo } from '../../types.js';
import { UsageError } from '../../errors.js';
import { resolveStateDir } from '../../store/paths.js';
import type { ItemEntry } from '../../store/journal.js';
import { listRuns, readRun, summarize, type RunFilter } from '../../store/runs.js';
import type { Command } from '../run-command.js';
import type { Pool } from '../../backend/pool.js';
import type { CommandIO } from '../io.js';
import { commandBackend, openPool } from '../backend.js';

/** Reads runs from the backend's pool when the command names one, else from the state dir. */
async function fromRuns<T>(values: Record<string, unknown>, io: CommandIO, inPool: (pool: Pool) => Promise<T>, inStateDir: (stateDir: string) => Promise<T>): Promise<T> {
  const backend = commandBackend(values, io);
  if (backend === undefined) return inStateDir(resolveStateDir(values['state-dir'] as string | undefined, io.env, io.cwd));
  const pool = await openPool(backend, io);
  try {
    return await inPool(pool);
  } finally {
    await pool.close();
  }
}

const STATUSES = ['running', 'succeeded', 'failed', 'interrupted', 'corrupt'] as const;

export const runsCommand: Command = {
  usage: `ferry runs [--status ${STATUSES.join('|')}] [--workflow NAME] [--limit N] [--json] [--state-dir DIR] [--backend redis://HOST:PORT/DB]`,
  options: {
    status: { type: 'string', value: 'S', help: `only runs with this status: ${STATUSES.join(', ')}` },
    workflow: { type: 'string', value: 'NAME', help: 'only runs of this workflow' },
    limit: { type: 'string', value: 'N', help: 'only the N newest runs' },
    json: { type: 'boolean', help: 'print the runs as JSON on stdout' },
    'state-dir': { type: 'string', value: 'DIR', help: 'where runs are kept (default: $FERRY_STATE_DIR, else .ferry)' },
    backend: { type: 'string', value: 'URL', help: 'share runs and provider limits through Redis: redis://HOST:PORT/DB (default: $FERRY_BACKEND)' },
  },
  async run({ values }, io) {
    const filter = runFilter(values);
    const runs = await fromRuns(values, io, (pool) => pool.store.list(filter), (stateDir) => listRuns(stateDir, filter));
    if (values.json) {
      io.stdout(`${JSON.stringify(runs, null, 2)}\n`);
      return 0;
    }
    if (runs.length === 0) {
      io.stderr('no runs yet\n');
      return 0;
    }
    const rows = runs.map((r) => {
      const duration = r.durationMs === null ? '-' : `${(r.durationMs / 1000).toFixed(1)}s`;
      const note = r.problem === undefined ? '' : `${r.failedStep ? '  ' : ''}(${r.status === 'corrupt' ? 'corrupt journal: ' : ''}${r.problem})`;
      return [r.runId, r.workflow, r.status, r.startedAt, duration, `${r.failedStep ?? ''}${note}`];
    });
    io.stdout(columns([['RUN', 'WORKFLOW', 'STATUS', 'STARTED', 'DURATION', 'FAILED STEP'], ...rows]));
    return 0;
  },
};

/** Rows as aligned columns, each as wide as its widest cell, two spaces apart; no trailing blanks. */
function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => `${row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()}\n`).join('');
}

/** `--status`, `--workflow`, `--limit`: answered from the runs' records, no journal read. */
function runFilter(values: Record<string, unknown>): RunFilter {
  const filter: RunFilter = {};
  const status = values.status as string | undefined;
  if (status !== undefined) {
    if (!(STATUSES as readonly string[]).includes(status)) throw new UsageError(`Expected \`--status\` to be one of ${STATUSES.join(', ')}, got \`${status}\``);
    filter.status = status as RunFilter['status'] & string;
  }
  if (values.workflow !== undefined) filter.workflow = String(values.workflow);
  if (values.limit !== undefined) {
    const n = Number(values.limit);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`Expected \`--limit\` to be a positive integer, got \`${String(values.limit)}\``);
    filter.limit = n;
  }
  return filter;
}

export const showCommand: Command = {
  usage: 'ferry show <run-id> [--json] [--state-dir DIR] [--backend redis://HOST:PORT/DB]',
  options: {
    json: { type: 'boolean', help: 'print the run summary as JSON on stdout' },
    'state-dir': { type: 'string', value: 'DIR', help: 'where runs are kept (default: $FERRY_STATE_DIR, else .ferry)' },
    backend: { type: 'string', value: 'URL', help: 'share runs and provider limits through Redis: redis://HOST:PORT/DB (default: $FERRY_BACKEND)' },
  },
  async run({ values, positionals }, io) {
    const runId = positionals[0];
    if (positionals.length !== 1 || runId === undefined) throw new UsageError(`name one run id\nUsage: ${this.usage}`);
    let where = '';
    const run = await fromRuns(
      values,
      io,
      (pool) => {
        where = pool.backend.label;
        return pool.store.read(runId);
      },
      (stateDir) => {
        where = stateDir;
        return readRun(stateDir, runId);
      },
    );
    if (!run) throw new UsageError(`no run \`${runId}\` in ${where} (\`ferry runs\` lists them)`, 'FERRY_RUN_NOT_FOUND');
    if ('corrupt' in run) throw new UsageError(`run ${runId} cannot be shown: its journal is corrupt (${run.corrupt})`, 'FERRY_RUN_CORRUPT');
    const summary = summarize(run);
    if (values.json) {
      io.stdout(`${JSON.stringify(summary, null, 2)}\n`);
      return 0;
    }
    io.stdout(`run       ${summary.runId}\nworkflow  ${summary.workflow} (${run.start.file})\nstatus    ${summary.state}\nstarted   ${summary.startedAt}\n`);
    if (summary.error) io.stdout(`error     step ${summary.error.step}${summary.error.item === null ? '' : `, item ${summary.error.item}`}: ${summary.error.message}\n`);
    if (summary.error?.provider) io.stdout(`          ${describeAnswer(summary.error.provider)}\n`);
    if (summary.failed_items !== undefined) printFailedItems(run.fold.failedItems.values(), summary.failed_items, io);
    io.stdout('steps\n');
    for (const [id, s] of Object.entries(summary.steps)) {
      const calls = s.calls ? `  ${s.calls.attempts} attempt(s) for ${s.calls.calls} call(s)${Object.keys(s.calls.failures).length ? `, failures ${JSON.stringify(s.calls.failures)}` : ''}` : '';
      io.stdout(`  ${id.padEnd(20)} ${s.status.padEnd(10)} ${String(s.durationMs).padStart(7)}ms${calls}\n`);
      for (const [innerId, agg] of Object.entries(s.steps ?? {})) {
        const failures = Object.keys(agg.calls.failures).length ? `, failures ${JSON.stringify(agg.calls.failures)}` : '';
        io.stdout(`    ${innerId.padEnd(18)} ${agg.succeeded} succeeded, ${agg.failed} failed, ${agg.skipped} skipped; ${agg.calls.attempts} attempts${failures}\n`);
      }
      if (s.error) io.stdout(`    error: ${s.error}\n`);
    }
    if (run.skipped > 0) io.stdout(`(${run.skipped} unreadable journal line${run.skipped === 1 ? '' : 's'} skipped: the process was killed mid-write)\n`);
    return 0;
  },
};

/** The items set aside by `on_error: continue` (the run's failed.jsonl, read from the journal, so a backend run has them too). */
function printFailedItems(items: Iterable<ItemEntry>, n: number, io: CommandIO): void {
  io.stdout(`failed    ${n} item${n === 1 ? '' : 's'} set aside (on_error: continue); \`ferry retry\` sends them again\n`);
  let shown = 0;
  for (const e of items) {
    if (shown++ === SHOW_FAILED) {
      io.stdout(`          … and ${n - SHOW_FAILED} more\n`);
      break;
    }
    const at = e.line === undefined ? '' : ` (${e.file ?? 'file'} line ${e.line})`;
    io.stdout(`          ${e.id} item ${e.item.join('.')}${at}, step ${e.step ?? '?'}: ${e.error?.message ?? ''}\n`);
  }
}

const SHOW_FAILED = 20;

/** The provider's own words on one line: `amplitude said: 400 Invalid field values on some events; invalid fields: time`. */
function describeAnswer(said: ProviderAnswerInfo): string {
  const line = (text: string): string => text.replace(/\s+/g, ' ').trim();
  const show = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));
  const parts = [`${said.name} said: ${said.status}${said.error === undefined ? '' : ` ${line(said.error)}`}`];
  for (const [key, value] of Object.entries(said.detail ?? {})) parts.push(`${key.replaceAll('_', ' ')}: ${line(Array.isArray(value) ? value.map(show).join(', ') : show(value))}`);
  if (said.body !== undefined) parts.push(`body: ${line(said.body)}`);
  return parts.join('; ');
}
