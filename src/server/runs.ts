import { mkdir, readdir } from 'node:fs/promises';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { errorMessage } from '../errors.js';
import type { RunListener } from '../engine/events.js';
import type { Redactor } from '../redact.js';
import { ResumeFold, shapeOf } from '../engine/run.js';
import type { Ferry } from '../engine/runtime.js';
import { envSecrets, type SecretSource } from '../engine/secrets.js';
import { entryOf, recordedSession, recordRun, type RecordedRun } from '../engine/recorded.js';
import { newRunId } from '../engine/run-id.js';
import { createRun, type RunSession } from '../engine/session.js';
import { DurableRecorder } from '../store/durable.js';
import type { JournalEntry } from '../store/journal.js';
import { isRunId, runsDir } from '../store/paths.js';
import { writeRunRecordQuietly, type RunHook, type RunRecord } from '../store/record.js';
import { currentRecord, incompatibilities, loadRun, recordOf, stateOf, summarize, type RunState } from '../store/runs.js';
import type { Delivery, RunsService, ServedWorkflow } from './handler.js';
import { SCHEDULE_HOOK, type TickOutcome, type TickService } from './schedules.js';

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
  /** Where runs read the workflows' declared secrets. @default the environment `env` */
  secrets?: SecretSource;
  /** Runs in flight at once; further accepted runs wait in order. @default 32 */
  maxRuns?: number;
  /** One line about each run's end, resumes and errors. */
  log: (line: string) => void;
  /** A subscriber of each run's events (its core.log lines). */
  subscriber?: (runId: string) => RunListener;
  /** Told of each run session when it is made (a delivery's when its run starts, a resume's at `open`). */
  onRun?: (session: RunSession) => void;
  /** The clock replay windows are measured on. @default Date.now */
  now?: () => number;
  /** `ferry serve --sandbox`: runs are recorded as sandbox runs and call the emulators these settings point at. */
  sandbox?: { providerOverrides: Record<string, Record<string, unknown>> };
}

/** A delivery seen before: its run, once on disk, and until when a repeat is a duplicate. */
interface Seen {
  run: Promise<string>;
  untilMs: number;
}

/** Expired replay keys are dropped at most this often, so the index stays bounded by the windows. */
const SWEEP_EVERY_MS = 60_000;

/**
 * Deliveries first: while deliveries keep the event loop saturated (busier than SATURATED over
 * the last SAMPLE_MS), at most BUSY_RUNS runs run and the others wait, so that the listener
 * answers a burst at the rate it can record deliveries, not the rate it can run them; the
 * waiting runs start as soon as the burst is over. Past MAX_BACKLOG waiting runs, runs take
 * their full share again (`maxRuns`): a burst that does not end slows the answers instead of
 * growing the backlog without bound. Runs that wait on providers leave the loop idle, so a
 * listener whose runs are slow is never held to BUSY_RUNS.
 */
const SAMPLE_MS = 100;
const SATURATED = 0.9;
const BUSY_RUNS = 2;
const MAX_BACKLOG = 50_000;

/** A run waiting for a slot: a session (a run resumed at open) or a recorded run, whose session is made when it starts. */
type Pending = { served: ServedWorkflow } & ({ session: RunSession } | { recorded: RecordedRun });

/**
 * Records accepted deliveries as runs and runs them in the background, at most `maxRuns` at a
 * time, oldest first. A run's `run` entry is on disk (fsynced in the accepted log) before
 * `accept` resolves, so an accepted delivery survives a crash of the listener; its folder is
 * written when it starts (or from the log at the next start).
 */
export class RunManager implements RunsService, TickService {
  readonly maxRuns: number;
  readonly #options: RunManagerOptions;
  /** `path \0 kind \0 id or replay key` -> the run it started. Delivery ids last as long as their run. */
  readonly #deliveries = new Map<string, Seen>();
  /** Absolute paths of the served workflows: GET /runs/<id> shows only their runs. */
  readonly #servedFiles = new Set<string>();
  readonly #now: () => number;
  #sweptAt = 0;
  readonly #active = new Map<string, { done: Promise<void>; pending: Pending }>();
  /** Insertion order is arrival order: the FIFO of accepted runs waiting for a slot. */
  readonly #waiting = new Map<string, Pending>();
  readonly #stop = new AbortController();
  readonly #recorder: DurableRecorder;
  readonly #secrets: SecretSource;
  /** Workflow file -> its scheduled run from the tick until the run ends: later ticks are skipped meanwhile. */
  readonly #scheduled = new Map<string, string>();
  #started = false;
  /** Deliveries recorded since the last sample of the event loop. */
  #accepted = 0;
  #saturated = false;
  #loop: EventLoopUtilization | undefined;
  #sampler: NodeJS.Timeout | undefined;

  constructor(options: RunManagerOptions) {
    const maxRuns = options.maxRuns ?? 32;
    if (!Number.isInteger(maxRuns) || maxRuns < 1) throw new TypeError(`Expected \`maxRuns\` to be a positive integer, got \`${String(maxRuns)}\``);
    this.maxRuns = maxRuns;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#recorder = new DurableRecorder(options.stateDir);
    this.#secrets = options.secrets ?? envSecrets(options.env);
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
   * Returns the ids queued for resuming; nothing runs before `start()`.
   */
  async open(served: readonly ServedWorkflow[]): Promise<string[]> {
    const byFile = new Map(served.map((s) => [s.workflow.file, s]));
    for (const file of byFile.keys()) this.#servedFiles.add(file);
    const now = this.#now();
    for (const s of served) for (const value of Object.values(s.secrets)) this.#options.redactor.add(value);
    await mkdir(runsDir(this.#options.stateDir), { recursive: true, mode: 0o700 });
    // Run folders a crash took after their delivery was answered come back from the accepted log first.
    const restored = await this.#recorder.restore();
    if (restored.length > 0) this.#options.log(`restored ${restored.length === 1 ? 'run' : 'runs'} ${restored.join(', ')} from the accepted log (accepted but not started, or their folders were lost or torn in a crash)`);
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
      const session = createRun(again.workflow, { ...this.#sessionOptions(), runId: id, inputs: run.start.inputs, trigger: run.start.trigger, resume: folding.result(), record: recordOf(run), journalBytes: run.journalBytes });
      this.#watch(session, again);
      this.#waiting.set(id, { session, served: again });
      if (hook.schedule !== undefined) this.#scheduled.set(again.workflow.file, id);
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
    this.#loop = performance.eventLoopUtilization();
    this.#sampler = setInterval(() => this.#sample(), SAMPLE_MS).unref();
    this.#pump();
  }

  /** Whether deliveries saturated the event loop over the last sample (see SATURATED). */
  get saturated(): boolean {
    return this.#saturated;
  }

  #sample(): void {
    const now = performance.eventLoopUtilization();
    const { utilization } = performance.eventLoopUtilization(now, this.#loop);
    this.#loop = now;
    const was = this.#saturated;
    this.#saturated = utilization > SATURATED && this.#accepted > 0;
    this.#accepted = 0;
    if (was && !this.#saturated) this.#pump();
  }

  async accept(delivery: Delivery): Promise<{ runId: string; duplicate: boolean }> {
    const now = this.#now();
    const keys = keysOf(delivery.route.path, delivery.deliveryId ?? null, delivery.replays);
    for (const { key } of keys) {
      const seen = this.#deliveries.get(key);
      if (seen && seen.untilMs >= now) return { runId: await seen.run, duplicate: true };
    }
    this.#sweep(now);
    const { route } = delivery;
    // Recorded durably (fsynced) before accept resolves; its session is made when a slot is free.
    const recording = recordRun(route.served.workflow, {
      ...this.#recordOptions(),
      inputs: delivery.inputs,
      trigger: delivery.trigger,
      hookPath: route.path,
      annotations: { hook: hookOf(delivery) },
    });
    const recorded = recording.then((r) => r.runId);
    // Set before the first await: a redelivery racing the original waits for it instead of starting a second run.
    for (const { key, untilMs } of keys) this.#deliveries.set(key, { run: recorded, untilMs });
    recorded.catch(() => {
      for (const { key } of keys) if (this.#deliveries.get(key)?.run === recorded) this.#deliveries.delete(key);
    });
    const run = await recording;
    this.#accepted++;
    this.#waiting.set(run.runId, { recorded: run, served: route.served });
    this.#pump();
    return { runId: run.runId, duplicate: false };
  }

  /**
   * A schedule's tick: recorded durably like a delivery (and resumed at the next start if it
   * does not finish), unless the workflow's previous scheduled run is still queued or running.
   */
  async tick(served: ServedWorkflow, at: string): Promise<TickOutcome> {
    const key = served.workflow.file;
    const previous = this.#scheduled.get(key);
    if (previous !== undefined) return { skipped: previous };
    const runId = newRunId();
    // Held from before the first await: a tick of another trigger of this workflow sees it.
    this.#scheduled.set(key, runId);
    let recorded: RecordedRun;
    try {
      recorded = await recordRun(served.workflow, {
        ...this.#recordOptions(),
        runId,
        trigger: { type: 'schedule', scheduled_at: at },
        annotations: { hook: { path: SCHEDULE_HOOK, delivery: null, schedule: at } satisfies ListenerRunEntry['hook'] },
      });
    } catch (error) {
      this.#scheduled.delete(key);
      throw error;
    }
    this.#waiting.set(runId, { recorded, served });
    this.#pump();
    return { runId };
  }

  async summary(runId: string): Promise<object | undefined> {
    // A run waiting for a slot has no folder yet (it is made when the run starts): it is told from memory.
    if (this.#recorder.unmade(runId)) {
      const waiting = this.#waiting.get(runId);
      const pending = waiting ?? this.#active.get(runId)?.pending;
      const status = waiting ? 'queued' : 'running';
      if (pending && 'recorded' in pending) {
        const entry = entryOf(pending.recorded);
        return { runId, workflow: entry.workflow, status, state: status, error: null, steps: {}, startedAt: entry.startedAt, durationMs: 0 };
      }
    }
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
    clearInterval(this.#sampler);
    this.#waiting.clear();
    await Promise.allSettled([...this.#active.values()].map((a) => a.done));
    await this.#recorder.close();
  }

  /** What every new run is recorded with. */
  #recordOptions() {
    const { ferry, redactor, sandbox } = this.#options;
    return { ferry, redactor, recorder: this.#recorder, ...(sandbox ? { mode: 'sandbox' as const } : {}) };
  }

  /** What every run is started with: the listener's queues, secrets, state dir and stop. */
  #sessionOptions() {
    const { ferry, redactor, env, stateDir, sandbox } = this.#options;
    const common = { ferry, redactor, env, stateDir, secrets: this.#secrets, signal: this.#stop.signal };
    return sandbox ? { ...common, mode: 'sandbox' as const, providerOverrides: sandbox.providerOverrides } : common;
  }

  /** The listener's log of a run is a subscriber: its end in one line, and the caller's (core.log lines). */
  #watch(session: RunSession, served: ServedWorkflow): RunSession {
    const { log, subscriber, onRun } = this.#options;
    if (subscriber) session.on(subscriber(session.runId));
    onRun?.(session);
    session.on((event) => {
      if (event.type !== 'run-finished') return;
      const { summary } = event;
      const how = summary.status === 'succeeded' ? `succeeded in ${summary.durationMs}ms` : `failed: ${summary.error?.message ?? 'unknown error'}`;
      log(`run ${session.runId} (${served.workflow.name}) ${how}`);
    });
    return session;
  }

  /** Drops replay keys past their window; delivery ids stay (they last as long as their run). */
  #sweep(now: number): void {
    if (now - this.#sweptAt < SWEEP_EVERY_MS) return;
    this.#sweptAt = now;
    for (const [key, seen] of this.#deliveries) if (seen.untilMs < now) this.#deliveries.delete(key);
  }

  #pump(): void {
    const limit = this.#saturated && this.#waiting.size < MAX_BACKLOG ? Math.min(BUSY_RUNS, this.maxRuns) : this.maxRuns;
    while (this.#started && !this.#stop.signal.aborted && this.#active.size < limit) {
      const next = this.#waiting.values().next();
      if (next.done) return;
      const runId = pendingId(next.value);
      this.#waiting.delete(runId);
      const file = next.value.served.workflow.file;
      const done = this.#execute(next.value).finally(() => {
        this.#active.delete(runId);
        if (this.#scheduled.get(file) === runId) this.#scheduled.delete(file);
        this.#pump();
      });
      this.#active.set(runId, { done, pending: next.value });
    }
  }

  async #execute(pending: Pending): Promise<void> {
    const { served } = pending;
    try {
      const session = 'session' in pending ? pending.session : this.#watch(recordedSession(served.workflow, pending.recorded, { ...this.#sessionOptions(), recorder: this.#recorder }), served);
      await session.run();
    } catch (error) {
      this.#options.log(`run ${pendingId(pending)} (${served.workflow.name}) could not run: ${errorMessage(error)}`);
    }
  }
}

function pendingId(pending: Pending): string {
  return 'session' in pending ? pending.session.runId : pending.recorded.runId;
}

/** The `hook` field of the listener's `run` entry: where the delivery came in and its keys. */
export function hookOf(delivery: Delivery): ListenerRunEntry['hook'] {
  return {
    path: delivery.route.path,
    delivery: delivery.deliveryId ?? null,
    ...(delivery.replays.length > 0 ? { replays: delivery.replays.map((r) => ({ key: r.key, until: r.untilMs })) } : {}),
  };
}

/** The index keys of a delivery on `hookPath`: its id (for good) and its replay keys (for their window). */
export function keysOf(hookPath: string, deliveryId: string | null, replays: readonly { key: string; untilMs: number }[]): { key: string; untilMs: number }[] {
  const keys = replays.map((r) => ({ key: `${hookPath}\0replay\0${r.key}`, untilMs: r.untilMs }));
  if (deliveryId !== null) keys.unshift({ key: `${hookPath}\0id\0${deliveryId}`, untilMs: Infinity });
  return keys;
}
