import path from 'node:path';
import { FerryError, RunFailedError, errorMessage } from '../errors.js';
import type { TemplateContext } from '../template/compile.js';
import type { LoopStep, Step } from '../workflow/types.js';
import type { InnerStepSummary } from '../types.js';
import type { ItemEntry } from '../store/journal.js';
import { confineDataPath } from './data-paths.js';
import { stepKey } from './resume.js';
import { Feed } from './feed.js';
import { fingerprint, openRows, sourceChange, sourceChangedError, type ReadPosition, type RowSource, type SourceFingerprint } from './sources.js';
import { errorInfo, interruption, ItemSetAside, type ItemScope, type Run } from './state.js';

/** Runs a scope's steps (steps.ts's runSteps, passed in so that this module does not import it back). */
export type RunItem = (steps: readonly Step[], scope: ItemScope, run: Run) => Promise<void>;

/**
 * Runs a loop's items, `step.concurrency` at a time (items whose batched request is on the
 * wire excepted, see feed.ts), each through `runItem`: from an array
 * (`over`), keeping every item's outputs, or streamed from a file, keeping only the count.
 */
export async function runLoop(step: LoopStep, scope: ItemScope, run: Run, inner: Map<string, InnerStepSummary>, runItem: RunItem): Promise<{ count: number; items?: unknown[] }> {
  // File-sourced loops stream their rows and keep only the count: a million rows never sit
  // in memory. Arrays keep each item's outputs, in item order.
  let pull: () => Promise<IteratorResult<unknown>> | IteratorResult<unknown>;
  let source: RowSource | undefined;
  let outputs: unknown[] | undefined;
  let count = 0;
  let done = 0;
  let progress: LoopProgress | undefined;
  let fileName: string | undefined;
  // Items an earlier attempt set aside (on_error: continue), by position: `ferry retry` sends
  // them again, a run taken up after a crash keeps them failed.
  const setAside = setAsideOf(run, step.id, scope.item);
  const resend = run.options.resendFailed === true;
  if (step.file !== undefined || step.fileTemplate !== undefined) {
    const key = stepKey(step.id, scope.item);
    const { file, size } = await openLoopFile(step, scope, run, key);
    fileName = path.relative(path.dirname(run.workflow.file), file) || file;
    // The read position is kept only for someone watching (the progress display).
    const position = run.events.wants('loop-read') ? { bytes: 0 } : undefined;
    const rows = openRows(file, position);
    source = rows;
    pull = position ? readReporting(rows, position, size, (bytes) => run.events.emit({ type: 'loop-read', step: step.id, item: scope.item, bytes })) : () => rows.next();
    // A resumed file loop restarts at the first unfinished row: rows below the journal's
    // progress mark are read past without running anything (but for set-aside ones).
    done = run.options.resume?.progress?.get(key) ?? 0;
    if (!setAside) {
      while (count < done) {
        const pulled = rows.next();
        if ((pulled instanceof Promise ? await pulled : pulled).done) break;
        count++;
      }
    }
    run.events.emit({ type: 'loop-started', step: step.id, item: scope.item, total: undefined, size });
    progress = new LoopProgress(count, (mark) => run.events.emit({ type: 'loop-progress', step: step.id, item: scope.item, done: mark }));
  } else {
    const items = step.over?.(scope.context);
    if (!Array.isArray(items)) {
      throw new RunFailedError(step.id, null, `step \`${step.id}\`: loop.over must render to an array, got ${items === null ? 'null' : typeof items}`);
    }
    outputs = new Array(items.length);
    run.events.emit({ type: 'loop-started', step: step.id, item: scope.item, total: items.length });
    let at = 0;
    pull = () => (at < items.length ? { done: false, value: items[at++] } : { done: true, value: undefined });
  }
  let sourceError: unknown;
  // Items start while a slot is free; an item whose batched request is on the wire gives its
  // slot to the next one (feed.ts), so a batched step keeps the provider's request slots busy.
  const feed = new Feed(step.concurrency);
  let running = 0;
  let allDone: (() => void) | undefined;
  let itemError: unknown;
  // What an item does once its steps are done (or one failed, or it was set aside).
  const itemDone = (itemScope: ItemScope, index: number, value: unknown, again: boolean, aside: ItemSetAside | undefined): void => {
    const { steps, item, row } = itemScope;
    try {
      // Finished means every inner step ran (or was skipped): a stop or a failure elsewhere
      // can leave an item half done, and its row must run again on retry. An item set aside
      // is done with for this attempt: failed.jsonl has it, and `ferry retry` sends it again.
      const finished = allFinished(step.steps, steps);
      if (aside) {
        run.setAside(aside.step);
        run.events.emit({ type: 'item-failed', loop: step.id, item, step: aside.step, value, ...(row ? { row } : {}), error: errorInfo(aside.failure) });
      } else if (finished && again) run.events.emit({ type: 'item-recovered', loop: step.id, item });
      if (progress && (finished || aside)) progress.finished(index);
      if (outputs) {
        const out: Record<string, unknown> = {};
        for (const s of step.steps) if (steps[s.id]) out[s.id] = steps[s.id]?.output;
        outputs[index] = out;
      }
    } catch (error) {
      itemError ??= error;
    } finally {
      feed.drop();
      if (--running === 0) allDone?.();
    }
  };
  // Not async: a waiting item holds its scope and one continuation, no suspended frame.
  const runOne = (index: number, value: unknown, line: number | undefined, again: boolean): void => {
    // Object.assign keeps a copy of the context at half the size of a spread.
    const steps = Object.assign({}, scope.steps);
    const context: TemplateContext = Object.assign({}, scope.context);
    context.steps = steps;
    context[step.as] = value;
    context.loop = { index };
    // concat, not a spread: a spread array keeps room for 16 more positions.
    const item = scope.item.concat(index);
    const row = line === undefined || fileName === undefined ? scope.row : { file: fileName, line };
    const itemScope: ItemScope = { context, steps, item, inner, feed, row };
    let pending: Promise<void>;
    try {
      pending = runItem(step.steps, itemScope, run);
    } catch (error) {
      pending = Promise.reject(error as Error);
    }
    // A failed step is recorded (steps.ts) and stops the run; the item just ends.
    void pending.then(
      () => itemDone(itemScope, index, value, again, undefined),
      (error: unknown) => itemDone(itemScope, index, value, again, error instanceof ItemSetAside ? error : undefined),
    );
  };
  for (;;) {
    const free = feed.whenFree();
    if (free) await free;
    if (run.stopping || itemError !== undefined) break;
    feed.take();
    let next: IteratorResult<unknown>;
    try {
      // A file's rows come without a promise while its chunk in hand holds them.
      const pulled = pull();
      next = pulled instanceof Promise ? await pulled : pulled;
    } catch (error) {
      sourceError = error;
      feed.drop();
      break;
    }
    if (next.done) {
      feed.drop();
      break;
    }
    const index = count++;
    const before = setAside?.get(index);
    // Below the progress mark only set-aside rows are left; kept failed, they count again.
    if ((index < done && !before) || (before && !resend)) {
      if (before) run.setAside(before.step ?? step.id);
      if (outputs) outputs[index] = {};
      progress?.finished(index);
      feed.drop();
      continue;
    }
    running++;
    runOne(index, next.value, source?.line, before !== undefined);
  }
  feed.close();
  source?.close();
  if (running > 0) await new Promise<void>((resolve) => (allDone = resolve));
  if (itemError !== undefined) throw itemError;
  progress?.flush();
  if (sourceError !== undefined) throw new RunFailedError(step.id, null, `step \`${step.id}\`: ${errorMessage(sourceError)}`, { cause: sourceError });
  if (run.failure) throw run.failure;
  if (run.signal.aborted) throw interruption(run);
  return outputs ? { count, items: outputs } : { count };
}

/** Positions of this loop's items that earlier attempts set aside, or undefined when there are none. */
function setAsideOf(run: Run, loop: string, outer: readonly number[]): Map<number, ItemEntry> | undefined {
  const failed = run.options.resume?.failed;
  if (!failed || failed.size === 0) return undefined;
  let found: Map<number, ItemEntry> | undefined;
  for (const entry of failed.values()) {
    if (entry.id !== loop || entry.item.length !== outer.length + 1 || outer.some((n, i) => entry.item[i] !== n)) continue;
    (found ??= new Map()).set(entry.item[outer.length] as number, entry);
  }
  return found;
}

/**
 * The path a file loop reads. A templated `loop.file` may come from data, so it must stay
 * inside the allowed folders. A resumed run must read the very file its first attempt read
 * (rows are skipped by position); a first opening records what the file is.
 */
async function openLoopFile(step: LoopStep, scope: ItemScope, run: Run, key: string): Promise<{ file: string; size: number }> {
  let file = step.file;
  if (step.fileTemplate !== undefined) {
    const value = step.fileTemplate(scope.context);
    if (typeof value !== 'string' || value === '') {
      throw new FerryError('FERRY_LOOP_FILE', `loop.file must render to a file path, got ${value === '' ? 'an empty string' : value === null ? 'null' : typeof value}`);
    }
    file = await confineDataPath(value, 'loop.file', path.dirname(run.workflow.file), await run.dataRoots());
  }
  if (file === undefined) throw new FerryError('FERRY_LOOP_FILE', 'loop.file is missing');
  const recorded = run.options.resume?.sources?.get(key);
  if (recorded) {
    const change = await sourceChange(recorded, file);
    if (change !== undefined) throw sourceChangedError(change, run.runId);
    return { file, size: recorded.size };
  }
  let print: SourceFingerprint;
  try {
    print = await fingerprint(file);
  } catch (error) {
    throw new FerryError('FERRY_LOOP_FILE', `loop.file ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? errorMessage(error)})`, { cause: error });
  }
  run.events.emit({ type: 'loop-source', step: step.id, item: scope.item, ...print });
  return { file, size: print.size };
}

/**
 * Pulls rows and reports the read position each time it moved by a 200th of the file (and at
 * the end): a few hundred events per loop, however many rows.
 */
function readReporting(rows: RowSource, position: ReadPosition, size: number, report: (bytes: number) => void): () => IteratorResult<unknown> | Promise<IteratorResult<unknown>> {
  const stride = Math.max(1, Math.floor(size / 200));
  let reported = 0;
  const check = (next: IteratorResult<unknown>): IteratorResult<unknown> => {
    if (next.done ? reported < size : position.bytes - reported >= stride) report((reported = next.done ? size : position.bytes));
    return next;
  };
  return () => {
    const pulled = rows.next();
    return pulled instanceof Promise ? pulled.then(check) : check(pulled);
  };
}

function allFinished(steps: readonly Step[], outcomes: ItemScope['steps']): boolean {
  for (const s of steps) {
    const outcome = outcomes[s.id];
    if (outcome === undefined || outcome.status === 'failed') return false;
  }
  return true;
}

/**
 * The low-water mark of a file loop: every row below it finished. Written to the journal
 * every PROGRESS_EVERY rows, so that a retry can skip them without holding their entries.
 */
class LoopProgress {
  /**
   * Rows above the mark that finished, one byte each in a ring indexed by row: items finish
   * near the mark (at most the items in flight above it), so the ring stays that small and a
   * finished row costs no allocation.
   */
  #done = new Uint8Array(1024);
  #low: number;
  #written: number;
  constructor(
    start: number,
    readonly write: (mark: number) => void,
  ) {
    this.#low = start;
    this.#written = start;
  }
  finished(index: number): void {
    if (index - this.#low >= this.#done.length) this.#grow(index - this.#low + 1);
    const ring = this.#done;
    ring[index % ring.length] = 1;
    while (ring[this.#low % ring.length] === 1) {
      ring[this.#low % ring.length] = 0;
      this.#low++;
    }
    if (this.#low - this.#written >= PROGRESS_EVERY) this.flush();
  }
  flush(): void {
    if (this.#low === this.#written) return;
    this.#written = this.#low;
    this.write(this.#low);
  }
  /** Makes room for `span` rows above the mark, keeping each finished row at its index. */
  #grow(span: number): void {
    const old = this.#done;
    let size = old.length * 2;
    while (size < span) size *= 2;
    const ring = new Uint8Array(size);
    for (let i = this.#low; i < this.#low + old.length; i++) ring[i % size] = old[i % old.length] as number;
    this.#done = ring;
  }
}

const PROGRESS_EVERY = 1000;
