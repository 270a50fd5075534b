import type { RunObserver, RunSummary, StepSummary } from '../types.js';
import type { CommandIO } from './io.js';

const MARK: Record<StepSummary['status'], string> = { succeeded: '✓', failed: '✗', skipped: '-' };

function describeStep(id: string, s: StepSummary): string {
  const parts = [`${MARK[s.status]} ${id}`, s.status];
  const output = s.output as { count?: unknown } | null;
  if (s.steps && output && typeof output.count === 'number') parts.push(`${output.count} item${output.count === 1 ? '' : 's'}`);
  const calls = s.calls ?? (s.steps ? Object.values(s.steps).reduce((n, x) => ({ calls: n.calls + x.calls.calls, attempts: n.attempts + x.calls.attempts }), { calls: 0, attempts: 0 }) : undefined);
  if (calls && calls.attempts > calls.calls) parts.push(`${calls.attempts - calls.calls} retr${calls.attempts - calls.calls === 1 ? 'y' : 'ies'}`);
  parts.push(`${s.durationMs}ms`);
  return parts.join('  ');
}

/** Human progress on stderr: one line per top-level step, log lines of `core.log`. */
export function humanObserver(io: CommandIO, options: { verbose: boolean; quiet: boolean }): RunObserver {
  return {
    stepFinished(step, item, summary) {
      if (item.length > 0 || options.quiet) return;
      io.stderr(`${describeStep(step, summary)}\n`);
    },
    log(level, message, step, item) {
      if (level === 'debug' && !options.verbose) return;
      if (options.quiet && level !== 'error') return;
      const where = item.length > 0 ? `${step}#${item.join('.')}` : step;
      // As a value: a short secret logged on its own is hidden too.
      io.stderr(`  ${level === 'info' ? '' : `${level}: `}[${where}] ${io.redactor.redactValue(message)}\n`);
    },
  };
}

export function printSummary(summary: RunSummary, io: CommandIO, options: { json: boolean; quiet: boolean }): void {
  const redacted = io.redactor.redactValue(summary);
  if (options.json) io.json(summary);
  if (redacted.status === 'failed' && redacted.error) {
    io.stderr(`\nrun ${redacted.runId} failed: ${redacted.error.message}\n`);
  } else if (!options.quiet) {
    io.stderr(`\nrun ${redacted.runId} succeeded in ${redacted.durationMs}ms\n`);
  }
}
