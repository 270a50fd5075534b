import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { runDir, runsDir } from './paths.js';
import { stateDirError } from './state-dir.js';

export const LOCK_FILE = 'lock';

/** What `<run-dir>/lock` holds: who runs the run, told apart from a later process with the same pid. */
export interface LockHolder {
  pid: number;
  host: string;
  /** When the holder started holding locks: its first lock in this state dir (RunLocks), or this lock. */
  startedAt: string;
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22); absent off Linux. */
  procStart?: number;
  bootId?: string;
  /** Tells this holder's lock from another with the same pid (a takeover by the same process). */
  token: string;
  /** A backend's owner lease (backend/run-store.ts): alive while it exists in Redis, whatever /proc says. */
  lease?: true;
}

/**
 * Who this process is to another process that finds its lock: read from /proc once per
 * runtime (`processIdentity()`), not at every lock.
 */
export type ProcessIdentity = Pick<LockHolder, 'pid' | 'host' | 'procStart' | 'bootId'>;

/** This process's identity: its pid, host, start time and boot (the last two on Linux). */
export function processIdentity(): ProcessIdentity {
  const start = procStart(process.pid);
  const boot = bootId();
  return { pid: process.pid, host: hostname(), ...(start === undefined ? {} : { procStart: start }), ...(boot === undefined ? {} : { bootId: boot }) };
}

export interface RunLock {
  readonly holder: LockHolder;
  /** Removes the lock if it is still this one; safe to call twice. */
  release(): void;
}

/**
 * Takes the run's exclusive lock before anything is sent, so one run has one runner (CLI or
 * listener). A lock left by a process that is gone — or whose pid now belongs to another
 * program — is taken over. A live holder makes this throw FERRY_RUN_BUSY naming it.
 *
 * It is also the first thing every runner does to a run folder, so it makes the folder and
 * the state dir's runs/ owner-only (they hold webhook bodies and sender headers).
 */
export function acquireRunLock(stateDir: string, runId: string, self: ProcessIdentity = processIdentity()): RunLock {
  prepareRunDir(stateDir, runId, true);
  const me = selfHolder(self);
  const text = JSON.stringify(me);
  const file = lockFile(stateDir, runId);
  return takeLock(runId, file, me, {
    create: (target) => createExclusive(target, text, stateDir),
    replace: () => {
      const tmp = `${file}.${me.pid}.${me.token}`;
      writeFileSync(tmp, text, { mode: 0o600 });
      renameSync(tmp, file);
    },
    release: () => {
      const now = readHolder(file);
      if (typeof now === 'object' && now.token === me.token) unlinkQuietly(file);
    },
  });
}

/**
 * The run locks of one runtime. Each lock is a hard link to one holder file per state dir that
 * names this process (`<state-dir>/holders/<pid>-<token>`, written at its first lock there): one
 * link(2) a run, where a lock of its own is a file written aside, linked and unlinked (the
 * listener takes a lock for every delivery). A lock is this runtime's while it is a link to
 * that file (same inode). The holder files go at `close()`; one left by a killed process is
 * removed by the next runtime that makes its own in that state dir.
 */
export class RunLocks {
  readonly #identity: () => ProcessIdentity;
  /** State dir -> its holder file, or null where the file system has no hard links. */
  readonly #holders = new Map<string, Holder | null>();
  /** runs/ folders made owner-only by this runtime already. */
  readonly #checked = new Set<string>();

  constructor(identity: () => ProcessIdentity) {
    this.#identity = identity;
  }

  /**
   * acquireRunLock through this runtime's holder file. `made`: the run folder was made by this
   * process (owner-only) just before, so it needs no mkdir and no chmod.
   */
  acquire(stateDir: string, runId: string, options: { made?: boolean } = {}): RunLock {
    const holder = this.#holder(stateDir);
    if (!holder) return acquireRunLock(stateDir, runId, this.#identity());
    if (!options.made) prepareRunDir(stateDir, runId, !this.#checked.has(stateDir));
    this.#checked.add(stateDir);
    const file = lockFile(stateDir, runId);
    const link = (target: string): boolean => {
      try {
        linkSync(holder.file, target);
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw stateDirError(error, stateDir);
      }
    };
    return takeLock(runId, file, holder.holder, {
      create: link,
      replace: () => {
        const tmp = `${file}.${holder.holder.pid}.${holder.holder.token}`;
        unlinkQuietly(tmp);
        link(tmp);
        renameSync(tmp, file);
      },
      release: () => {
        // Still a link to the holder file: still this runtime's lock.
        let ino: number;
        try {
          ino = statSync(file).ino;
        } catch {
          return;
        }
        if (ino === holder.ino) unlinkQuietly(file);
      },
    });
  }

  /** Removes this runtime's holder files; locks still held stay valid (they are links of their own). */
  close(): void {
    for (const holder of this.#holders.values()) if (holder) unlinkQuietly(holder.file);
    this.#holders.clear();
  }

  #holder(stateDir: string): Holder | null {
    let holder = this.#holders.get(stateDir);
    if (holder !== undefined) return holder;
    holder = makeHolder(stateDir, selfHolder(this.#identity()));
    this.#holders.set(stateDir, holder);
    return holder;
  }
}

interface Holder {
  file: string;
  ino: number;
  holder: LockHolder;
}

/** Where holder files live: beside runs/, on the same file system (links cannot cross one). */
const HOLDERS_DIR = 'holders';

/** Writes this process's holder file, after removing those of processes that are gone; null where links fail. */
function makeHolder(stateDir: string, holder: LockHolder): Holder | null {
  const dir = path.join(stateDir, HOLDERS_DIR);
  const file = path.join(dir, `${holder.pid}-${holder.token}`);
  try {
    mkdirSync(runsDir(stateDir), { recursive: true, mode: 0o700 });
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(dir)) {
      const found = readHolder(path.join(dir, name));
      if (found === 'gone' || (found === 'unreadable' && ageMs(path.join(dir, name)) < 2000) || (typeof found === 'object' && isAlive(found))) continue;
      unlinkQuietly(path.join(dir, name));
    }
    // Written aside and renamed: a half-written holder is never linked as a lock.
    writeFileSync(`${file}.tmp`, JSON.stringify(holder), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
    // One link, made and removed, tells whether the file system has them.
    const probe = `${file}.link`;
    linkSync(file, probe);
    unlinkSync(probe);
    return { file, ino: statSync(file).ino, holder };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
      unlinkQuietly(file);
      return null;
    }
    throw stateDirError(error, stateDir);
  }
}

function lockFile(stateDir: string, runId: string): string {
  return path.join(runDir(stateDir, runId), LOCK_FILE);
}

/** Makes the run folder; `chmodRuns`: runs/ too is made owner-only (once per runtime is enough). */
function prepareRunDir(stateDir: string, runId: string, chmodRuns: boolean): void {
  const dir = runDir(stateDir, runId);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw stateDirError(error, stateDir);
  }
  // Folders made by an older ferry (or by another umask) become owner-only too; best effort:
  // a folder someone else owns stays as it is.
  for (const folder of chmodRuns ? [runsDir(stateDir), dir] : [dir]) {
    try {
      chmodSync(folder, 0o700);
    } catch {
      // not ours to change
    }
  }
}

interface LockWays {
  /** Creates the lock file at the path given if none is there; false when one is. */
  create(file: string): boolean;
  /** Puts this holder's lock in place of a stale one (atomically). */
  replace(): void;
  /** Removes the lock if it is still this holder's. */
  release(): void;
}

function takeLock(runId: string, file: string, me: LockHolder, ways: LockWays): RunLock {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (ways.create(file)) return lockOf(me, ways.release);
    const found = readHolder(file);
    if (found === 'gone') continue;
    if (found === 'unreadable') {
      // A lock being written right now is empty for a moment; one that stays unreadable is debris.
      if (ageMs(file) < 2000) {
        pause(20);
        continue;
      }
    } else if (isAlive(found)) {
      throw busy(runId, found, file);
    }
    // Stale: replace it under a guard named after the dead holder, so of several processes
    // seeing the same stale lock exactly one replaces it; the others find the new holder alive.
    const guard = `${file}.takeover-${found === 'unreadable' ? 'debris' : `${found.pid}-${found.procStart ?? found.token}`}`;
    if (!ways.create(guard)) {
      if (ageMs(guard) > 10_000) unlinkQuietly(guard);
      pause(10);
      continue;
    }
    try {
      const again = readHolder(file);
      const same = again === found || (typeof again === 'object' && typeof found === 'object' && again.token === found.token && again.pid === found.pid);
      if (same) {
        ways.replace();
        return lockOf(me, ways.release);
      }
    } finally {
      unlinkQuietly(guard);
    }
  }
  throw new UsageError(`could not take the lock ${file}: it keeps changing hands; try again`, 'FERRY_RUN_BUSY');
}

/**
 * Whether the run's lock is held by a live process. Used by `ferry runs`/`show`, so that a run
 * whose process died (or whose pid was reused) is never shown as running.
 */
export function lockHolder(stateDir: string, runId: string): LockHolder | 'none' | 'stale' {
  const found = readHolder(path.join(runDir(stateDir, runId), LOCK_FILE));
  if (found === 'gone') return 'none';
  if (found === 'unreadable') return 'stale';
  return isAlive(found) ? found : 'stale';
}

/** True when the process that wrote `holder` still runs (on another host: assumed, it cannot be checked). */
export function isAlive(holder: Pick<LockHolder, 'pid' | 'host' | 'procStart' | 'bootId'>): boolean {
  if (holder.host !== hostname()) return true;
  const boot = holder.bootId === undefined ? undefined : bootId();
  if (boot !== undefined && holder.bootId !== boot) return false;
  if (!pidExists(holder.pid)) return false;
  const now = procStart(holder.pid);
  // Same pid, other start time: the pid was reused by another program.
  if (holder.procStart !== undefined && now !== undefined) return now === holder.procStart;
  return true;
}

/** True for a pid that exists and looks like a node (ferry) process; for journal entries without a lock. */
export function isLikelyFerry(pid: number): boolean {
  if (!pidExists(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /node|ferry/.test(cmdline);
  } catch {
    return true;
  }
}

/** This process as a lock holder: what another process checks with isAlive. */
export function selfHolder(self: ProcessIdentity = processIdentity()): LockHolder {
  return { ...self, startedAt: new Date().toISOString(), token: randomBytes(6).toString('hex') };
}

function lockOf(holder: LockHolder, release: () => void): RunLock {
  let released = false;
  return {
    holder,
    release() {
      if (released) return;
      released = true;
      release();
    },
  };
}

/**
 * Creates `file` holding `text` only if it does not exist. Written aside and hard-linked into
 * place, so a reader never sees it half-written; `wx` where the file system has no links.
 */
function createExclusive(file: string, text: string, stateDir: string): boolean {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    try {
      linkSync(tmp, file);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw error;
    }
    try {
      writeFileSync(file, text, { flag: 'wx', mode: 0o600 });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw error;
    }
  } catch (error) {
    throw stateDirError(error, stateDir);
  } finally {
    unlinkQuietly(tmp);
  }
}

function readHolder(file: string): LockHolder | 'gone' | 'unreadable' {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'gone' : 'unreadable';
  }
  try {
    const parsed = JSON.parse(text) as Partial<LockHolder> | null;
    if (parsed && typeof parsed.pid === 'number' && typeof parsed.host === 'string' && typeof parsed.token === 'string') return parsed as LockHolder;
  } catch {
    // falls through
  }
  return 'unreadable';
}

function busy(runId: string, holder: LockHolder, file: string): UsageError {
  const where = holder.host === hostname() ? `pid ${holder.pid}` : `pid ${holder.pid} on host ${holder.host}`;
  const remote = holder.host === hostname() ? '' : ` (ferry cannot check a process on another host: if it is gone, delete ${file})`;
  return new UsageError(`run ${runId} is already being run by ${where} since ${holder.startedAt}; wait for it to finish or stop that process, then retry${remote}`, 'FERRY_RUN_BUSY');
}

function pidExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function procStart(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[19]);
    return Number.isFinite(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

function ageMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
