import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Redactor } from '../redact.js';
import type { JournalEntry } from './journal.js';
import { JOURNAL_FILE, runDir, runsDir, WORKFLOW_COPY } from './paths.js';
import { startRecord, writeRunRecordAsync } from './record.js';

/**
 * Records new runs durably: the run folder, the workflow copy and the journal's first line,
 * fsynced with the names of the new file and folder before `record` resolves. The listener
 * answers 202 only after that, so an accepted delivery survives a power cut. One recorder per
 * state dir: deliveries that arrive together share the fsyncs of `runs/`.
 */
export class DurableRecorder {
  readonly #runsDirSync: DirSync;

  constructor(readonly stateDir: string) {
    this.#runsDirSync = new DirSync(runsDir(stateDir));
  }

  /**
   * Writes the run's folder with `entry` (its `run` entry, redacted) as the journal's first
   * line, and the run's record beside it, so that the next start finds the delivery keys
   * without reading the journal.
   */
  async record(runId: string, workflowSource: string, entry: Extract<JournalEntry, { t: 'run' }>, redactor?: Redactor): Promise<number> {
    // The line first: what cannot be written leaves nothing behind in the state dir.
    const firstLine = `${redactor ? redactor.redactJson(entry) : JSON.stringify(entry)}\n`;
    const dir = runDir(this.stateDir, runId);
    await mkdir(dir, { mode: 0o700 });
    try {
      // `wx`: a run id is never appended to twice.
      const [journal] = await Promise.all([open(path.join(dir, JOURNAL_FILE), 'wx', 0o600), writeFile(path.join(dir, WORKFLOW_COPY), workflowSource, { mode: 0o600 })]);
      try {
        await journal.writeFile(firstLine);
        // The entry, then the names of the new file and folder. The three syncs are independent, so
        // they overlap, and with them the run's record (an index the next start reads: not synced).
        await Promise.all([journal.sync(), syncDir(dir), this.#runsDirSync.sync(), writeRunRecordAsync(this.stateDir, startRecord(entry, Buffer.byteLength(firstLine)), redactor)]);
      } finally {
        await journal.close();
      }
      return Buffer.byteLength(firstLine);
    } catch (error) {
      // The caller answers 500 and the sender delivers again: a half-written run must not be resumed at the next start.
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
  }
}

/**
 * Group commit for a folder every delivery adds to: callers that arrive while an fsync runs
 * share the next one (the running one may have started before their change), so a burst of
 * deliveries costs two fsyncs of `runs/`, not one each.
 */
class DirSync {
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  constructor(readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.#running) {
      this.#running = syncDir(this.dir).finally(() => (this.#running = undefined));
      return this.#running;
    }
    this.#next ??= this.#running
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.sync();
      });
    return this.#next;
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
