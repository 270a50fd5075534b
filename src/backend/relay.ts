import type { Redis } from 'ioredis';
import type { RunEvent, RunListener } from '../engine/events.js';
import type { Redactor } from '../redact.js';
import type { Backend } from './connection.js';

/** How often a loop's item count is sent on: a loop of a million items is not a million messages. */
const LOOP_EVERY_MS = 250;
/** The stream keeps the latest events only: it is for watching, the journal is the record. */
const MAX_EVENTS = 1000;
/** A finished run's stream stays this long for late watchers. */
const KEEP_SECONDS = 3600;

const streamKey = (backend: Backend, runId: string): string => backend.key('run', runId, 'events');

/**
 * Sends the events of a run that a watcher shows (`ferry run --backend` in another process):
 * top-level steps, loop counts (one message per loop every 250 ms), logs and pauses, redacted
 * like everything that leaves the process. Per-item events stay here.
 */
export class EventRelay {
  readonly #backend: Backend;
  readonly #key: string;
  readonly #redactor: Redactor;
  /** Items finished per running top-level loop since the run (re)started here. */
  readonly #loops = new Map<string, { done: number; sent: number }>();
  readonly #lastInner = new Map<string, string>();
  #timer: NodeJS.Timeout | undefined;
  #pending: Promise<unknown> = Promise.resolve();

  constructor(backend: Backend, runId: string, redactor: Redactor) {
    this.#backend = backend;
    this.#key = streamKey(backend, runId);
    this.#redactor = redactor;
  }

  readonly listener: RunListener = (event) => {
    switch (event.type) {
      case 'step-started':
      case 'loop-started':
        if (event.item.length === 0) this.#send(event);
        return;
      case 'step-finished':
        if (event.item.length === 0) {
          this.#flushLoops();
          this.#loops.delete(event.step);
          this.#send(event);
        } else if (event.item.length === 1) this.#countItem(event.step);
        return;
      case 'loop-progress':
        if (event.item.length === 0) this.#send(event);
        return;
      case 'log':
      case 'provider-paused':
      case 'run-resumed':
      case 'run-finished':
        this.#send(event);
        return;
      default:
    }
  };

  /** The loop a finished inner step belongs to counts an item when it is the loop's last step. */
  #countItem(step: string): void {
    // Inner steps finish in order within an item: the last one seen per loop is its last step.
    for (const [loop, counts] of this.#loops) {
      if (this.#lastInner.get(loop) === step) counts.done++;
    }
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      this.#flushLoops();
    }, LOOP_EVERY_MS);
  }

  /** Tells the relay which inner step ends an item of each top-level loop. */
  loops(lastInner: ReadonlyMap<string, string>): void {
    for (const [loop, last] of lastInner) {
      this.#lastInner.set(loop, last);
      this.#loops.set(loop, { done: 0, sent: 0 });
    }
  }

  #flushLoops(): void {
    for (const [step, counts] of this.#loops) {
      if (counts.done === counts.sent) continue;
      counts.sent = counts.done;
      this.#send({ type: 'loop-progress', step, item: [], done: counts.done });
    }
  }

  #send(event: RunEvent): void {
    const data = JSON.stringify(this.#redactor.redactValue(event));
    const redis = this.#backend.redis;
    this.#pending = this.#pending.then(() => redis.xadd(this.#key, 'MAXLEN', '~', String(MAX_EVENTS), '*', 'e', data)).catch(() => undefined);
  }

  /** Sends what is left and lets the stream expire an hour after the run. */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    this.#flushLoops();
    await this.#pending;
    await this.#backend.redis.expire(this.#key, KEEP_SECONDS).catch(() => undefined);
  }
}

/**
 * Reads a run's relayed events as they come, from the start of its stream, until `signal`
 * aborts. Uses its own connection: a blocking read holds it.
 */
export async function watchRun(backend: Backend, runId: string, listener: (event: RunEvent) => void, signal: AbortSignal): Promise<void> {
  const reader: Redis = backend.connection();
  const key = streamKey(backend, runId);
  let last = '0';
  const stop = (): void => reader.disconnect();
  signal.addEventListener('abort', stop, { once: true });
  try {
    while (!signal.aborted) {
      let answer: [string, [string, string[]][]][] | null;
      try {
        answer = (await reader.xread('BLOCK', 1000, 'STREAMS', key, last)) as [string, [string, string[]][]][] | null;
      } catch {
        if (signal.aborted) return;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      for (const [, entries] of answer ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          const data = fields[1];
          if (data !== undefined) listener(JSON.parse(data) as RunEvent);
        }
      }
    }
  } finally {
    signal.removeEventListener('abort', stop);
    reader.disconnect();
  }
}
