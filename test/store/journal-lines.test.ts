import { readFile } from 'node:fs/promises';
import { beforeEach, describe, expect, it } from 'vitest';
import { resumeStateFrom } from '../../src/engine/resume.js';
import { Redactor } from '../../src/redact.js';
import { FileJournal, readJournal, type JournalEntry, type StepEntry } from '../../src/store/journal.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const RUN_ID = '01JFXL00000000000000000000';
let stateDir: string;
beforeEach(async () => {
  stateDir = await tempDir('ferry-lines-');
});

const run: JournalEntry = {
  t: 'run',
  v: 1,
  runId: RUN_ID,
  workflow: 'lines',
  file: '/tmp/lines.yaml',
  startedAt: '2025-01-01T00:00:00.000Z',
  pid: 101,
  mode: 'live',
  inputs: {},
  trigger: { type: 'manual' },
  shape: [{ id: 'each', steps: [{ id: 'note' }, { id: 'ev' }, { id: 'skip' }] }],
};
const bare = (id: string, ...item: number[]): StepEntry => ({ t: 'step', id, item, status: 'succeeded', output: null, ms: 0 });

/** Writes `entries` through a FileJournal; returns the lines of the file and the entries read back. */
async function roundTrip(entries: JournalEntry[], redactor?: Redactor): Promise<{ lines: string[]; read: JournalEntry[] }> {
  const journal = FileJournal.create(stateDir, RUN_ID, 'name: lines\n', redactor);
  for (const entry of entries) journal.append(entry);
  journal.close();
  const text = await readFile(journal.path, 'utf8');
  const { entries: read, skipped } = await readJournal(journal.path);
  expect(skipped).toBe(0);
  return { lines: text.trim().split('\n'), read };
}

describe('journal lines', () => {
  it('writes items that succeeded with no output, calls or time as their position, consecutive ones as one line', async () => {
    const items = Array.from({ length: 5 }, (_, i) => bare('note', 3, i));
    const { lines } = await roundTrip([run, ...items, bare('note', 4, 0), bare('note', 4, 2)]);
    expect(lines.slice(1)).toEqual(['{"t":"step","id":"note","item":[3,0],"n":5}', '{"t":"step","id":"note","item":[4,0]}', '{"t":"step","id":"note","item":[4,2]}']);
  });

  it('leaves out the fields equal to their defaults, and writes a plain call summary as its count', async () => {
    const { lines } = await roundTrip([
      run,
      { t: 'step', id: 'ev', item: [0], status: 'succeeded', output: { ok: 1 }, ms: 12, calls: { calls: 1, attempts: 1, failures: {}, waitedMs: 0 } },
      { t: 'step', id: 'ev', item: [1], status: 'failed', output: null, ms: 30, calls: { calls: 1, attempts: 3, failures: { '429': 2 }, waitedMs: 20 }, error: { step: 'ev', item: 1, message: 'no' } },
    ]);
    expect(lines.slice(1)).toEqual([
      '{"t":"step","id":"ev","item":[0],"output":{"ok":1},"calls":1,"ms":12}',
      '{"t":"step","id":"ev","item":[1],"status":"failed","error":{"step":"ev","item":1,"message":"no"},"calls":{"calls":1,"attempts":3,"failures":{"429":2},"waitedMs":20},"ms":30}',
    ]);
  });

  it('reads back every entry as it was appended, and as much of it as an older journal held', async () => {
    const entries: JournalEntry[] = [
      run,
      ...Array.from({ length: 2500 }, (_, i) => bare('note', i)),
      { t: 'step', id: 'ev', item: [2000], status: 'skipped', output: null, ms: 0 },
      { t: 'step', id: 'ev', item: [2001], status: 'succeeded', output: 0, ms: 0, calls: { calls: 2, attempts: 2, failures: {}, waitedMs: 0 } },
      { t: 'step', id: 'ev', item: [2002], status: 'succeeded', output: { a: [1, 'x'] }, ms: 4 },
      { t: 'progress', id: 'each', item: [], done: 1000 },
      { t: 'step', id: 'each', item: [], status: 'succeeded', output: { count: 2500 }, ms: 40 },
      { t: 'end', status: 'succeeded', at: '2025-01-01T00:00:01.000Z', ms: 1000, error: null },
    ];
    const { lines, read } = await roundTrip(entries);
    expect(read).toEqual(entries);
    // 2,500 bare items: three lines of at most 1,024 positions each.
    expect(lines.filter((l) => l.startsWith('{"t":"step","id":"note"'))).toHaveLength(3);
    const resume = resumeStateFrom(read);
    expect(resume.get('note@2499')).toEqual({ status: 'succeeded', output: null, ms: 0 });
    expect(resume.get('ev@2001')).toEqual({ status: 'succeeded', output: 0, ms: 0 });
  });

  it('redacts secrets in outputs and errors but never an item position or a time that spells one', async () => {
    const redactor = new Redactor();
    redactor.add('1234');
    const { lines, read } = await roundTrip(
      [
        run,
        { t: 'step', id: 'ev', item: [1234], status: 'succeeded', output: { echo: 'pin 1234' }, ms: 1234 },
        { t: 'step', id: 'ev', item: [1235], status: 'failed', output: null, ms: 1, error: { step: 'ev', item: 1235, message: 'refused pin 1234' } },
        bare('note', 1234),
      ],
      redactor,
    );
    expect(lines.join('\n')).not.toContain('pin 1234');
    expect(read.slice(1)).toEqual([
      { t: 'step', id: 'ev', item: [1234], status: 'succeeded', output: { echo: 'pin [redacted]' }, ms: 1234 },
      { t: 'step', id: 'ev', item: [1235], status: 'failed', output: null, ms: 1, error: { step: 'ev', item: 1235, message: 'refused pin [redacted]' } },
      bare('note', 1234),
    ]);
    // The finished items resume as finished: their positions are intact.
    expect(resumeStateFrom(read).has('ev@1234')).toBe(true);
  });

  it('skips a bare line with a count it cannot trust, like any damaged line', async () => {
    const journal = FileJournal.create(stateDir, RUN_ID, 'name: lines\n');
    journal.append(run);
    journal.close();
    const { appendFile } = await import('node:fs/promises');
    await appendFile(journal.path, '{"t":"step","id":"note","item":[0],"n":-3}\n{"t":"step","id":"note","item":[],"n":2}\n{"t":"step","id":"note","item":[7],"n":2}\n');
    const { entries, skipped } = await readJournal(journal.path);
    expect(skipped).toBe(2);
    expect(entries.slice(1)).toEqual([bare('note', 7), bare('note', 8)]);
  });
});

describe('the write buffer', () => {
  it('reads back every entry when bare runs, long lines and multi-byte text cross many buffer flushes', async () => {
    const entries: JournalEntry[] = [run];
    // Bare runs of two, each line written as the next run starts: some of them fill the buffer.
    for (let i = 0; i < 30_000; i++) if (i % 3 !== 2) entries.push(bare('skip', i));
    for (let i = 0; i < 20_000; i++) {
      entries.push(bare('note', i));
      // A full line every 7th position closes the bare run; every 1000th is larger than the buffer.
      if (i % 7 === 6) entries.push({ t: 'step', id: 'ev', item: [i], status: 'succeeded', output: { text: i % 1000 === 999 ? 'ü€😀'.repeat(30_000) : `naïve ${i}` }, calls: { calls: 1, attempts: 1, failures: {}, waitedMs: 0 }, ms: 3 });
    }
    const { read } = await roundTrip(entries);
    expect(read).toEqual(entries);
  });
});
