import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ResumeFold, resumeStateFrom, type ResumeState } from '../../src/engine/resume.js';
import { JournalReader, readJournal, type JournalEntry, type StepShape } from '../../src/store/journal.js';
import { incompatibilities, loadRun, summarize } from '../../src/store/runs.js';
import { incompatibilitiesOf, resumeOf, summaryStepsOf, wholeFileRead } from './reference.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let stateDir: string;
beforeEach(async () => {
  stateDir = await tempDir('ferry-fold-');
});

const RUN_ID = '01JFXD00000000000000000000';
const journalPath = () => path.join(stateDir, 'runs', RUN_ID, 'journal.jsonl');

async function writeJournal(content: string | Buffer | JournalEntry[]): Promise<string> {
  await mkdir(path.dirname(journalPath()), { recursive: true });
  await writeFile(journalPath(), Array.isArray(content) ? content.map((e) => `${JSON.stringify(e)}\n`).join('') : content);
  return journalPath();
}

const runEntry = (shape: StepShape[], pid = 101): JournalEntry => ({
  t: 'run',
  v: 1,
  runId: RUN_ID,
  workflow: 'fold',
  file: '/tmp/fold.yaml',
  startedAt: '2025-01-01T00:00:00.000Z',
  pid,
  inputs: { note: 'héllo ✓ 🚀' },
  trigger: { type: 'manual' },
  shape,
});

describe('the streaming journal reader', () => {
  const good = JSON.stringify(runEntry([{ id: 'say' }]));
  const step = '{"t":"step","id":"say","item":[],"status":"succeeded","output":"ünïcødé 🚀 — ok","ms":3}';
  const source = '{"t":"source","id":"each","item":[],"path":"/d/rows.jsonl","size":10,"mtimeMs":1,"hash":"abc"}';
  const fixtures: [string, string | Buffer][] = [
    ['a torn last line', `${good}\n${step}\n{"t":"step","id":"sa`],
    ['garbage between entries', [good, 'null', '{"t":"step"}', '\u0000\u0001garbage', '42', '[]', step, '{"t":"nope"}'].join('\n')],
    ['CRLF line ends and blank lines', `${good}\r\n\r\n${step}\r\n\n\n${step}\r\n`],
    ['no newline at the end', `${good}\n${step}`],
    ['`source` entries, one without its hash', `${good}\n${source}\n${source.replace(',"hash":"abc"', '')}\n`],
    ['binary and invalid UTF-8', Buffer.concat([Buffer.from(`${good}\n`), Buffer.from([0x00, 0xff, 0xfe, 0x0a, 0xe2, 0x82, 0x0a, 0x7b, 0x80, 0x0a]), Buffer.from(`${step}\n`)])],
    ['a line longer than a chunk', `${good}\n${JSON.stringify({ t: 'step', id: 'say', item: [], status: 'succeeded', output: '€🚀'.repeat(50_000), ms: 1 })}\n${step}\n`],
    ['an empty file', ''],
  ];

  it.each(fixtures)('reads %s exactly like the whole-file reader, at any chunk size', async (_name, content) => {
    const file = await writeJournal(content);
    const expected = await wholeFileRead(file);
    // Tiny chunks split every line and every multi-byte character; the default splits none but the long line.
    for (const chunkBytes of content.length > 100_000 ? [64, 4096, undefined] : [1, 3, 7, 64, 4096, undefined]) {
      const reader = new JournalReader(file, chunkBytes === undefined ? {} : { chunkBytes });
      const entries: JournalEntry[] = [];
      for await (const entry of reader) entries.push(entry);
      expect({ entries, skipped: reader.skipped }).toEqual(expected);
      expect(reader.bytes).toBe(Buffer.byteLength(content));
    }
    expect(await readJournal(file)).toEqual(expected);
  });
});

/**
 * A run with nested loops over three attempts, as the engine journals it: failed items are
 * retried and succeed (one only in the third attempt), completed action steps are not
 * journaled again, inner loops are re-entered (and re-journaled) on every resume.
 */
function threeAttempts(): { shape: StepShape[]; attempts: JournalEntry[][] } {
  const shape: StepShape[] = [{ id: 'prep' }, { id: 'each', steps: [{ id: 'amp' }, { id: 'seg' }, { id: 'inner', steps: [{ id: 'deep' }] }] }, { id: 'report' }];
  const failing = new Map([
    [3, 2],
    [7, 2],
    [11, 3],
  ]); // item -> the attempt it first succeeds in
  const ok = (calls = 1) => ({ calls, attempts: calls, failures: {}, waitedMs: 0 });
  const attempt = (n: number): JournalEntry[] => {
    const out: JournalEntry[] = [n === 1 ? runEntry(shape) : { t: 'resume', at: `2025-01-0${n}T00:00:00.000Z`, pid: 100 + n }];
    if (n === 1) out.push({ t: 'step', id: 'prep', item: [], status: 'succeeded', output: { ready: true }, calls: ok(), ms: 5 });
    for (let i = 0; i < 20; i++) {
      const succeedsIn = failing.get(i) ?? 1;
      if (n < succeedsIn) {
        out.push({ t: 'step', id: 'amp', item: [i], status: 'failed', output: null, calls: { calls: 1, attempts: 3, failures: { 500: 2, [n === 1 ? 429 : 503]: 1 }, waitedMs: 30 * n }, error: { step: 'amp', item: i, message: `boom ${i}` }, ms: 9 });
      } else if (n === succeedsIn) {
        out.push({ t: 'step', id: 'amp', item: [i], status: 'succeeded', output: 'success', calls: ok(), ms: 2 });
        out.push({ t: 'step', id: 'seg', item: [i], status: i % 2 === 0 ? 'skipped' : 'succeeded', output: null, ...(i % 2 === 0 ? {} : { calls: ok() }), ms: 1 });
        for (let j = 0; j < 3; j++) out.push({ t: 'step', id: 'deep', item: [i, j], status: 'succeeded', output: j, ms: 1 });
      }
      // The inner loop is re-entered for every item that gets past `amp` in this attempt, and for resumed ones.
      if (n >= succeedsIn) out.push({ t: 'step', id: 'inner', item: [i], status: 'succeeded', output: { count: 3 }, ms: 1 });
    }
    const done = n === 3;
    out.push({ t: 'step', id: 'each', item: [], status: done ? 'succeeded' : 'failed', output: { count: 20 }, ...(done ? {} : { error: { step: 'amp', item: 3, message: 'boom 3' } }), ms: 40 });
    if (done) out.push({ t: 'step', id: 'report', item: [], status: 'succeeded', output: null, ms: 1 });
    out.push({ t: 'end', status: done ? 'succeeded' : 'failed', at: `2025-01-0${n}T00:01:00.000Z`, ms: 60_000, error: done ? null : { step: 'amp', item: 3, message: 'boom 3' } });
    return out;
  };
  return { shape, attempts: [attempt(1), attempt(2), attempt(3)] };
}

describe('folding a journal', () => {
  it('gives the summary the whole-journal summarize gave, after each attempt of a run whose failed items are retried', async () => {
    const { attempts } = threeAttempts();
    for (let n = 1; n <= 3; n++) {
      const entries = attempts.slice(0, n).flat();
      await writeJournal(entries);
      const run = (await loadRun(stateDir, RUN_ID))!;
      const summary = summarize(run);
      expect(summary.steps).toEqual(summaryStepsOf(entries));
      // Same order too: `ferry show` prints the steps in it.
      expect(JSON.stringify(summary.steps)).toBe(JSON.stringify(summaryStepsOf(entries)));
    }
    const last = summarize((await loadRun(stateDir, RUN_ID))!);
    expect(last.status).toBe('succeeded');
    expect(last.steps.each?.steps).toEqual({
      amp: { succeeded: 20, failed: 0, skipped: 0, calls: { calls: 20, attempts: 20, failures: {}, waitedMs: 0 } },
      seg: { succeeded: 10, failed: 0, skipped: 10, calls: { calls: 10, attempts: 10, failures: {}, waitedMs: 0 } },
      deep: { succeeded: 60, failed: 0, skipped: 0, calls: { calls: 0, attempts: 0, failures: {}, waitedMs: 0 } },
      inner: { succeeded: 20, failed: 0, skipped: 0, calls: { calls: 0, attempts: 0, failures: {}, waitedMs: 0 } },
    });
  });

  it('finds the same incompatibilities as the whole-journal check', async () => {
    const { attempts } = threeAttempts();
    const entries = attempts[0]!;
    await writeJournal(entries);
    const run = (await loadRun(stateDir, RUN_ID))!;
    const changed: StepShape[] = [{ id: 'amp' }, { id: 'each', steps: [{ id: 'seg' }, { id: 'inner', steps: [{ id: 'deep' }] }] }];
    expect(incompatibilities(run, changed)).toEqual(incompatibilitiesOf(entries, changed));
    expect(incompatibilities(run, changed)).toEqual(["step `prep` completed in this run but is no longer in the workflow", "step `amp` moved from loop `each` to the top level"]);
  });

  it('folds a journal whose `run` entry is not its first line against that run', async () => {
    const { attempts } = threeAttempts();
    const entries = attempts[0]!;
    const [first, ...rest] = entries;
    await writeJournal(`${JSON.stringify(rest[0])}\n${JSON.stringify(first)}\n${rest.map((e) => JSON.stringify(e)).join('\n')}\n`);
    const run = (await loadRun(stateDir, RUN_ID))!;
    expect(summarize(run).steps).toEqual(summaryStepsOf([rest[0]!, first!, ...rest]));
  });
});

describe('folding the resume state', () => {
  const plain = (state: ResumeState) => ({ state: Object.fromEntries(state), progress: Object.fromEntries(state.progress ?? []), sources: Object.fromEntries(state.sources ?? []) });

  /** A file loop of `rows` rows run 50 at a time and killed, then an array loop: progress marks trail the finished rows. */
  function fileLoopJournal(rows: number): JournalEntry[] {
    const shape: StepShape[] = [{ id: 'rows', steps: [{ id: 'send' }, { id: 'note' }] }, { id: 'list', steps: [{ id: 'post' }] }];
    const out: JournalEntry[] = [runEntry(shape), { t: 'source', id: 'rows', item: [], path: '/d/rows.jsonl', size: 1, mtimeMs: 1, hash: 'h' }];
    for (let i = 0; i < rows; i++) {
      // Rows finish out of order within the window of 50 in flight.
      const row = i - (i % 50) + 49 - (i % 50);
      out.push({ t: 'step', id: 'send', item: [row], status: row % 97 === 0 ? 'failed' : 'succeeded', output: null, ms: 1 });
      if (row % 97 !== 0) out.push({ t: 'step', id: 'note', item: [row], status: 'succeeded', output: null, ms: 1 });
      if (i % 1000 === 999) out.push({ t: 'progress', id: 'rows', item: [], done: Math.min(i - 200, 97 * Math.floor((i - 200) / 97)) });
    }
    for (let i = 0; i < 300; i++) out.push({ t: 'step', id: 'post', item: [i], status: 'succeeded', output: { i }, ms: 1 });
    return out;
  }

  it('streams to the same state as the whole-journal fold, holding only the rows over the progress mark', async () => {
    const entries = fileLoopJournal(30_000);
    await writeJournal(entries);
    const folding = new ResumeFold();
    await loadRun(stateDir, RUN_ID, (e) => folding.add(e));
    const streamed = folding.result();
    const expected = resumeOf(entries);
    expect(plain(streamed)).toEqual(expected);
    expect(plain(resumeStateFrom(entries))).toEqual(expected);
    // The 300 array items are kept (they are in memory anyway); of 30,000 rows only those over the mark.
    expect(streamed.size).toBeLessThan(300 + 2 * 1000);
    expect(streamed.progress?.get('rows@')).toBeGreaterThan(28_000);
  });
});
