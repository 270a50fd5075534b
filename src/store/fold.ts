import type { CallSummary, InnerStepSummary } from '../types.js';
import type { ItemEntry, JournalEntry, StepEntry, StepShape } from './journal.js';

type RunEntry = Extract<JournalEntry, { t: 'run' }>;
type EndEntry = Extract<JournalEntry, { t: 'end' }>;

/** What one loop item's entry added to its step's aggregate, so a later entry can take it back. */
interface Contribution {
  agg: InnerStepSummary;
  status: StepEntry['status'];
  calls: CallSummary | undefined;
}

/**
 * Folds a run's journal, entry by entry, into what `ferry show`, `retry` and the listener
 * need: the latest attempt's end, the pid that ran it, the top-level steps, per-loop counts
 * of the inner steps, and which steps completed. Memory does not grow with the number of loop
 * items: the latest entry of each (step, item) wins, as it always did, but only items whose
 * latest entry failed are remembered (a resumed run re-runs only those; completed action
 * steps are never run again). Loop steps nested in loops do re-run on resume, so their
 * entries are kept per item: one per item of the outer loop.
 */
export class RunFold {
  /** The end of the latest attempt: a `resume` after an `end` starts a new attempt. */
  end: EndEntry | undefined;
  /** The process of the latest `run` or `resume` entry. */
  pid: number;
  /** Top-level steps by id, latest entry, in the order they first appeared. */
  readonly top = new Map<string, StepEntry>();
  /** Per top-level loop, per inner step id: how its items ended and the calls they made. */
  readonly inner = new Map<string, Map<string, InnerStepSummary>>();
  /** Ids of steps with an entry that did not fail, in the order they first completed. */
  readonly completed = new Set<string>();
  /** Loop items set aside by `on_error: continue` and not passed since, by `loop@item`. */
  readonly failedItems = new Map<string, ItemEntry>();
  readonly #topIds: Set<string>;
  readonly #parentOf = new Map<string, string>();
  readonly #loopSteps = new Set<string>();
  readonly #loopOf = new Map<string, string | null>();
  /** `step@item` of inner entries whose latest entry failed. */
  readonly #failed = new Map<string, Contribution>();
  /** `step@item` of inner loop steps, which re-run on resume. */
  readonly #innerLoops = new Map<string, Contribution>();

  constructor(readonly start: RunEntry) {
    this.pid = start.pid;
    this.#topIds = new Set(start.shape.map((s) => s.id));
    const walk = (shape: StepShape[], parent: string | undefined): void => {
      for (const s of shape) {
        if (parent) this.#parentOf.set(s.id, parent);
        if (s.steps) {
          this.#loopSteps.add(s.id);
          walk(s.steps, s.id);
        }
      }
    };
    walk(start.shape, undefined);
  }

  add(e: JournalEntry): void {
    switch (e.t) {
      case 'step':
        this.#step(e);
        break;
      case 'item': {
        const key = `${e.id}@${e.item.join('.')}`;
        if (e.status === 'failed') this.failedItems.set(key, e);
        else this.failedItems.delete(key);
        break;
      }
      case 'end':
        this.end = e;
        break;
      case 'resume':
        this.end = undefined;
        this.pid = e.pid;
        break;
      case 'run':
        this.pid = e.pid;
        break;
      default:
    }
  }

  #step(e: StepEntry): void {
    if (e.status !== 'failed') this.completed.add(e.id);
    if (e.item.length === 0 && this.#topIds.has(e.id)) {
      this.top.set(e.id, e);
      return;
    }
    const loop = this.#topLoopOf(e.id);
    if (loop === null) return;
    let perLoop = this.inner.get(loop);
    if (!perLoop) {
      perLoop = new Map();
      this.inner.set(loop, perLoop);
    }
    let agg = perLoop.get(e.id);
    if (!agg) {
      agg = { succeeded: 0, failed: 0, skipped: 0, calls: { calls: 0, attempts: 0, failures: {}, waitedMs: 0 } };
      perLoop.set(e.id, agg);
    }
    const now: Contribution = { agg, status: e.status, calls: e.calls };
    if (this.#loopSteps.has(e.id)) {
      const key = `${e.id}@${e.item.join('.')}`;
      const before = this.#innerLoops.get(key);
      if (before) take(before);
      this.#innerLoops.set(key, now);
    } else if (this.#failed.size > 0 || e.status === 'failed') {
      const key = `${e.id}@${e.item.join('.')}`;
      const before = this.#failed.get(key);
      if (before) {
        take(before);
        this.#failed.delete(key);
      }
      if (e.status === 'failed') this.#failed.set(key, now);
    }
    give(now);
  }

  /** The top-level loop a step belongs to (null outside loops), as summaries have always grouped them. */
  #topLoopOf(id: string): string | null {
    let loop = this.#loopOf.get(id);
    if (loop === undefined) {
      let at = this.#parentOf.get(id);
      while (at && this.#parentOf.has(at) && !this.#topIds.has(at)) at = this.#parentOf.get(at);
      loop = at ?? null;
      this.#loopOf.set(id, loop);
    }
    return loop;
  }
}

function give({ agg, status, calls }: Contribution): void {
  agg[status]++;
  if (!calls) return;
  agg.calls.calls += calls.calls;
  agg.calls.attempts += calls.attempts;
  agg.calls.waitedMs += calls.waitedMs;
  for (const [k, v] of Object.entries(calls.failures)) agg.calls.failures[k] = (agg.calls.failures[k] ?? 0) + v;
}

function take({ agg, status, calls }: Contribution): void {
  agg[status]--;
  if (!calls) return;
  agg.calls.calls -= calls.calls;
  agg.calls.attempts -= calls.attempts;
  agg.calls.waitedMs -= calls.waitedMs;
  for (const [k, v] of Object.entries(calls.failures)) {
    const left = (agg.calls.failures[k] ?? 0) - v;
    if (left === 0) delete agg.calls.failures[k];
    else agg.calls.failures[k] = left;
  }
}
