import type { RunListener } from '../engine/events.js';
import type { LoopStep, Workflow } from '../workflow/types.js';
import type { CommandIO } from './io.js';
import { humanObserver } from './output.js';

/** What the progress display knows about the top-level step that is running. */
export interface ProgressState {
  step: string | undefined;
  startedAt: number;
  /** Set while the running step is a loop; a file loop also knows its file's `size` and the `bytes` read. */
  loop: { total: number | undefined; done: number; retries: number; size?: number; bytes?: number } | undefined;
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
/** Off a terminal (CI), a running loop prints one plain line this often, so a long log is never silent. */
export const PLAIN_PROGRESS_MS = 10_000;

/** `42s`, `3m 20s`, `1h 5m`; time left rounds up, time spent rounds down. */
export function formatDuration(ms: number, round: (x: number) => number = Math.ceil): string {
  const s = Math.max(0, round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/**
 * `1,234,567`: what `toLocaleString('en-US')` writes for a count, without it. The first
 * toLocaleString of a run pulls ICU's locale data into memory: ~5 MB of a long loop's peak RSS,
 * for one progress line.
 */
export function formatCount(n: number): string {
  const text = String(n);
  const dot = text.indexOf('.');
  const whole = dot === -1 ? text : text.slice(0, dot);
  return whole.replace(/\B(?=(\d{3})+$)/g, ',') + (dot === -1 ? '' : text.slice(dot));
}

const count = formatCount;

/** `512 B`, `3.4 KB`, `12 MB`, `1.2 GB` (powers of 1000, as file managers show sizes). */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = n / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

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
      const { size, bytes } = loop;
      if (loop.total) parts.push(`${Math.floor((loop.done * 100) / loop.total)}%`);
      else if (size !== undefined && bytes !== undefined) parts.push(`${size > 0 ? Math.floor((bytes * 100) / size) : 100}%`, `${formatBytes(bytes)}/${formatBytes(size)}`);
      parts.push(`${rate >= 10 ? Math.round(rate) : rate.toFixed(1)}/s`);
      if (loop.total !== undefined && rate > 0 && loop.done < loop.total) parts.push(`ETA ${formatDuration(((loop.total - loop.done) / rate) * 1000)}`);
      // A file's rows are not counted ahead: its time left comes from the bytes read so far.
      else if (loop.total === undefined && size !== undefined && bytes !== undefined && bytes > 0 && bytes < size) parts.push(`ETA ${formatDuration(((size - bytes) * elapsed) / bytes)}`);
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

/** Lines cut to the terminal's width and at most its height less one: a line that wraps, or a block taller than the pane, could not be erased by moving up. */
export function fitToTerminal(lines: string[], size: { columns: number; rows: number } | undefined): string[] {
  const width = Math.max(10, (size?.columns || 80) - 1);
  const height = Math.max(1, (size?.rows || 24) - 1);
  return lines.slice(0, height).map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
}

/**
 * Run output on stderr, as a subscriber of the run's events. On a terminal (and not CI) a
 * live block shows the running loop's done/total (a file loop's bytes read of its size),
 * rate, ETA and retries, and provider pauses with the time left, redrawn in place;
 * elsewhere one plain line per finished step and per pause, and the running loop's line
 * every PLAIN_PROGRESS_MS and at each pause. `quiet` leaves errors only.
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
    const lines = fitToTerminal(renderProgress(state, Date.now()), io.terminalSize?.());
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
  const plainLine = (): void => {
    const line = state.loop ? renderProgress(state, Date.now())[0] : undefined;
    if (line !== undefined) io.stderr(`${line}\n`);
  };
  const timer = live ? setInterval(draw, REDRAW_MS) : options.quiet ? undefined : setInterval(plainLine, PLAIN_PROGRESS_MS);
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
        if (event.item.length === 0 && state.step === event.step && state.loop) {
          state.loop.total = event.total;
          if (event.size !== undefined) state.loop.size = event.size;
        }
        return;
      case 'loop-read':
        if (event.item.length === 0 && state.step === event.step && state.loop) state.loop.bytes = event.bytes;
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
          if (!live && !options.quiet) {
            io.stderr(`  ${who} paused for ${formatDuration(event.waitMs)} (${event.reason}): the provider asked to wait\n`);
            plainLine();
          }
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
