import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFerry } from '../../src/engine/runtime.js';
import { acquireRunLock, isAlive, lockHolder, processIdentity } from '../../src/store/lock.js';
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
});
