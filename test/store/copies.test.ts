import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { WorkflowCopies } from '../../src/store/copies.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let stateDir: string;
beforeEach(async () => {
  stateDir = await tempDir('ferry-copies-');
});

const SOURCE = 'name: w\nsteps: []\n';

describe('workflow copies of listener runs', () => {
  it('are links to one owner-only file per source, so a run folder costs no inode for its copy', async () => {
    const copies = new WorkflowCopies(stateDir);
    const targets = ['a', 'b', 'c'].map((n) => path.join(stateDir, `${n}.yaml`));
    for (const t of targets) await copies.put(t, SOURCE);
    await copies.put(path.join(stateDir, 'other.yaml'), 'name: other\n');
    const inodes = await Promise.all(targets.map(async (t) => (await stat(t)).ino));
    expect(new Set(inodes).size).toBe(1);
    // Three run copies and the shared file itself.
    expect((await stat(targets[0]!)).nlink).toBe(4);
    expect(((await stat(targets[0]!)).mode & 0o777).toString(8)).toBe('600');
    for (const t of targets) expect(await readFile(t, 'utf8')).toBe(SOURCE);
    expect(await readFile(path.join(stateDir, 'other.yaml'), 'utf8')).toBe('name: other\n');
  });

  it('never link to a shared file that does not hold the source (torn by a crash), and survive its removal', async () => {
    const first = new WorkflowCopies(stateDir);
    await first.put(path.join(stateDir, 'a.yaml'), SOURCE);
    const [shared] = (await readdir(path.join(stateDir, 'copies'))).map((n) => path.join(stateDir, 'copies', n));
    // What a power cut can leave of a file renamed into place but not synced.
    await rm(shared!);
    await writeFile(shared!, '');
    const next = new WorkflowCopies(stateDir);
    await next.put(path.join(stateDir, 'b.yaml'), SOURCE);
    expect(await readFile(path.join(stateDir, 'b.yaml'), 'utf8')).toBe(SOURCE);
    expect(await readFile(path.join(stateDir, 'a.yaml'), 'utf8')).toBe(SOURCE);
    // Removed while the process runs: the next copy is written all the same.
    await rm(shared!);
    await next.put(path.join(stateDir, 'c.yaml'), SOURCE);
    expect(await readFile(path.join(stateDir, 'c.yaml'), 'utf8')).toBe(SOURCE);
  });
});
