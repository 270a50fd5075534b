import type { JournalEntry, RunJournal, StepEntry } from '../store/journal.js';
import type { RunEvent, RunEventType, RunListener } from './events.js';

/**
 * The journal entry an event is recorded as, or undefined for events the journal does not
 * keep (step starts, loop starts, logs, pauses). The one place entries are made: the journal
 * is a subscriber of the run's events, and the listener's durable `run` entry comes from here too.
 */
export function journalEntryOf(event: RunEvent): JournalEntry | undefined {
  switch (event.type) {
    case 'run-started': {
      const { runId, workflow, file, startedAt, pid, mode, inputs, trigger, shape, annotations } = event;
      return { t: 'run', v: 1, runId, workflow, file, startedAt, pid, mode, inputs, trigger, shape, ...annotations };
    }
    case 'run-resumed':
      return { t: 'resume', at: event.at, pid: event.pid };
    case 'step-finished': {
      const { summary } = event;
      const entry: StepEntry = {
        t: 'step',
        id: event.step,
        item: event.item as number[],
        status: summary.status,
        // A loop's items are rebuilt from its inner steps' entries; only the count is kept.
        output: event.loop ? { count: (summary.output as { count?: number } | null)?.count ?? 0 } : summary.output,
        ms: summary.durationMs,
      };
      if (summary.calls && summary.calls.calls > 0) entry.calls = summary.calls;
      if (event.error) entry.error = event.error;
      return entry;
    }
    case 'item-failed': {
      const { loop, item, step, value, row, error } = event;
      return { t: 'item', id: loop, item: item as number[], status: 'failed', step, value, ...(row ? { file: row.file, line: row.line } : {}), error };
    }
    case 'item-recovered':
      return { t: 'item', id: event.loop, item: event.item as number[], status: 'succeeded' };
    case 'loop-progress':
      return { t: 'progress', id: event.step, item: event.item as number[], done: event.done };
    case 'loop-source':
      return { t: 'source', id: event.step, item: event.item as number[], path: event.path, size: event.size, mtimeMs: event.mtimeMs, hash: event.hash };
    case 'run-finished': {
      const { summary, interrupted } = event;
      return { t: 'end', status: summary.status, at: event.at, ms: summary.durationMs, error: summary.error, ...(interrupted === undefined ? {} : { interrupted }) };
    }
    default:
      return undefined;
  }
}

/** The event types the journal keeps. */
export const JOURNAL_EVENTS: readonly RunEventType[] = ['run-started', 'run-resumed', 'step-finished', 'item-failed', 'item-recovered', 'loop-progress', 'loop-source', 'run-finished'];

/** Appends each event's entry to `journal`, as it happens (so it is flushed before the next provider call). Subscribe it for JOURNAL_EVENTS. */
export function journalSubscriber(journal: RunJournal): RunListener {
  return (event) => {
    const entry = journalEntryOf(event);
    if (entry) journal.append(entry);
  };
}
