import { mkdir, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFerry } from '../../src/engine/runtime.js';
import { acquireRunLock, isAlive, lockHolder, processIdentity, RunLocks } from '../../src/store/lock.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const RUN_ID = '01JFXK00000000000000000000';

describe('run locks', () => {
  it('names the process by the identity its runtime read once', async () => {
    const ferry = createFerry();
    const identity = ferry.identity;
    expect(ferry.identity).toBe(identity);
    expect(identity).toEqual(processIdentity());
    expect(identity).toMatchObject({ pid: process.pid, host: hostname() });
    if (process.platform === 'linux') expect(identity.procStart).toEqual(expect.any(Number));

    const stateDir = await tempDir('ferry-lock-');
    const lock = acquireRunLock(stateDir, RUN_ID, identity);
    const written = JSON.parse(await readFile(path.join(stateDir, 'runs', RUN_ID, 'lock'), 'utf8')) as Record<string, unknown>;
    expect(written).toMatchObject({ ...identity, token: lock.holder.token });
    expect(isAlive(lock.holder)).toBe(true);
    expect(lockHolder(stateDir, RUN_ID)).toEqual(lock.holder);
    lock.release();
    expect(lockHolder(stateDir, RUN_ID)).toBe('none');
  });

  it('writes the identity it is given, not one it reads again: a lock of a process that is gone is stale', async () => {
    const stateDir = await tempDir('ferry-lock-');
    const self = processIdentity();
    // This process's pid with another start time: what a pid reused by another program looks like.
    const lock = acquireRunLock(stateDir, RUN_ID, { ...self, procStart: (self.procStart ?? 0) + 1, bootId: self.bootId ?? 'other-boot' });
    expect(lockHolder(stateDir, RUN_ID)).toBe(process.platform === 'linux' ? 'stale' : lock.holder);
    // So the next runner takes it over.
    const next = acquireRunLock(stateDir, RUN_ID);
    expect(lockHolder(stateDir, RUN_ID)).toEqual(next.holder);
    next.release();
  });

  it("a runtime's locks are links to its holder file: one per state dir, removed at close, and a dead process's removed by the next", async () => {
    const stateDir = await tempDir('ferry-lock-');
    const holders = path.join(stateDir, 'holders');
    // A holder file left by a process that is gone (its pid with another start time).
    const self = processIdentity();
    const dead = { ...self, procStart: (self.procStart ?? 0) + 1, bootId: self.bootId ?? 'other-boot', startedAt: '2024-01-01T00:00:00.000Z', token: 'deadbeef0000' };
    acquireRunLock(stateDir, RUN_ID).release(); // makes runs/
    await mkdir(holders, { recursive: true });
    await writeFile(path.join(holders, `${self.pid}-deadbeef0000`), JSON.stringify(dead));

    const locks = new RunLocks(() => self);
    const first = locks.acquire(stateDir, RUN_ID);
    const second = locks.acquire(stateDir, '01JFXK00000000000000000001');
    const files = await readdir(holders);
    if (process.platform === 'linux') expect(files).toEqual([`${self.pid}-${first.holder.token}`]);
    // Both locks are the holder file itself: one inode, three names.
    const holderFile = path.join(holders, `${self.pid}-${first.holder.token}`);
    expect((await stat(holderFile)).nlink).toBe(3);
    expect(second.holder).toBe(first.holder);
    expect(lockHolder(stateDir, RUN_ID)).toEqual(first.holder);
    // Another runtime (another process, as far as the lock can tell) finds the run busy.
    expect(() => acquireRunLock(stateDir, RUN_ID)).toThrow(/is already being run by pid/);

    first.release();
    expect(lockHolder(stateDir, RUN_ID)).toBe('none');
    // A lock that is no longer a link to the holder file (taken over meanwhile) is not removed.
    const mine = locks.acquire(stateDir, RUN_ID);
    await unlink(path.join(stateDir, 'runs', RUN_ID, 'lock'));
    const other = acquireRunLock(stateDir, RUN_ID);
    mine.release();
    expect(lockHolder(stateDir, RUN_ID)).toEqual(other.holder);
    other.release();

    locks.close();
    expect(await readdir(holders)).toEqual([]);
    // A lock still held keeps naming this process after close.
    expect(lockHolder(stateDir, '01JFXK00000000000000000001')).toEqual(first.holder);
    second.release();
    expect(lockHolder(stateDir, '01JFXK00000000000000000001')).toBe('none');
  });
});
