import { statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { FileJournal, type RunJournal, type RunMode } from '../store/journal.js';
import type { RunLock } from '../store/lock.js';
import { JOURNAL_FILE, runDir } from '../store/paths.js';
import type { RunRecord } from '../store/record.js';
import { FerryError } from '../errors.js';
import type { Workflow } from '../workflow/types.js';
import { RunEvents, type RunEvent, type RunListener } from './events.js';
import { runInputs } from './inputs.js';
import { JOURNAL_EVENTS, journalSubscriber } from './journal-subscriber.js';
import type { Redactor } from '../redact.js';
import type { ResumeState } from './resume.js';
import { newRunId } from './run-id.js';
import { prepareRun, runPrepared, runStartedEvent, type PreparedRun } from './run.js';
import type { Ferry } from './runtime.js';
import { readSecrets, type SecretSource } from './secrets.js';
import type { RunSummary, TriggerData } from '../types.js';

/** How a run starts: what it is given, where it is kept, who listens. */
export interface RunSessionOptions {
  /** The runtime the run belongs to (createFerry): registry, dispatcher, per-account limits, journal flushing. */
  ferry: Ferry;
  /** @default a new time-sortable id */
  runId?: string;
  /**
   * Inputs as given (`--input`, a test case's `inputs`), not yet checked: the session applies
   * the body rule (runInputs) and checks them against the trigger before anything is recorded.
   * @default {}
   */
  inputs?: Record<string, unknown>;
  /** @default { type: 'manual' } */
  trigger?: TriggerData;
  /** The webhook path a delivery came in on: that trigger's `inputs:` apply. @default the first webhook trigger */
  hookPath?: string;
  /** Where the workflow's declared secrets are read, once, before anything is recorded. */
  secrets: SecretSource;
  /** What a missing-secret error suggests besides setting it. @default 'or try the run with --sandbox' */
  secretHint?: string;
  /** What `<<env.NAME>>` reads. @default the runtime's `env` */
  env?: Record<string, string | undefined>;
  /** Recorded in the `run` entry, so that `ferry retry` resumes a sandbox run in the sandbox. @default 'live' */
  mode?: RunMode;
  /** Provider block fields that replace the workflow's (the sandbox sets base_url and keys). */
  providerOverrides?: Record<string, Record<string, unknown>>;
  /** Collects secret values and provider keys; the journal is redacted with it. */
  redactor?: Redactor;
  /** Graceful stop (SIGINT/SIGTERM): no new step, loop item or call starts; the run ends `failed`, resumable. */
  signal?: AbortSignal;
  /**
   * Keep the run in this state dir: its folder, the workflow copy and the journal, with the
   * run's lock held while it runs. Paths from data may also point inside it.
   * @default nothing is kept on disk
   */
  stateDir?: string;
  /** The run's lock when the caller took it already (`ferry retry` takes it before reading the journal); released at the end. */
  lock?: RunLock;
  /** Without `stateDir`: where journal entries go (an in-memory journal in tests, another store). */
  journal?: RunJournal;
  /** Fields of the `run` entry that readers ignore (the listener's `hook`). */
  annotations?: Record<string, unknown>;
  /** Listeners subscribed before anything happens. `on()` right after startRun sees every event too. */
  subscribers?: readonly RunListener[];
}

/** Resuming a recorded run: its id and inputs as recorded, and what its journal says is done. */
export interface ResumeRunOptions extends Omit<RunSessionOptions, 'inputs' | 'hookPath' | 'annotations'> {
  runId: string;
  /** The inputs the run was recorded with (already checked when it started). */
  inputs: Record<string, unknown>;
  resume: ResumeState;
  /** The run's record (`run.json`) as its earlier attempts left it, carried on by its journal. @default read from the run folder */
  record?: RunRecord;
  /**
   * Send the loop items that earlier attempts set aside (`on_error: continue`) again, as
   * `ferry retry` does; else they stay failed (a run taken up after a crash or restart). @default false
   */
  resendFailed?: boolean;
  /**
   * The journal's size when `resume` was read from it. Given, the run is not resumed when the
   * journal changed by the time the lock is held (another runner took it up meanwhile).
   */
  journalBytes?: number;
  /**
   * A run recorded durably by this process (recordRun) whose folder is not written yet: its
   * subscribers hear its `run-started` event (the recorded entry's) when it starts, then its
   * folder is written (`make`) before the lock is taken.
   */
  recorded?: {
    started: Extract<RunEvent, { type: 'run-started' }>;
    /** Makes the run folder; resolves with the journal's first line (the recorded `run` entry). */
    make(runId: string): Promise<string>;
    /** The journal is written with that line. */
    written(runId: string): void;
  };
}

/** One run from its checks to its summary, and the stream of what happens in it. */
export interface RunSession {
  readonly runId: string;
  /** Subscribes to the run's events; returns the function that unsubscribes. */
  on(listener: RunListener): () => void;
  /**
   * Checks inputs, reads secrets and records the run (the `run` entry; durable when the
   * session has a `durable` recorder). Rejects with a UsageError (FERRY_INPUT_INVALID,
   * FERRY_SECRET_MISSING) or a state dir error before anything is written. Called by `run()`.
   */
  record(): Promise<void>;
  /** Records the run if it is not yet, runs it and resolves with its summary (the same promise as `done`). */
  run(): Promise<RunSummary>;
  /** The run's summary; rejects when the run could not start (invalid inputs, a missing secret, a busy run). */
  readonly done: Promise<RunSummary>;
  /** The write error that stopped the run's journal (a full disk), if one did. */
  readonly journalFailure: FerryError | undefined;
}

/**
 * A session (a new run, or a resume with `resume`) that does nothing until `record()` or
 * `run()`: the listener records a delivery, and answers 202, long before it runs it.
 */
export function createRun(workflow: Workflow, options: RunSessionOptions | ResumeRunOptions): RunSession {
  return new Session(workflow, options, 'resume' in options ? options.resume : undefined);
}

/** Checks, records and runs a new run; events start after the caller's current turn. */
export function startRun(workflow: Workflow, options: RunSessionOptions): RunSession {
  const session = new Session(workflow, options, undefined);
  void session.run();
  return session;
}

/**
 * A session that resumes a recorded run (`ferry retry`, the listener after a restart):
 * completed steps come back from `resume`, a `resume` entry marks this attempt.
 */
export function resumeRun(workflow: Workflow, options: ResumeRunOptions): RunSession {
  const session = new Session(workflow, options, options.resume);
  void session.run();
  return session;
}

class Session implements RunSession {
  readonly runId: string;
  readonly done: Promise<RunSummary>;
  readonly #workflow: Workflow;
  readonly #options: RunSessionOptions;
  readonly #resume: ResumeState | undefined;
  readonly #events = new RunEvents();
  /** A journal write failure stops the run before its next call: nothing after it would be recorded. */
  readonly #journalStop = new AbortController();
  #settle!: { resolve: (summary: RunSummary) => void; reject: (error: unknown) => void };
  #recording: Promise<void> | undefined;
  #running = false;
  #prepared: PreparedRun | undefined;
  #lock: RunLock | undefined;
  /** The journal this session opened in the state dir (and closes at the end). */
  #fileJournal: FileJournal | undefined;
  #detach: (() => void) | undefined;
  #journalFailure: FerryError | undefined;
  /** The journal's size when this session's run was read or recorded; checked once the lock is held. */
  #journalBytes: number | undefined;
  /** A recorded run's `run` entry line, which its journal is created with (its folder was made just now). */
  #firstLine: string | undefined;

  constructor(workflow: Workflow, options: RunSessionOptions, resume: ResumeState | undefined) {
    this.#workflow = workflow;
    this.#options = options;
    this.#resume = resume;
    this.runId = options.runId ?? newRunId();
    this.#lock = options.lock;
    if ('journalBytes' in options) this.#journalBytes = (options as ResumeRunOptions).journalBytes;
    this.done = new Promise<RunSummary>((resolve, reject) => (this.#settle = { resolve, reject }));
    // A session that is never run, or whose caller awaits record() instead, leaves no unhandled rejection.
    this.done.catch(() => undefined);
    for (const listener of options.subscribers ?? []) this.#events.on(listener);
  }

  on(listener: RunListener): () => void {
    return this.#events.on(listener);
  }

  get journalFailure(): FerryError | undefined {
    return this.#fileJournal?.failure ?? this.#journalFailure;
  }

  record(): Promise<void> {
    this.#recording ??= this.#record();
    return this.#recording;
  }

  run(): Promise<RunSummary> {
    if (!this.#running) {
      this.#running = true;
      this.#run().then(this.#settle.resolve, this.#settle.reject);
    }
    return this.done;
  }

  async #record(): Promise<void> {
    const options = this.#options;
    const workflow = this.#workflow;
    const trigger = options.trigger ?? { type: 'manual' };
    // A resumed run keeps the inputs it was recorded with: they were checked when it started.
    const inputs = this.#resume ? (options.inputs ?? {}) : runInputs(workflow, trigger, options.inputs, options.hookPath, options.ferry.inputs);
    const secrets = await readSecrets(workflow, options.secrets, options.secretHint);
    const stop = this.#journalStop.signal;
    this.#prepared = prepareRun(workflow, {
      ferry: options.ferry,
      runId: this.runId,
      inputs,
      trigger,
      secrets,
      events: this.#events,
      signal: options.signal ? AbortSignal.any([options.signal, stop]) : stop,
      ...pick(options, ['env', 'mode', 'providerOverrides', 'redactor', 'stateDir']),
      ...(this.#resume ? { resume: this.#resume } : {}),
      ...('resendFailed' in options && options.resendFailed === true ? { resendFailed: true } : {}),
    });
    const { stateDir } = options;
    if (this.#resume) {
      // A run recorded by this process: told as started to its subscribers (the journal has its
      // `run` entry already and is not attached yet), and its folder written now that it starts.
      const recorded = this.#recorded();
      if (recorded) {
        this.#events.emit(recorded.started);
        this.#firstLine = await recorded.make(this.runId);
      }
      this.#open();
      this.#events.emit({ type: 'run-resumed', runId: this.runId, at: new Date().toISOString(), pid: process.pid });
      // The `resume` entry wrote the journal, its first line with it.
      if (recorded && this.#fileJournal?.failure === undefined) recorded.written(this.runId);
      return;
    }
    const started = runStartedEvent(this.#prepared, options.annotations);
    if (stateDir !== undefined) {
      this.#lock ??= this.#options.ferry.locks.acquire(stateDir, this.runId);
      try {
        this.#attachFile(FileJournal.create(stateDir, this.runId, workflow.source, options.redactor, this.#journalOptions()));
      } catch (error) {
        this.#release();
        throw error;
      }
    } else if (options.journal) {
      this.#attach(options.journal);
    }
    this.#events.emit(started);
    // The `run` entry itself could not be written (a full disk): there is no run to resume, so
    // none is left behind; nothing was sent.
    const failed = this.#fileJournal?.failure;
    if (failed && stateDir !== undefined) {
      this.#release();
      await rm(runDir(stateDir, this.runId), { recursive: true, force: true }).catch(() => undefined);
      throw new FerryError(failed.code, `${failed.message}; the run did not start and nothing was sent: free space, then run it again`, { cause: failed });
    }
  }

  async #run(): Promise<RunSummary> {
    try {
      await this.record();
      return await runPrepared(this.#prepared as PreparedRun);
    } finally {
      this.#release();
    }
  }

  /** Takes the lock and opens the run's existing journal (a resume, or a run recorded earlier). */
  #open(): void {
    const { stateDir, journal } = this.#options;
    if (stateDir === undefined) {
      if (journal) this.#attach(journal);
      return;
    }
    // A run recorded by this process has its folder, made owner-only just now.
    const made = this.#recorded() !== undefined;
    this.#lock ??= this.#options.ferry.locks.acquire(stateDir, this.runId, { made });
    try {
      // The run waited (queued in the listener) between being read and being locked: another
      // runner (`ferry retry`) may have taken it up meanwhile. Its journal then grew, and what
      // this session knows of it is out of date: it is not run a second time.
      const file = path.join(runDir(stateDir, this.runId), JOURNAL_FILE);
      if (this.#journalBytes !== undefined && this.#firstLine === undefined && statSync(file).size !== this.#journalBytes) {
        throw new FerryError('FERRY_RUN_BUSY', `run ${this.runId} was taken up by another runner while it waited here (\`ferry retry\`?); it is not run again`);
      }
      const record = 'record' in this.#options ? (this.#options as ResumeRunOptions).record : undefined;
      const journal = new FileJournal(path.join(runDir(stateDir, this.runId), JOURNAL_FILE), this.#options.redactor, { ...this.#journalOptions(), ...(record ? { record } : {}), made, ...(this.#firstLine === undefined ? {} : { first: this.#firstLine }) });
      this.#attachFile(journal);
      // failed.jsonl starts from the journal: the items that stay failed (none when they are sent again).
      const failed = this.#resume?.failed;
      if (failed && failed.size > 0) journal.resetFailed(this.#prepared?.run.options.resendFailed === true ? [] : failed.values());
    } catch (error) {
      this.#release();
      throw error;
    }
  }

  #recorded(): ResumeRunOptions['recorded'] {
    return 'recorded' in this.#options ? (this.#options as ResumeRunOptions).recorded : undefined;
  }

  #journalOptions(): { onFailure: (error: FerryError) => void } {
    return { onFailure: (error) => this.#journalStop.abort(error.code === 'FERRY_DISK_FULL' ? 'a full disk' : 'a journal write error') };
  }

  #attach(journal: RunJournal): void {
    this.#detach?.();
    // First in line: an entry is appended before any display hears of its event.
    const unsubscribe = this.#events.first(journalSubscriber(journal), JOURNAL_EVENTS);
    // The runtime writes the journal before each provider call: what the run did is on disk first.
    const untrack = this.#options.ferry.trackJournal(journal, this.#prepared?.run.signal);
    this.#detach = () => {
      unsubscribe();
      untrack();
    };
  }

  #attachFile(journal: FileJournal): void {
    this.#fileJournal = journal;
    this.#attach(journal);
  }

  #release(): void {
    // Only the journal this session opened is closed; one the caller passed stays theirs.
    if (this.#fileJournal) {
      this.#fileJournal.close();
      this.#journalFailure = this.#fileJournal.failure;
      this.#fileJournal = undefined;
    }
    this.#detach?.();
    this.#detach = undefined;
    this.#lock?.release();
    this.#lock = undefined;
  }
}

function pick<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (from[key] !== undefined) out[key] = from[key];
  return out;
}
