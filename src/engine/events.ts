import type { LogLevel } from '../types.js';
import type { RunMode, StepShape } from '../store/journal.js';
import type { SourceFingerprint } from './sources.js';
import type { RunErrorInfo, RunObserver, RunSummary, StepSummary, TriggerData } from '../types.js';

/**
 * What happens in a run, in order: the one stream the journal, the progress display, the
 * `ferry test` recorder and the listener's log subscribe to. Events are delivered
 * synchronously, in the order they happen: a subscriber that writes (the journal) has what it
 * was given before the run's next provider call.
 */
export type RunEvent =
  /** A new run was recorded: what its journal's first (`run`) entry holds. */
  | {
      type: 'run-started';
      runId: string;
      workflow: string;
      file: string;
      startedAt: string;
      pid: number;
      mode: RunMode;
      inputs: Record<string, unknown>;
      trigger: TriggerData;
      shape: StepShape[];
      /** Fields the recorder adds to the `run` entry, which readers ignore (the listener's `hook`). */
      annotations?: Record<string, unknown>;
    }
  /** A recorded run is taken up again (`ferry retry`, a listener run after its queue or a restart). */
  | { type: 'run-resumed'; runId: string; at: string; pid: number }
  /** A step (or one loop item's inner step) starts. `item` is its loop position, outermost first. */
  | { type: 'step-started'; step: string; item: readonly number[] }
  /**
   * A step ran or was skipped. `loop` says it is a loop step (its output is `{ count, items? }`);
   * `error` is the run's first failure when the step failed because of it.
   */
  | { type: 'step-finished'; step: string; item: readonly number[]; loop: boolean; summary: StepSummary; error?: RunErrorInfo }
  /** A loop starts its items; `total` is known for `over:` arrays, not for streamed files, whose `size` in bytes is. */
  | { type: 'loop-started'; step: string; item: readonly number[]; total: number | undefined; size?: number }
  /** A file loop read further: `bytes` of its file are behind the last row it took (sent as it moves, not per row). */
  | { type: 'loop-read'; step: string; item: readonly number[]; bytes: number }
  /** A file loop's low-water mark: every row below `done` finished. */
  | { type: 'loop-progress'; step: string; item: readonly number[]; done: number }
  /** The file a file loop reads, when it first opens it: a resume must read the same file. */
  | ({ type: 'loop-source'; step: string; item: readonly number[] } & SourceFingerprint)
  /**
   * A loop item whose step has `on_error: continue` failed after its retries and was set
   * aside (failed.jsonl); the loop goes on. `item` is its position, outermost loop first;
   * `row` the file and line it came from, for a file loop.
   */
  | { type: 'item-failed'; loop: string; item: readonly number[]; step: string; value: unknown; row?: { file: string; line: number }; error: RunErrorInfo }
  /** An item set aside by an earlier attempt was sent again (`ferry retry`) and passed. */
  | { type: 'item-recovered'; loop: string; item: readonly number[] }
  /** A line an action logged (`core.log`, a provider's warning). */
  | { type: 'log'; level: LogLevel; message: string; step: string; item: readonly number[] }
  /** A provider this run calls paused its queue (Retry-After, throttling). */
  /** A provider account's queue paused (Retry-After, throttling); `account` is its base URL or region, never its key. */
  | { type: 'provider-paused'; provider: string; account: string | undefined; scope: string; waitMs: number; reason: string }
  /** The run ended; `interrupted` names the signal that stopped it early. */
  | { type: 'run-finished'; summary: RunSummary; at: string; interrupted?: string };

export type RunEventType = RunEvent['type'];
export type RunListener = (event: RunEvent) => void;

interface Subscription {
  listener: RunListener;
  /** The event types it takes; undefined for all. */
  types: ReadonlySet<RunEventType> | undefined;
}

/**
 * The listeners of one run. A listener may name the event types it takes, so that the engine
 * builds no per-item event nobody listens to. A listener that throws fails the step that
 * emitted, as any engine error would.
 */
export class RunEvents {
  #subscriptions: Subscription[] = [];
  /** Listeners per event type, counting those that take every type. */
  readonly #wanted = new Map<RunEventType, number>();
  #all = 0;

  /** Adds a listener; returns the function that removes it. */
  on(listener: RunListener, types?: readonly RunEventType[]): () => void {
    return this.#add({ listener, types: types && new Set(types) }, false);
  }

  /** Adds a listener ahead of the others (the journal: an entry is written before any display hears of it). */
  first(listener: RunListener, types?: readonly RunEventType[]): () => void {
    return this.#add({ listener, types: types && new Set(types) }, true);
  }

  /** Whether anyone takes events of this type: per-item events are built only then. */
  wants(type: RunEventType): boolean {
    return this.#all > 0 || (this.#wanted.get(type) ?? 0) > 0;
  }

  emit(event: RunEvent): void {
    for (const { listener, types } of this.#subscriptions) if (!types || types.has(event.type)) listener(event);
  }

  #add(subscription: Subscription, first: boolean): () => void {
    // Copy on write: a listener added or removed while an event is delivered takes effect from the next one.
    this.#subscriptions = first ? [subscription, ...this.#subscriptions] : [...this.#subscriptions, subscription];
    this.#count(subscription, 1);
    return () => {
      if (!this.#subscriptions.includes(subscription)) return;
      this.#subscriptions = this.#subscriptions.filter((s) => s !== subscription);
      this.#count(subscription, -1);
    };
  }

  #count(subscription: Subscription, by: number): void {
    if (!subscription.types) this.#all += by;
    else for (const type of subscription.types) this.#wanted.set(type, (this.#wanted.get(type) ?? 0) + by);
  }
}

/** A RunObserver (the hooks of earlier versions) as a listener. */
export function observe(observer: RunObserver): RunListener {
  return (event) => {
    if (event.type === 'step-started') observer.stepStarted?.(event.step, event.item);
    else if (event.type === 'step-finished') observer.stepFinished?.(event.step, event.item, event.summary);
    else if (event.type === 'log') observer.log?.(event.level, event.message, event.step, event.item);
  };
}
