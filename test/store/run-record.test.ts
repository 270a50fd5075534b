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

describe("a run's record", () => {
  it('is created in place when the run starts, and replaced whole (aside, then renamed) when it ends', async () => {
    const stateDir = await tempDir('ferry-record-');
    const dir = path.join(stateDir, 'runs', RUN_ID);
    await mkdir(dir, { recursive: true });
    // Every name the run folder sees: a record written aside shows up as run.json.<pid>.<hex>.
    const names: string[] = [];
    const watcher = watch(dir, (_event, name) => names.push(String(name)));
    try {
      const journal = new FileJournal(path.join(dir, 'journal.jsonl'));
      journal.append(run);
      const started = readRunRecord(stateDir, RUN_ID);
      expect(started).toMatchObject({ status: 'running', steps: {} });
      expect((await stat(path.join(dir, 'run.json'))).mode & 0o777).toBe(0o600);
      journal.append({ t: 'step', id: 'say', item: [], status: 'succeeded', output: null, ms: 1 });
      journal.append({ t: 'end', status: 'succeeded', at: '2025-01-01T00:00:01.000Z', ms: 1000, error: null });
      journal.close();
      const ended = JSON.parse(await readFile(path.join(dir, 'run.json'), 'utf8')) as Record<string, unknown>;
      expect(ended).toMatchObject({ status: 'succeeded', steps: { say: 'succeeded' }, journalBytes: (await stat(journal.path)).size });
      // Events come in order: once the watcher heard of a file made after the run, it heard all of the run's.
      await writeFile(path.join(dir, 'sentinel'), '');
      await expect.poll(() => names.includes('sentinel'), { timeout: 10_000 }).toBe(true);
    } finally {
      watcher.close();
    }
    expect(new Set(names.filter((n) => n.startsWith('run.json.'))).size).toBe(1);
  });
});
