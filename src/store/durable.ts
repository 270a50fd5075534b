import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../errors.js';
import { AcceptedLog, type AcceptedLogOptions } from './accepted.js';
import { WorkflowCopies } from './copies.js';
import { runDir, WORKFLOW_COPY } from './paths.js';

/**
 * Records new runs durably: `record` appends the run's `run` entry to the state dir's accepted
 * log and resolves once that line is fdatasynced (with whatever else arrived meanwhile: group
 * commit). The listener answers 202 after that, so an accepted delivery survives a power cut.
 * The run's folder (the journal with that entry as its first line, and the workflow copy) is
 * written by `make` when the run starts: a burst of deliveries costs the file system one log
 * line each, not a folder and two files each before the answer. A run accepted but not made
 * when the listener stops or dies gets its folder from the log at the next start (`restore`).
 * One recorder per state dir.
 */
export class DurableRecorder {
  readonly log: AcceptedLog;
  /** Runs recorded, their folders not made yet: the journal's first line (without its newline) and the workflow source. */
  readonly #unmade = new Map<string, { runText: string; source: string }>();
  readonly #copies: WorkflowCopies;

  constructor(
    readonly stateDir: string,
    options: AcceptedLogOptions = {},
  ) {
    this.log = new AcceptedLog(stateDir, options);
    this.#copies = new WorkflowCopies(stateDir);
  }

  /**
   * Appends `runText` (the run's `run` entry as JSON, redacted) to the accepted log; resolves
   * with the size its journal will have once made (its first line), when the line is durable.
   */
  async record(runId: string, workflowSource: string, runText: string): Promise<number> {
    await this.log.append(runId, workflowSource, runText);
    this.#unmade.set(runId, { runText, source: workflowSource });
    return Buffer.byteLength(runText) + 1;
  }

  /** Whether the run was recorded here and its folder is not made yet. */
  unmade(runId: string): boolean {
    return this.#unmade.has(runId);
  }

  /**
   * Makes the folder of a run recorded here, with its workflow copy (a link, see WorkflowCopies),
   * not synced: the log line is what is durable until the log's segment is retired. Returns the
   * journal's first line: the run's journal creates the file with it (FileJournal's `first`),
   * and `started` is told once that is written.
   * A folder whose copy cannot be written is removed; the run stays in the log, and the next
   * start makes it and resumes the run.
   */
  async make(runId: string): Promise<string> {
    const unmade = this.#unmade.get(runId);
    if (!unmade) throw new Error(`run ${runId} was not recorded here, or its folder is made already`);
    const dir = runDir(this.stateDir, runId);
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // Only the next start of a listener writes folders from the log: one did, taking this run up.
      throw new FerryError('FERRY_RUN_BUSY', `run ${runId} was taken up by another runner while it waited here (a listener started on this state dir?); it is not run again`);
    }
    try {
      await this.#copies.put(path.join(dir, WORKFLOW_COPY), unmade.source);
    } catch (error) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
    this.#unmade.delete(runId);
    return `${unmade.runText}\n`;
  }

  /** The run's journal is written with its first line: the log no longer needs to keep it (see AcceptedLog.made). */
  started(runId: string): void {
    this.log.made(runId);
  }

  /** Writes again the run folders a crash lost, or a stop left unmade (see AcceptedLog.restore). */
  restore(): Promise<string[]> {
    return this.log.restore();
  }

  close(): Promise<void> {
    return this.log.close();
  }
}
