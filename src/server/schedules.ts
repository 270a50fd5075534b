import type { Cron } from 'croner';
import { errorMessage } from '../errors.js';
import { MAX_TIMER_MS } from '../engine/timers.js';
import { cronOf, nextTick, wallClock } from '../workflow/schedule.js';
import type { ScheduleTrigger } from '../workflow/types.js';
import type { ServedWorkflow } from './handler.js';

/** The `hook.path` of a run a schedule started (a webhook path always starts with `/`). */
export const SCHEDULE_HOOK = 'schedule';

/** What became of one tick: a run started, skipped for the workflow's previous run, or taken by another process of the pool. */
export type TickOutcome = { runId: string } | { skipped: string } | { claimed: string };

/** Where ticks start runs: the listener's RunManager, or the pool's PoolRuns. */
export interface TickService {
  /** Starts a run of `served` for the tick `at` (ISO), unless its previous scheduled run still runs. */
  tick(served: ServedWorkflow, at: string): Promise<TickOutcome>;
}

export interface SchedulerOptions {
  /** The served workflows; those without a schedule trigger are left out. */
  served: readonly ServedWorkflow[];
  ticks: TickService;
  /** One line per tick that started or skipped a run, and per failure. */
  log: (line: string) => void;
  /** @default Date.now */
  now?: () => number;
}

interface Entry {
  served: ServedWorkflow;
  trigger: ScheduleTrigger;
  cron: Cron;
  timer: NodeJS.Timeout | undefined;
}

/** The served workflows that have at least one schedule trigger. */
export function scheduledOf(served: readonly ServedWorkflow[]): ServedWorkflow[] {
  return served.filter((s) => s.workflow.triggers.some((t) => t.type === 'schedule'));
}

/**
 * Fires the schedule triggers of `ferry serve` (DESIGN.md §1): one timer per trigger, armed
 * for its next tick in pieces of at most 2^31-1 ms. A tick that comes late (a blocked event
 * loop, a suspended machine) starts one run; the ticks missed meanwhile are not replayed.
 */
export class Scheduler {
  readonly #entries: Entry[];
  readonly #options: SchedulerOptions;
  readonly #now: () => number;
  /** Ticks being handed to the service: `stop()` waits for them. */
  readonly #inFlight = new Set<Promise<void>>();
  #stopped = false;

  constructor(options: SchedulerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#entries = options.served.flatMap((served) =>
      served.workflow.triggers.flatMap((trigger) => (trigger.type === 'schedule' ? [{ served, trigger, cron: cronOf(trigger.cron, trigger.timezone), timer: undefined }] : [])),
    );
  }

  /**
   * One line per scheduled workflow: its next tick in UTC and in the trigger's zone (the
   * earliest of its triggers).
   */
  describe(): string[] {
    const now = new Date(this.#now());
    const byWorkflow = new Map<ServedWorkflow, { at: Date | undefined; trigger: ScheduleTrigger }>();
    for (const { served, trigger, cron } of this.#entries) {
      const at = nextTick(cron, now);
      const best = byWorkflow.get(served);
      if (!best || (at && (!best.at || at < best.at))) byWorkflow.set(served, { at, trigger });
    }
    const width = Math.max(0, ...[...byWorkflow.keys()].map((s) => s.workflow.name.length));
    return [...byWorkflow].map(([served, { at, trigger }]) => {
      const when = at ? `next ${at.toISOString()}${trigger.timezone === 'UTC' ? '' : ` (${wallClock(at, trigger.timezone)} ${trigger.timezone})`}` : 'never fires again';
      return `  schedule ${served.workflow.name.padEnd(width)}  "${trigger.cron}"${trigger.timezone === 'UTC' ? ' UTC' : ` ${trigger.timezone}`}  ${when}  (${served.file})`;
    });
  }

  start(): void {
    const now = new Date(this.#now());
    for (const entry of this.#entries) this.#arm(entry, now);
  }

  /** Stops at once: no timer is left, no tick starts; resolves when the ticks being recorded are. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const entry of this.#entries) clearTimeout(entry.timer);
    await Promise.allSettled([...this.#inFlight]);
  }

  #arm(entry: Entry, after: Date): void {
    if (this.#stopped) return;
    const at = nextTick(entry.cron, after);
    if (!at) return;
    const wake = (): void => {
      if (this.#stopped) return;
      const left = at.getTime() - this.#now();
      if (left > 0) {
        entry.timer = setTimeout(wake, Math.min(left, MAX_TIMER_MS));
        return;
      }
      this.#fire(entry.served, at.toISOString());
      // From now, not from the tick: ticks that passed while this one was late are not replayed.
      this.#arm(entry, new Date(Math.max(at.getTime(), this.#now())));
    };
    wake();
  }

  #fire(served: ServedWorkflow, at: string): void {
    const { log, ticks } = this.#options;
    const name = served.workflow.name;
    const done = ticks.tick(served, at).then(
      (outcome) => {
        if ('runId' in outcome) log(`tick ${at} of ${name}: run ${outcome.runId}`);
        else if ('skipped' in outcome) log(`tick ${at} of ${name} skipped: run ${outcome.skipped} still running`);
      },
      (error: unknown) => log(`tick ${at} of ${name} failed: ${errorMessage(error)}; the next tick tries again`),
    );
    this.#inFlight.add(done);
    void done.finally(() => this.#inFlight.delete(done));
  }
}
