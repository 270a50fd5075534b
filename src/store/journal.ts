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
  | { t: 'end'; status: 'succeeded' | 'failed'; at: string; ms: number; error: RunErrorInfo | null; interrupted?: string };

/** Where the engine writes what happened; narrow so another store (Redis, Temporal) can stand in. */
export interface RunJournal {
  /** Appends one entry; durable against a killed process when it returns. */
  append(entry: JournalEntry): void;
  close(): void;
}

/**
 * An append-only JSONL file. Each entry is one synchronous write(2): once `append`
 * returns, the line is in the OS and survives SIGKILL of this process, so it is written
 * before the next provider call starts. Secrets are redacted here, the one place records
 * are written.
 */
export class FileJournal implements RunJournal {
  readonly #fd: number;
  readonly #redactor: Redactor | undefined;
  readonly path: string;

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
    const line = JSON.stringify(entry);
    writeSync(this.#fd, `${this.#redactor ? this.#redactor.redact(line) : line}\n`);
  }

  /** Forces the file to disk (power loss); used at run boundaries, not per entry. */
  sync(): void {
    fsyncSync(this.#fd);
  }

  close(): void {
    try {
      fsyncSync(this.#fd);
    } finally {
      closeSync(this.#fd);
    }
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
