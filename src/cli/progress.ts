import type { RunListener } from '../engine/events.js';
import type { LoopStep, Workflow } from '../workflow/types.js';
import type { CommandIO } from './io.js';
import { humanObserver } from './output.js';

/** What the progress display knows about the top-level step that is running. */
export interface ProgressState {
  step: string | undefined;
  startedAt: number;
  /** Set while the running step is a loop. */
  loop: { total: number | undefined; done: number; retries: number } | undefined;
  /** Provider account pauses (Retry-After, throttling) by scope: who, when they end and why. */
  pauses: Map<string, { until: number; reason: string; provider?: string }>;
}

export interface Progress {
  /** Subscribe it to the run's session. */
  listener: RunListener;
  /** Erases the live display; calling it again does nothing. */
  stop(): void;
}

/** Redraws happen at most this often: 10 a second reads as live without flooding a terminal. */
export const REDRAW_MS = 100;

/** `42s`, `3m 20s`, `1h 5m`; time left rounds up, time spent rounds down. */
export function formatDuration(ms: number, round: (x: number) => number = Math.ceil): string {
  const s = Math.max(0, round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

const count = (n: number): string => n.toLocaleString('en-US');

/** The lines of the live display (a TTY redraws them in place). */
export function renderProgress(state: ProgressState, now: number): string[] {
  const lines: string[] = [];
  if (state.step !== undefined) {
    const elapsed = now - state.startedAt;
    const loop = state.loop;
    if (!loop) lines.push(`… ${state.step}  running ${formatDuration(elapsed, Math.floor)}`);
    else {
      const rate = elapsed > 0 ? (loop.done * 1000) / elapsed : 0;
      const parts = [`… ${state.step}`, loop.total === undefined ? `${count(loop.done)} items` : `${count(loop.done)}/${count(loop.total)}`];
      if (loop.total) parts.push(`${Math.floor((loop.done * 100) / loop.total)}%`);
      parts.push(`${rate >= 10 ? Math.round(rate) : rate.toFixed(1)}/s`);
      if (loop.total !== undefined && rate > 0 && loop.done < loop.total) parts.push(`ETA ${formatDuration(((loop.total - loop.done) / rate) * 1000)}`);
      if (loop.retries > 0) parts.push(`${loop.retries} retr${loop.retries === 1 ? 'y' : 'ies'}`);
      lines.push(parts.join('  '));
    }
  }
  for (const [scope, pause] of state.pauses) {
    const left = pause.until - now;
    if (left > 0) lines.push(`  ${pause.provider ?? scope} paused (${pause.reason}), resumes in ${formatDuration(left)}`);
  }
  return lines;
}

/**
 * Run output on stderr, as a subscriber of the run's events. On a terminal (and not CI) a
 * live block shows the running loop's done/total, rate, ETA and retries, and provider pauses
 * with the time left, redrawn in place; elsewhere one plain line per finished step and per
 * pause. `quiet` leaves errors only.
 */
export function startProgress(io: CommandIO, workflow: Workflow, options: { verbose: boolean; quiet: boolean }): Progress {
  const live = !options.quiet && io.isTTY && io.env.CI !== 'true';
  const state: ProgressState = { step: undefined, startedAt: 0, loop: undefined, pauses: new Map() };
  const lastInner = new Map(workflow.steps.filter((s): s is LoopStep => s.kind === 'loop').map((s) => [s.id, s.steps.at(-1)?.id]));
  let drawn = 0;
  let shown = '';
  const clear = (): void => {
    // Up to the first line of the block, then erase to the end of the screen.
    if (drawn > 0) io.terminal(`\x1b[${drawn}A\r\x1b[J`);
    drawn = 0;
  };
  const draw = (): void => {
    if (!live) return;
    const lines = renderProgress(state, Date.now()).map((l) => (l.length > 79 ? `${l.slice(0, 78)}…` : l));
    const text = lines.length > 0 ? `${lines.join('\n')}\n` : '';
    if (drawn > 0 && text === shown) return;
    clear();
    if (text) io.stderr(text);
    drawn = lines.length;
    shown = text;
  };
  // Permanent lines are written above the live block, which is drawn again below them.
  const printer: CommandIO = {
    ...io,
    stderr: (text) => {
      clear();
      io.stderr(text);
      draw();
    },
  };
  const human = humanObserver(printer, options);
  const timer = live ? setInterval(draw, REDRAW_MS) : undefined;
  timer?.unref?.();

  const listener: RunListener = (event) => {
    switch (event.type) {
      case 'step-started':
        if (event.item.length > 0) return;
        state.step = event.step;
        state.startedAt = Date.now();
        state.loop = lastInner.has(event.step) ? { total: undefined, done: 0, retries: 0 } : undefined;
        return;
      case 'loop-started':
        if (event.item.length === 0 && state.step === event.step && state.loop) state.loop.total = event.total;
        return;
      case 'step-finished': {
        const { step, item, summary } = event;
        if (item.length > 0) {
          const loop = state.loop;
          if (!loop) return;
          if (summary.calls) loop.retries += Math.max(0, summary.calls.attempts - summary.calls.calls);
          if (item.length === 1 && state.step !== undefined && lastInner.get(state.step) === step) loop.done++;
          return;
        }
        state.step = undefined;
        state.loop = undefined;
        human.stepFinished?.(step, item, summary);
        return;
      }
      case 'item-failed': {
        // The item is done with for this attempt: it counts, and the user sees it at once.
        if (event.item.length === 1 && state.loop && state.step === event.loop) state.loop.done++;
        if (options.quiet) return;
        const at = event.row ? ` (${event.row.file} line ${event.row.line})` : '';
        printer.stderr(`  ✗ ${event.loop} item ${event.item.join('.')}${at} set aside (on_error: continue): ${io.redactor.redactValue(event.error.message)}\n`);
        return;
      }
      case 'loop-progress':
        // A count relayed by the pool's worker (or a file loop's low-water mark).
        if (event.item.length === 0 && state.step === event.step && state.loop) state.loop.done = Math.max(state.loop.done, event.done);
        return;
      case 'log':
        human.log?.(event.level, event.message, event.step, event.item);
        return;
      case 'provider-paused':
        if (event.waitMs <= 0) return;
        {
          // The account by its base URL or region, never its credential; `http` has none.
          const who = event.account ? `${event.provider} (${event.account})` : event.provider;
          state.pauses.set(event.scope, { until: Date.now() + event.waitMs, reason: event.reason, provider: who });
          if (!live && !options.quiet) io.stderr(`  ${who} paused for ${formatDuration(event.waitMs)} (${event.reason}): the provider asked to wait\n`);
        }
        return;
      default:
    }
  };
  return {
    listener,
    stop() {
      if (timer) clearInterval(timer);
      clear();
    },
  };
}
