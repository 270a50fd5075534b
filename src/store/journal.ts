import { closeSync, fsyncSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Redactor } from '../engine/redact.js';
import type { CallSummary, RunErrorInfo, StepStatus, TriggerData } from '../engine/types.js';
import { JOURNAL_FILE, runDir, WORKFLOW_COPY } from './paths.js';

/** Layout of the run's steps: the journal checks a changed workflow against it. */
export interface StepShape {
  id: string;
  steps?: StepShape[];
}

/** One line of `journal.jsonl`. `v` versions the format. */
export type JournalEntry =
  | {
      t: 'run';
      v: 1;
      runId: string;
      workflow: string;
      file: string;
      startedAt: string;
      pid: number;
      inputs: Record<string, unknown>;
      trigger: TriggerData;
      shape: StepShape[];
    }
  | { t: 'resume'; at: string; pid: number }
  | { t: 'step'; id: string; item: number[]; status: StepStatus; output?: unknown; error?: RunErrorInfo; calls?: CallSummary; ms: number }
  /** A file loop's low-water mark: every row below `done` finished. */
  | { t: 'progress'; id: string; item: number[]; done: number }
  /**
   * The file a file loop read, written when it first opened it: `ferry retry` refuses to
   * resume when the file changed (engine/sources.ts says how it is compared).
   */
  | { t: 'source'; id: string; item: number[]; path: string; size: number; mtimeMs: number; hash: string }
  | { t: 'end'; status: 'succeeded' | 'failed'; at: string; ms: number; error: RunErrorInfo | null; interrupted?: string };

export type StepEntry = Extract<JournalEntry, { t: 'step' }>;

/** Where the engine writes what happened; narrow so another store (Redis, Temporal) can stand in. */
export interface RunJournal {
  /** Appends one entry. It is durable once `flushJournals()` ran, which happens before every provider call. */
  append(entry: JournalEntry): void;
  close(): void;
}

const unflushed = new Set<FileJournal>();

/**
 * Writes every journal's pending entries. The provider queue calls it before each call
 * leaves, so what a run did is on disk before it does anything a provider could see.
 */
export function flushJournals(): void {
  for (const journal of unflushed) journal.flush();
}

/**
 * An append-only JSONL file. Entries are buffered and written with one write(2) per flush:
 * before the next provider call (see flushJournals), when 64 KB are pending, on the next
 * turn of the event loop, and on close. Once written, lines survive SIGKILL of this process.
 * Secrets are redacted here, the one place records are written: in each entry's values,
 * never in the JSON text (a secret `true` must not turn into `"ok":[redacted]`).
 */
export class FileJournal implements RunJournal {
  readonly #fd: number;
  readonly #redactor: Redactor | undefined;
  readonly path: string;
  #pending = '';
  #scheduled = false;

  constructor(file: string, redactor?: Redactor) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.path = file;
    this.#fd = openSync(file, 'a');
    this.#redactor = redactor;
  }

  /** Creates the run folder with the journal and a copy of the workflow file it started from. */
  static create(stateDir: string, runId: string, workflowSource: string, redactor?: Redactor): FileJournal {
    const dir = runDir(stateDir, runId);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, WORKFLOW_COPY), workflowSource);
    return new FileJournal(path.join(dir, JOURNAL_FILE), redactor);
  }

  append(entry: JournalEntry): void {
    // Without secrets this is a plain stringify; with them, the entry is walked only when its text holds one.
    this.#pending += `${this.#redactor ? this.#redactor.redactJson(entry) : JSON.stringify(entry)}\n`;
    unflushed.add(this);
    if (this.#pending.length >= 64 * 1024) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.#scheduled = false;
    unflushed.delete(this);
    if (this.#pending === '') return;
    const text = this.#pending;
    this.#pending = '';
    writeSync(this.#fd, text);
  }

  /** Forces the file to disk (power loss); used at run boundaries, not per entry. */
  sync(): void {
    fsyncSync(this.#fd);
  }

  /**
   * Writes what is pending and closes. No fsync: a tail lost to power loss is re-run on
   * retry with the same idempotency keys, so providers dedupe it; `sync()` is there for the
   * places that must be on disk before answering (the listener's 202).
   */
  close(): void {
    this.flush();
    closeSync(this.#fd);
  }

}

/** A journal that keeps nothing: for embedding and for measuring the journal's cost. */
export const noJournal: RunJournal = { append: () => undefined, close: () => undefined };

/**
 * Reads a journal. A line that does not parse — the torn last line of a killed process —
 * is skipped, never fatal.
 */
export async function readJournal(file: string): Promise<{ entries: JournalEntry[]; skipped: number }> {
  const text = await readFile(file, 'utf8');
  const entries: JournalEntry[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      entries.push(JSON.parse(line) as JournalEntry);
    } catch {
      skipped++;
    }
  }
  return { entries, skipped };
}
