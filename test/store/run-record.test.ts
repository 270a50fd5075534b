import { watch } from 'node:fs';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileJournal, type JournalEntry } from '../../src/store/journal.js';
import { readRunRecord } from '../../src/store/record.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const RUN_ID = '01JFXR00000000000000000000';
const run: JournalEntry = {
  t: 'run',
  v: 1,
  runId: RUN_ID,
  workflow: 'records',
  file: '/tmp/records.yaml',
  startedAt: '2025-01-01T00:00:00.000Z',
  pid: process.pid,
  mode: 'live',
  inputs: {},
  trigger: { type: 'manual' },
  shape: [{ id: 'say' }],
};

/** The run's one step, and its end. */
const SAID: JournalEntry = { t: 'step', id: 'say', item: [], status: 'succeeded', output: null, ms: 1 };
const ENDED: JournalEntry = { t: 'end', status: 'succeeded', at: '2025-01-01T00:00:01.000Z', ms: 1000, error: null };

describe("a run's record", () => {
  /** Every name the run folder sees while `work` runs: a record written aside shows up as run.json.<pid>.<hex>. */
  async function namesSeen(dir: string, work: () => Promise<void>): Promise<string[]> {
    const names: string[] = [];
    const watcher = watch(dir, (_event, name) => names.push(String(name)));
    try {
      await work();
      // Events come in order: once the watcher heard of a file made after the run, it heard all of the run's.
      await writeFile(path.join(dir, 'sentinel'), '');
      await expect.poll(() => names.includes('sentinel'), { timeout: 10_000 }).toBe(true);
    } finally {
      watcher.close();
    }
    return names;
  }

  /** A state dir with the folder of RUN_ID in it. */
  async function runFolder(): Promise<{ stateDir: string; dir: string }> {
    const stateDir = await tempDir('ferry-record-');
    const dir = path.join(stateDir, 'runs', RUN_ID);
    await mkdir(dir, { recursive: true });
    return { stateDir, dir };
  }

  it("is written before the run's first provider call, created in place, and replaced whole (aside, then renamed) when it ends", async () => {
    const { stateDir, dir } = await runFolder();
    const names = await namesSeen(dir, async () => {
      const journal = new FileJournal(path.join(dir, 'journal.jsonl'));
      journal.append(run);
      // The runtime flushes the journal before each provider call: a run waiting on one is listed from its record.
      journal.flush();
      const started = readRunRecord(stateDir, RUN_ID);
      expect(started).toMatchObject({ status: 'running', steps: {} });
      expect((await stat(path.join(dir, 'run.json'))).mode & 0o777).toBe(0o600);
      journal.append(SAID);
      journal.append(ENDED);
      journal.close();
      const ended = JSON.parse(await readFile(path.join(dir, 'run.json'), 'utf8')) as Record<string, unknown>;
      expect(ended).toMatchObject({ status: 'succeeded', steps: { say: 'succeeded' }, journalBytes: (await stat(journal.path)).size });
    });
    expect(new Set(names.filter((n) => n.startsWith('run.json.'))).size).toBe(1);
  });

  it('of a run that ends within a second and calls no provider is written once, at its end, in place', async () => {
    const { stateDir, dir } = await runFolder();
    const names = await namesSeen(dir, async () => {
      const journal = new FileJournal(path.join(dir, 'journal.jsonl'));
      journal.append(run);
      journal.append(SAID);
      await new Promise((resolve) => setImmediate(resolve));
      // Not yet: until the run ends, a reader finds no record and reads the (short) journal.
      expect(readRunRecord(stateDir, RUN_ID)).toBeUndefined();
      journal.append(ENDED);
      journal.close();
      expect(readRunRecord(stateDir, RUN_ID)).toMatchObject({ status: 'succeeded', steps: { say: 'succeeded' }, journalBytes: (await stat(journal.path)).size });
    });
    expect(names.filter((n) => n.startsWith('run.json.'))).toEqual([]);
  });

  it('of a run still going a second after it started is written then, at its next journal write', async () => {
    const { stateDir, dir } = await runFolder();
    const journal = new FileJournal(path.join(dir, 'journal.jsonl'));
    try {
      journal.append(run);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      expect(readRunRecord(stateDir, RUN_ID)).toBeUndefined();
      journal.append(SAID);
      await expect.poll(() => readRunRecord(stateDir, RUN_ID)).toMatchObject({ status: 'running' });
    } finally {
      journal.close();
    }
  });
});
