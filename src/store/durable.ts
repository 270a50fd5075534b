import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Redactor } from '../redact.js';
import { AcceptedLog, type AcceptedLogOptions } from './accepted.js';
import type { JournalEntry } from './journal.js';
import { JOURNAL_FILE, runDir, WORKFLOW_COPY } from './paths.js';

/**
 * Records new runs durably: the run folder, the workflow copy and the journal's first line are
 * written (not synced), then the `run` entry goes to the state dir's accepted log, and `record`
 * resolves once that line is fsynced. The listener answers 202 only after that, so an accepted
 * delivery survives a power cut: a run folder lost with it is written again from the log at the
 * next start. One recorder per state dir: deliveries that arrive together share one fsync.
 */
export class DurableRecorder {
  readonly log: AcceptedLog;

  constructor(
    readonly stateDir: string,
    options: AcceptedLogOptions = {},
  ) {
    this.log = new AcceptedLog(stateDir, options);
  }

  /**
   * Writes the run's folder with `entry` (its `run` entry, redacted) as the journal's first
   * line; resolves when the entry is durable in the accepted log.
   */
  async record(runId: string, workflowSource: string, entry: Extract<JournalEntry, { t: 'run' }>, redactor?: Redactor): Promise<number> {
    // The line first: what cannot be written leaves nothing behind in the state dir.
    const runText = redactor ? redactor.redactJson(entry) : JSON.stringify(entry);
    const firstLine = `${runText}\n`;
    const dir = runDir(this.stateDir, runId);
    await mkdir(dir, { mode: 0o700 });
    try {
      // `wx`: a run id is never appended to twice.
      // No run.json yet: the journal writes it when the run starts (a record replaced by rename
      // costs the file system a flush, two per run were the listener's largest cost), and a start
      // that finds a waiting run without one reads its one-line journal instead.
      await Promise.all([writeFile(path.join(dir, JOURNAL_FILE), firstLine, { flag: 'wx', mode: 0o600 }), writeFile(path.join(dir, WORKFLOW_COPY), workflowSource, { mode: 0o600 })]);
      // The folder is written before the log line: a line in the log always has its folder, or
      // had it until a crash took it (then `restore` writes it again).
      await this.log.append(runId, workflowSource, runText);
      return Buffer.byteLength(firstLine);
    } catch (error) {
      // The caller answers 500 and the sender delivers again: a half-written run must not be resumed at the next start.
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
  }

  /** Writes again the run folders a crash lost since the accepted lines were synced (see AcceptedLog.restore). */
  restore(): Promise<string[]> {
    return this.log.restore();
  }

  close(): Promise<void> {
    return this.log.close();
  }
}
