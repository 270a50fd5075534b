import { mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../errors.js';
import type { Redactor } from '../engine/redact.js';
import { ResumeFold, runWorkflow, shapeOf, type ResumeState } from '../engine/run.js';
import { newRunId } from '../engine/run-id.js';
import type { Ferry } from '../engine/runtime.js';
import type { RunObserver, TriggerData } from '../engine/types.js';
import { FileJournal, type JournalEntry } from '../store/journal.js';
import { acquireRunLock, type RunLock } from '../store/lock.js';
import { isRunId, JOURNAL_FILE, runDir, runsDir, WORKFLOW_COPY } from '../store/paths.js';
import { startRecord, writeRunRecord, writeRunRecordQuietly, type RunHook, type RunRecord } from '../store/record.js';
import { currentRecord, incompatibilities, loadRun, recordOf, stateOf, summarize, type RunState } from '../store/runs.js';
import type { Delivery, RunsService, ServedWorkflow } from './handler.js';

/**
 * The `run` entry as the listener writes it. `hook` is an extra field (readers of the journal
 * ignore it) naming the path, delivery id and replay keys the run came in on: the delivery
 * index and the resume-on-start are rebuilt from it, so they need no store of their own, and
 * a key is on disk exactly when its run is. The run's record (`run.json`) carries it too, so
 * that a start reads records, not journals.
 */
export type ListenerRunEntry = Extract<JournalEntry, { t: 'run' }> & { hook: RunHook };

export interface RunManagerOptions {
  stateDir: string;
  /** One runtime for every run of the listener: runs share its registry, dispatcher and per-account limits. */
  ferry: Ferry;
  /** Redacts journals; gets every served workflow's secrets. */
  redactor: Redactor;
  env: Record<string, string | undefined>;
  /** Runs in flight at once; further accepted runs wait in order. @default 32 */
  maxRuns?: number;
  /** One line about each run's end, resumes and errors. */
  log: (line: string) => void;
  /** Progress of each run (core.log lines). */
  observer?: (runId: string) => RunObserver;
  /** The clock replay windows are measured on. @default Date.now */
  now?: () => number;
}

/** A delivery seen before: its run, once on disk, and until when a repeat is a duplicate. */
interface Seen {
  run: Promise<string>;
  untilMs: number;
}

/** Expired replay keys are dropped at most this often, so the index stays bounded by the windows. */
const SWEEP_EVERY_MS = 60_000;

interface Pending {
  runId: string;
  served: ServedWorkflow;
  inputs: Record<string, unknown>;
  trigger: TriggerData;
  resume: ResumeState;
  /** The run's record so far, carried on by its journal. */
  record: RunRecord | undefined;
}

/**
 * Records accepted deliveries as runs and runs them in the background, at most `maxRuns` at a
 * time, oldest first. A run is on disk (its folder, workflow copy and `run` entry, fsynced)
 * before `accept` resolves, so an accepted delivery survives a crash of the listener.
 */
export class RunManager implements RunsService {
  readonly maxRuns: number;
  readonly #options: RunManagerOptions;
  /** `path \0 kind \0 id or replay key` -> the run it started. Delivery ids last as long as their run. */
  readonly #deliveries = new Map<string, Seen>();
  /** Absolute paths of the served workflows: GET /runs/<id> shows only their runs. */
  readonly #servedFiles = new Set<string>();
  readonly #now: () => number;
  #sweptAt = 0;
  readonly #active = new Map<string, Promise<void>>();
  /** Insertion order is arrival order: the FIFO of accepted runs waiting for a slot. */
  readonly #waiting = new Map<string, Pending>();
  readonly #stop = new AbortController();
  readonly #runsDirSync: DirSync;
  #started = false;

  constructor(options: RunManagerOptions) {
    const maxRuns = options.maxRuns ?? 32;
    if (!Number.isInteger(maxRuns) || maxRuns < 1) throw new TypeError(`Expected \`maxRuns\` to be a positive integer, got \`${String(maxRuns)}\``);
    this.maxRuns = maxRuns;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#runsDirSync = new DirSync(runsDir(options.stateDir));
  }

  get running(): number {
    return this.#active.size;
  }

  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Reads the runs of the state dir: every delivery id the listener recorded goes back into the
   * index, and accepted runs of served workflows that did not finish are queued again.
   * Returns the ids queued for resuming; nothing runs before `start()`. Only the runs' records
   * are read, and the journals of the runs it resumes (or of runs without an up-to-date record).
   */
  async open(served: readonly ServedWorkflow[]): Promise<string[]> {
    const byFile = new Map(served.map((s) => [s.workflow.file, s]));
    for (const file of byFile.keys()) this.#servedFiles.add(file);
    const now = this.#now();
    for (const s of served) for (const value of Object.values(s.secrets)) this.#options.redactor.add(value);
    await mkdir(runsDir(this.#options.stateDir), { recursive: true, mode: 0o700 });
    const ids = (await readdir(runsDir(this.#options.stateDir))).filter(isRunId).sort();
    const resumed: string[] = [];
    for (const id of ids) {
      const known = await this.#recordOf(id);
      const hook = known?.record.hook;
      if (!known || !hook) continue;
      const runOf = Promise.resolve(id);
      for (const { key, untilMs } of keysOf(hook.path, hook.delivery, (hook.replays ?? []).map((r) => ({ key: r.key, untilMs: r.until })))) {
        if (untilMs >= now) this.#deliveries.set(key, { run: runOf, untilMs });
      }
      const again = byFile.get(known.record.file);
      if (!again || known.state !== 'interrupted') continue;
      const folding = new ResumeFold();
      const run = await loadRun(this.#options.stateDir, id, (entry) => folding.add(entry));
      if (!run) continue;
      const problems = incompatibilities(run, shapeOf(again.workflow.steps));
      if (problems.length > 0) {
        this.#options.log(`run ${id} of ${run.start.workflow} not resumed: ${again.file} changed (${problems.join('; ')}); use ferry retry after fixing it`);
        continue;
      }
      this.#waiting.set(id, { runId: id, served: again, inputs: run.start.inputs, trigger: run.start.trigger, resume: folding.result(), record: recordOf(run) });
      resumed.push(id);
    }
    return resumed;
  }

  /** A run's record and state; read from its journal (and written for next time) when it has no up-to-date record. */
  async #recordOf(runId: string): Promise<{ record: RunRecord; state: RunState } | undefined> {
    const { stateDir } = this.#options;
    const current = currentRecord(stateDir, runId);
    if (current) return current;
    const run = await loadRun(stateDir, runId);
    if (!run) return undefined;
    const record = recordOf(run);
    if (typeof run.lock !== 'object') writeRunRecordQuietly(stateDir, record);
    return { record, state: stateOf(run) };
  }

  /** Starts running: the queued resumes first, then deliveries as they are accepted. */
  start(): void {
    this.#started = true;
    this.#pump();
  }

  async accept(delivery: Delivery): Promise<{ runId: string; duplicate: boolean }> {
    const now = this.#now();
    const keys = keysOf(delivery.route.path, delivery.deliveryId ?? null, delivery.replays);
    for (const { key } of keys) {
      const seen = this.#deliveries.get(key);
      if (seen && seen.untilMs >= now) return { runId: await seen.run, duplicate: true };
    }
    this.#sweep(now);
    const runId = newRunId();
    const recording = this.#record(runId, delivery);
    const recorded = recording.then(() => runId);
    // Set before the first await: a redelivery racing the original waits for it instead of starting a second run.
    for (const { key, untilMs } of keys) this.#deliveries.set(key, { run: recorded, untilMs });
    recorded.catch(() => {
      for (const { key } of keys) if (this.#deliveries.get(key)?.run === recorded) this.#deliveries.delete(key);
    });
    await recorded;
    const record = await recording;
    this.#waiting.set(runId, { runId, served: delivery.route.served, inputs: delivery.inputs, trigger: delivery.trigger, resume: new Map(), record });
    this.#pump();
    return { runId, duplicate: false };
  }

  async summary(runId: string): Promise<object | undefined> {
    // Another workflow's run is known by its record, without reading its journal.
    const known = currentRecord(this.#options.stateDir, runId);
    if (known && !this.#servedFiles.has(known.record.file)) return undefined;
    const run = await loadRun(this.#options.stateDir, runId);
    // Another workflow's run (a `ferry run`, a listener for other files) is not this listener's to show.
    if (!run || !this.#servedFiles.has(run.start.file)) return undefined;
    const summary = summarize(run);
    // stateOf cannot tell this process's live runs from killed ones: the manager can.
    const live = this.#active.has(runId) ? 'running' : this.#waiting.has(runId) ? 'queued' : undefined;
    return live ? { ...summary, status: live, state: live, error: null } : summary;
  }

  /**
   * Graceful stop: waiting runs stay recorded for the next start, running ones are told to stop
   * (no new step or call; calls on the wire finish) and are waited for.
   */
  async stop(reason: unknown): Promise<void> {
    this.#stop.abort(reason);
    this.#waiting.clear();
    await Promise.allSettled([...this.#active.values()]);
  }

  /** Writes the run's folder, workflow copy, `run` entry and record; returns the record. */
  async #record(runId: string, delivery: Delivery): Promise<RunRecord> {
    const { stateDir, redactor } = this.#options;
    const { workflow } = delivery.route.served;
    const entry: ListenerRunEntry = {
      t: 'run',
      v: 1,
      runId,
      workflow: workflow.name,
      file: workflow.file,
      startedAt: new Date().toISOString(),
      pid: process.pid,
      inputs: delivery.inputs,
      trigger: delivery.trigger,
      shape: shapeOf(workflow.steps),
      hook: {
        path: delivery.route.path,
        delivery: delivery.deliveryId ?? null,
        ...(delivery.replays.length > 0 ? { replays: delivery.replays.map((r) => ({ key: r.key, until: r.untilMs })) } : {}),
      },
    };
    // The line first: what cannot be written leaves nothing behind in the state dir.
    const line = `${redactor.redactJson(entry)}\n`;
    const dir = runDir(stateDir, runId);
    await mkdir(dir, { mode: 0o700 });
    try {
      // `wx`: a run id is never appended to twice.
      const [journal] = await Promise.all([open(path.join(dir, JOURNAL_FILE), 'wx', 0o600), writeFile(path.join(dir, WORKFLOW_COPY), workflow.source, { mode: 0o600 })]);
      try {
        await journal.writeFile(line);
        // The record beside it, so that the next start finds the delivery keys without the journal.
        const record = startRecord(entry, Buffer.byteLength(line));
        writeRunRecord(stateDir, record, redactor);
        // The entry, then the names of the new file and folder: a 202 promises that the run
        // survives a power cut. The three syncs are independent, so they overlap.
        await Promise.all([journal.sync(), syncDir(dir), this.#runsDirSync.sync()]);
        return record;
      } finally {
        await journal.close();
      }
    } catch (error) {
      // A 500 tells the sender to deliver again: a half-written run must not be resumed at the next start.
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
  }

  /** Drops replay keys past their window; delivery ids stay (they last as long as their run). */
  #sweep(now: number): void {
    if (now - this.#sweptAt < SWEEP_EVERY_MS) return;
    this.#sweptAt = now;
    for (const [key, seen] of this.#deliveries) if (seen.untilMs < now) this.#deliveries.delete(key);
  }

  #pump(): void {
    while (this.#started && !this.#stop.signal.aborted && this.#active.size < this.maxRuns) {
      const next = this.#waiting.values().next();
      if (next.done) return;
      this.#waiting.delete(next.value.runId);
      const done = this.#execute(next.value).finally(() => {
        this.#active.delete(next.value.runId);
        this.#pump();
      });
      this.#active.set(next.value.runId, done);
    }
  }

  async #execute(pending: Pending): Promise<void> {
    const { stateDir, redactor, log } = this.#options;
    const { workflow } = pending.served;
    let journal: FileJournal | undefined;
    let lock: RunLock | undefined;
    try {
      lock = acquireRunLock(stateDir, pending.runId);
      // A journal that cannot be written (a full disk) stops its run before the next call.
      const journalStop = new AbortController();
      journal = new FileJournal(path.join(runDir(stateDir, pending.runId), JOURNAL_FILE), redactor, {
        onFailure: (error) => journalStop.abort(error.code === 'FERRY_DISK_FULL' ? 'a full disk' : 'a journal write error'),
        ...(pending.record ? { record: pending.record } : {}),
      });
      // The `run` entry is already on disk: starting "as a resume" makes the engine append a
      // `resume` entry (with this pid) instead of a second `run` entry.
      const summary = await runWorkflow(workflow, {
        ferry: this.#options.ferry,
        runId: pending.runId,
        inputs: pending.inputs,
        trigger: pending.trigger,
        secrets: pending.served.secrets,
        env: this.#options.env,
        redactor,
        journal,
        stateDir: this.#options.stateDir,
        signal: AbortSignal.any([this.#stop.signal, journalStop.signal]),
        resume: pending.resume,
        ...(this.#options.observer ? { observer: this.#options.observer(pending.runId) } : {}),
      });
      const how = summary.status === 'succeeded' ? `succeeded in ${summary.durationMs}ms` : `failed: ${summary.error?.message ?? 'unknown error'}`;
      log(`run ${pending.runId} (${workflow.name}) ${how}`);
    } catch (error) {
      log(`run ${pending.runId} (${workflow.name}) could not run: ${errorMessage(error)}`);
    } finally {
      journal?.close();
      lock?.release();
    }
  }
}

/** The index keys of a delivery on `hookPath`: its id (for good) and its replay keys (for their window). */
function keysOf(hookPath: string, deliveryId: string | null, replays: readonly { key: string; untilMs: number }[]): { key: string; untilMs: number }[] {
  const keys = replays.map((r) => ({ key: `${hookPath}\0replay\0${r.key}`, untilMs: r.untilMs }));
  if (deliveryId !== null) keys.unshift({ key: `${hookPath}\0id\0${deliveryId}`, untilMs: Infinity });
  return keys;
}

/**
 * Group commit for a folder every delivery adds to: callers that arrive while an fsync runs
 * share the next one (the running one may have started before their change), so a burst of
 * deliveries costs two fsyncs of `runs/`, not one each.
 */
class DirSync {
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  constructor(readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.#running) {
      this.#running = syncDir(this.dir).finally(() => (this.#running = undefined));
      return this.#running;
    }
    this.#next ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.sync();
      });
    return this.#next;
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
