import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { JournalEntry } from './journal.js';
import { isAlive, selfHolder, type LockHolder } from './lock.js';
import { isRunId, JOURNAL_FILE, runDir, runsDir, WORKFLOW_COPY } from './paths.js';
import { startRecord, writeRunRecordAsync } from './record.js';

/** `<state-dir>/accepted/`: the listener's log of accepted runs, in segments. */
export const ACCEPTED_DIR = 'accepted';
/** A segment its writer is still appending to (if its owner lives). */
const OPEN_SEGMENT = '.jsonl';
/** A segment its writer closed: whoever starts next makes its runs durable and removes it. */
const CLOSED_SEGMENT = '.closed.jsonl';
/** Run folders fsynced at once when a segment is retired: enough for the file system to group them. */
const RETIRE_CONCURRENCY = 16;

export interface AcceptedLogOptions {
  /** A segment this large is closed and retired; the next batch starts a new one. @default 16 MiB */
  segmentBytes?: number;
}

interface Segment {
  file: string;
  handle: FileHandle;
  /** Bytes written and synced: where the next batch goes, and where a failed one is cut back to. */
  size: number;
  runIds: string[];
  /** Its runs whose folders are not made yet (DurableRecorder.make): it is retired once there are none. */
  unmade: Set<string>;
  /** Takes no more lines (it is full, or a write to it failed): retired once its runs are made. */
  sealed: boolean;
  /** Workflow copies already in this segment, by id: each is written once per segment. */
  workflows: Set<string>;
}

interface Pending {
  source: string;
  runText: string;
  runId: string;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * The durable record of the listener's accepted runs: group commit. Each accepted run is one
 * line (its `run` entry, and the workflow copy once per segment); the lines of every delivery
 * that arrives while one fdatasync runs are written together and share the next one, so a
 * burst of deliveries costs one sync per batch, not three fsyncs each. The run's own folder
 * is written when the run starts (DurableRecorder.make, which tells `made`), without a sync;
 * should a crash or a stop come first, `restore` at the next start writes it from here. A full
 * segment is removed once its runs are made and their folders fsynced (`retire`, in the
 * background): the log stays as large as the runs not yet known durable in their folders.
 */
export class AcceptedLog {
  /** fdatasyncs of accepted lines so far: deliveries / syncs is what the grouping buys. */
  syncs = 0;
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #holder: LockHolder = selfHolder();
  readonly #workflowIds = new Map<string, string>();
  readonly #retiring = new Set<Promise<void>>();
  #segment: Segment | undefined;
  /** Sealed segments waiting for their runs to be made. */
  readonly #sealed = new Set<Segment>();
  /** Run id -> the segment holding its line, while its folder is not made. */
  readonly #segmentOf = new Map<string, Segment>();
  #pending: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #dirSynced = false;

  constructor(
    readonly stateDir: string,
    options: AcceptedLogOptions = {},
  ) {
    const segmentBytes = options.segmentBytes ?? 16 * 1024 * 1024;
    if (!Number.isInteger(segmentBytes) || segmentBytes < 1) throw new TypeError(`Expected \`segmentBytes\` to be a positive integer, got \`${String(segmentBytes)}\``);
    this.#segmentBytes = segmentBytes;
    this.#dir = path.join(stateDir, ACCEPTED_DIR);
  }

  /**
   * Appends a run's `run` entry (`runText`, one JSON line without its newline) and resolves once
   * it is on disk (fdatasynced), together with whatever else was appended meanwhile.
   */
  append(runId: string, source: string, runText: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ runId, source, runText, resolve, reject });
      this.#flushing ??= this.#flush();
    });
  }

  /**
   * Writes again, from segments no live listener is writing, the run folders a crash lost (or
   * left with a torn first line), and retires those segments in the background. Returns the
   * ids of the runs it wrote again. Run before the runs are read at start.
   */
  async restore(): Promise<string[]> {
    let names: string[];
    try {
      names = (await readdir(this.#dir)).filter((n) => n.endsWith(OPEN_SEGMENT)).sort();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    const restored: string[] = [];
    for (const name of names) {
      const file = path.join(this.#dir, name);
      const text = await readFile(file, 'utf8').catch(() => undefined);
      if (text === undefined) continue; // retired by another listener meanwhile
      const lines = text.split('\n');
      const owner = parseLine(lines[0] ?? '') as (LockHolder & { t: string }) | undefined;
      if (!name.endsWith(CLOSED_SEGMENT) && owner?.t === 'owner' && isAlive(owner)) continue;
      const sources = new Map<string, string>();
      const runs: { runText: string; source: string }[] = [];
      for (const line of lines.slice(1)) {
        // A torn last line was never answered 202: it was not synced.
        const value = parseLine(line);
        if (value?.t === 'workflow' && typeof value.id === 'string' && typeof value.source === 'string') sources.set(value.id, value.source);
        const source = value?.t === 'accepted' && typeof value.workflow === 'string' ? sources.get(value.workflow) : undefined;
        // The entry as it was written, byte for byte: the journal's first line is exactly this text.
        if (source !== undefined) runs.push({ runText: line.slice(line.indexOf('"run":') + 6, -1), source });
      }
      const runIds: string[] = [];
      await eachLimited(runs, RETIRE_CONCURRENCY, async ({ runText, source }) => {
        const runId = await this.#restoreRun(runText, source);
        if (runId === undefined) return;
        runIds.push(runId.id);
        if (runId.restored) restored.push(runId.id);
      });
      this.#retire(file, runIds);
    }
    return restored.sort();
  }

  /** The folder of `runId` (appended here) is written: its segment may be retired once all its runs are. */
  made(runId: string): void {
    const segment = this.#segmentOf.get(runId);
    if (!segment) return;
    this.#segmentOf.delete(runId);
    segment.unmade.delete(runId);
    if (segment.sealed && segment.unmade.size === 0) {
      this.#sealed.delete(segment);
      this.#retire(segment.file, segment.runIds, segment.handle);
    }
  }

  /**
   * Waits for the batch being written and closes the segments: the next start retires them,
   * writing the folders of the runs not made by then (`restore`). Waits for retirements.
   */
  async close(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    const open = [...this.#sealed, ...(this.#segment ? [this.#segment] : [])];
    this.#segment = undefined;
    this.#sealed.clear();
    this.#segmentOf.clear();
    for (const segment of open) {
      await segment.handle.close().catch(() => undefined);
      await rename(segment.file, segment.file.slice(0, -OPEN_SEGMENT.length) + CLOSED_SEGMENT).catch(() => undefined);
    }
    while (this.#retiring.size > 0) await Promise.allSettled([...this.#retiring]);
  }

  /** `segment` takes no more lines; retired now if its runs are all made, else by the last `made`. */
  #seal(segment: Segment): void {
    if (this.#segment === segment) this.#segment = undefined;
    segment.sealed = true;
    if (segment.unmade.size === 0) this.#retire(segment.file, segment.runIds, segment.handle);
    else this.#sealed.add(segment);
  }

  async #flush(): Promise<void> {
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending;
        this.#pending = [];
        try {
          await this.#write(batch);
          for (const p of batch) p.resolve();
        } catch (error) {
          for (const p of batch) p.reject(error);
        }
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  async #write(batch: Pending[]): Promise<void> {
    let segment = this.#segment;
    if (segment && segment.size >= this.#segmentBytes) {
      this.#seal(segment);
      segment = undefined;
    }
    segment ??= this.#segment = await this.#create();
    const added = new Set<string>();
    let text = '';
    for (const { source, runText } of batch) {
      const id = this.#workflowId(source);
      if (!segment.workflows.has(id) && !added.has(id)) {
        text += `${JSON.stringify({ t: 'workflow', id, source })}\n`;
        added.add(id);
      }
      text += `{"t":"accepted","workflow":"${id}","run":${runText}}\n`;
    }
    const data = Buffer.from(text);
    try {
      let done = 0;
      while (done < data.length) done += (await segment.handle.write(data, done, data.length - done, segment.size + done)).bytesWritten;
      await segment.handle.datasync();
    } catch (error) {
      // These deliveries are answered 500: no line of them may be restored later. Cut back to
      // the last synced batch; the segment is then sealed and retired once its runs are made
      // (their folders made durable, the file removed), so that what could not be cut goes too.
      await segment.handle.truncate(segment.size).catch(() => undefined);
      this.#seal(segment);
      throw error;
    }
    this.syncs++;
    segment.size += data.length;
    for (const id of added) segment.workflows.add(id);
    for (const p of batch) {
      segment.runIds.push(p.runId);
      segment.unmade.add(p.runId);
      this.#segmentOf.set(p.runId, segment);
    }
  }

  /** A new segment, its owner line first: written aside and renamed, so no reader sees it without one. */
  async #create(): Promise<Segment> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const file = path.join(this.#dir, `${Date.now().toString(36)}-${process.pid}-${randomBytes(4).toString('hex')}${OPEN_SEGMENT}`);
    const head = Buffer.from(`${JSON.stringify({ t: 'owner', ...this.#holder })}\n`);
    const tmp = `${file}.tmp`;
    const handle = await open(tmp, 'wx', 0o600);
    try {
      await handle.write(head, 0, head.length, 0);
      await handle.datasync();
      await rename(tmp, file);
      // The segment's name, and the first time the folder's own, must survive what it will hold.
      await syncPath(this.#dir);
      if (!this.#dirSynced) await syncPath(this.stateDir);
      this.#dirSynced = true;
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      throw error;
    }
    return { file, handle, size: head.length, runIds: [], unmade: new Set(), sealed: false, workflows: new Set() };
  }

  #workflowId(source: string): string {
    let id = this.#workflowIds.get(source);
    if (id === undefined) {
      id = createHash('sha256').update(source).digest('hex').slice(0, 16);
      this.#workflowIds.set(source, id);
    }
    return id;
  }

  /**
   * Writes a run's folder again where it is missing or its journal is empty or torn (shorter
   * than its first line); a journal with more in it is the run's own and is left alone.
   */
  async #restoreRun(runText: string, source: string): Promise<{ id: string; restored: boolean } | undefined> {
    const entry = parseLine(runText) as Extract<JournalEntry, { t: 'run' }> | undefined;
    if (entry?.t !== 'run' || typeof entry.runId !== 'string' || !isRunId(entry.runId)) return undefined;
    const dir = runDir(this.stateDir, entry.runId);
    const firstLine = Buffer.from(`${runText}\n`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const journal = path.join(dir, JOURNAL_FILE);
    const head = await readHead(journal, firstLine.length + 1);
    const intact = head !== undefined && head.length >= firstLine.length && head.subarray(0, firstLine.length).equals(firstLine);
    const restore = !intact && (head === undefined || head.length <= firstLine.length);
    const copy = path.join(dir, WORKFLOW_COPY);
    const copyHead = await readHead(copy, 1);
    if (copyHead === undefined || (copyHead.length === 0 && source !== '')) await writeFile(copy, source, { mode: 0o600 });
    if (restore) {
      await writeFile(journal, firstLine, { mode: 0o600 });
      await writeRunRecordAsync(this.stateDir, startRecord(entry, firstLine.length));
    }
    return { id: entry.runId, restored: restore };
  }

  /**
   * Makes the runs of a segment durable in their own folders (journal, workflow copy, the
   * folder's names), then removes the segment. A failure leaves it for the next start.
   */
  #retire(file: string, runIds: readonly string[], handle?: FileHandle): void {
    const { stateDir } = this;
    const done: Promise<void> = (async () => {
      await handle?.close().catch(() => undefined);
      await eachLimited(runIds, RETIRE_CONCURRENCY, async (runId) => {
        const dir = runDir(stateDir, runId);
        await Promise.all([syncPath(path.join(dir, JOURNAL_FILE)), syncPath(path.join(dir, WORKFLOW_COPY)), syncPath(dir)]);
      });
      await syncPath(runsDir(stateDir));
      await unlink(file);
    })()
      .catch(() => undefined)
      .finally(() => this.#retiring.delete(done));
    this.#retiring.add(done);
  }
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The first `bytes` bytes of a file (fewer if it is shorter), or undefined when it does not exist. */
async function readHead(file: string, bytes: number): Promise<Buffer | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** fsync of a file or folder; one that is gone (a run folder removed after a failed accept) has nothing to sync. */
export async function syncPath(file: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function eachLimited<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
