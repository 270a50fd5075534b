import type { DurableRecorder } from '../store/durable.js';
import type { JournalEntry } from '../store/journal.js';
import { startRecord } from '../store/record.js';
import type { TriggerData } from '../types.js';
import type { Workflow } from '../workflow/types.js';
import { runInputs } from './inputs.js';
import { journalEntryOf } from './journal-subscriber.js';
import { ResumeFold } from './resume.js';
import { newRunId } from './run-id.js';
import { startedEvent } from './run.js';
import type { Ferry } from './runtime.js';
import { createRun, type ResumeRunOptions, type RunSession, type RunSessionOptions } from './session.js';

/**
 * A new run written durably, with no session yet: see recordRun. It is what a listener holds
 * for each run waiting in a burst, so it is one string: its `run` entry as JSON.
 */
export interface RecordedRun {
  readonly runId: string;
  /** Its `run` entry as JSON, as the run will see it (the journal's copy is redacted). */
  readonly text: string;
  /** The size of its journal's first line: the journal's size when the run starts. */
  readonly journalBytes: number;
}

type RunEntry = Extract<JournalEntry, { t: 'run' }>;

/** The `run` entry of a recorded run. */
export function entryOf(recorded: RecordedRun): RunEntry {
  return JSON.parse(recorded.text) as RunEntry;
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
  const entry = journalEntryOf(started) as RunEntry;
  const text = JSON.stringify(entry);
  const redacted = options.redactor ? options.redactor.redactJson(entry) : text;
  // One string, not two equal ones, when nothing was redacted: a burst holds thousands.
  const journalBytes = await options.recorder.record(runId, workflow.source, redacted === text ? text : redacted);
  return { runId, text, journalBytes };
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
  const { journalBytes } = recorded;
  const entry = entryOf(recorded);
  // The event the entry was made from (recordRun), for the session's subscribers: the fields
  // that are not the event's own are its annotations.
  const { t: _t, v: _v, runId, workflow: _name, file: _file, startedAt, pid: _pid, mode, inputs, trigger, shape: _shape, ...annotations } = entry;
  const started = startedEvent(workflow, { runId, startedAt, mode, inputs, trigger }, Object.keys(annotations).length > 0 ? annotations : undefined);
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
