import type { DurableRecorder } from '../store/durable.js';
import type { JournalEntry } from '../store/journal.js';
import { startRecord } from '../store/record.js';
import type { TriggerData } from '../types.js';
import type { Workflow } from '../workflow/types.js';
import type { RunEvent } from './events.js';
import { runInputs } from './inputs.js';
import { journalEntryOf } from './journal-subscriber.js';
import { ResumeFold } from './resume.js';
import { newRunId } from './run-id.js';
import { startedEvent } from './run.js';
import type { Ferry } from './runtime.js';
import { createRun, type ResumeRunOptions, type RunSession, type RunSessionOptions } from './session.js';

/** A new run written durably, with no session yet: see recordRun. */
export interface RecordedRun {
  readonly runId: string;
  /** Its `run` entry as recorded: the journal's first line once its folder is made. */
  readonly entry: Extract<JournalEntry, { t: 'run' }>;
  /** The size of that line: the journal's size when the run starts. */
  readonly journalBytes: number;
  /** The event the entry was made from: the session's subscribers hear it when the run starts. */
  readonly started: Extract<RunEvent, { type: 'run-started' }>;
}

export interface RecordRunOptions extends Pick<RunSessionOptions, 'runId' | 'inputs' | 'trigger' | 'hookPath' | 'annotations' | 'mode' | 'redactor'> {
  ferry: Ferry;
  recorder: DurableRecorder;
}

/**
 * Checks a new run's inputs and records its `run` entry durably with `recorder`, without
 * preparing the run: the listener records each delivery so before its 202, and holds only
 * this until the run starts (recordedSession). Rejects with FERRY_INPUT_INVALID before
 * anything is written.
 */
export async function recordRun(workflow: Workflow, options: RecordRunOptions): Promise<RecordedRun> {
  const trigger: TriggerData = options.trigger ?? { type: 'manual' };
  const inputs = runInputs(workflow, trigger, options.inputs, options.hookPath, options.ferry.inputs);
  const runId = options.runId ?? newRunId();
  const started = startedEvent(workflow, { runId, startedAt: new Date().toISOString(), mode: options.mode, inputs, trigger }, options.annotations);
  const entry = journalEntryOf(started) as RecordedRun['entry'];
  const journalBytes = await options.recorder.record(runId, workflow.source, entry, options.redactor);
  return { runId, entry, journalBytes, started };
}

/**
 * The session of a run recordRun recorded: when it runs, its folder is written and it is taken
 * up as a resume of a journal that holds only its `run` entry (a `resume` entry marks the
 * attempt), the way a run accepted before a restart is.
 */
export function recordedSession(
  workflow: Workflow,
  recorded: RecordedRun,
  options: Omit<ResumeRunOptions, 'runId' | 'inputs' | 'trigger' | 'resume' | 'record' | 'journalBytes' | 'recorded'> & { recorder: DurableRecorder },
): RunSession {
  const { entry, journalBytes, started } = recorded;
  const { recorder, ...rest } = options;
  const fold = new ResumeFold();
  fold.add(entry);
  return createRun(workflow, {
    ...rest,
    runId: recorded.runId,
    inputs: entry.inputs,
    trigger: entry.trigger,
    resume: fold.result(),
    record: startRecord(entry, journalBytes),
    journalBytes,
    recorded: { started, make: (runId) => recorder.make(runId), written: (runId) => recorder.started(runId) },
  });
}
