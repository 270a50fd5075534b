import { mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { newRunId } from '../../src/engine/run-id.js';
import { AcceptedLog } from '../../src/store/accepted.js';
import { DurableRecorder } from '../../src/store/durable.js';
import type { JournalEntry } from '../../src/store/journal.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let stateDir: string;
beforeEach(async () => {
  stateDir = path.join(await tempDir('ferry-accepted-'), 'state');
  await mkdir(path.join(stateDir, 'runs'), { recursive: true }); // as the run manager's open leaves it
});

const SOURCE = 'name: w\nsteps: []\n';
function entry(runId: string, n: number): Extract<JournalEntry, { t: 'run' }> {
  return { t: 'run', v: 1, runId, workflow: 'w', file: 'w.yaml', startedAt: new Date(0).toISOString(), pid: 1, mode: 'live', inputs: { n }, trigger: { type: 'webhook', body: { n }, headers: {}, query: {} }, shape: [] };
}
const journal = (runId: string) => path.join(stateDir, 'runs', runId, 'journal.jsonl');
const segments = async () => (await readdir(path.join(stateDir, 'accepted'))).sort();
const lines = async (file: string) => (await readFile(path.join(stateDir, 'accepted', file), 'utf8')).trimEnd().split('\n');

async function record(recorder: DurableRecorder, n: number): Promise<{ runId: string; firstLine: string }> {
  const runId = newRunId();
  await recorder.record(runId, SOURCE, JSON.stringify(entry(runId, n)));
  return { runId, firstLine: `${JSON.stringify(entry(runId, n))}\n` };
}

/** What a run does when it starts: makes its folder, writes its journal's first line, and says so. */
async function start(recorder: DurableRecorder, run: { runId: string; firstLine: string }): Promise<void> {
  await writeFile(journal(run.runId), await recorder.make(run.runId));
  recorder.started(run.runId);
}

describe('accepted log', () => {
  it('lets runs accepted together share one fdatasync, and writes the workflow copy once per segment', async () => {
    const recorder = new DurableRecorder(stateDir);
    const runs = await Promise.all(Array.from({ length: 64 }, (_, n) => record(recorder, n)));
    // Group commit: the 64 lines went to disk in far fewer syncs than one each.
    expect(recorder.log.syncs).toBeGreaterThan(0);
    expect(recorder.log.syncs).toBeLessThan(32);
    const [segment] = await segments();
    const written = (await lines(segment as string)).map((l) => JSON.parse(l) as { t: string; run?: { runId: string } });
    expect(written.map((l) => l.t)).toEqual(['owner', 'workflow', ...runs.map(() => 'accepted')]);
    expect(written.slice(2).map((l) => l.run?.runId).sort()).toEqual(runs.map((r) => r.runId).sort());
    // No run folder yet: it is written when the run starts (make), not before the answer.
    expect(await readdir(path.join(stateDir, 'runs'))).toEqual([]);
    for (const r of runs) expect(recorder.unmade(r.runId)).toBe(true);
    // Made (not synced): the folder and workflow copy; the journal is created by the run with the logged entry.
    const firstLines = await Promise.all(runs.map((r) => recorder.make(r.runId)));
    expect(firstLines).toEqual(runs.map((r) => r.firstLine));
    for (const r of runs) {
      expect(await readFile(path.join(stateDir, 'runs', r.runId, 'workflow.yaml'), 'utf8')).toBe(SOURCE);
      expect(recorder.unmade(r.runId)).toBe(false);
    }
    await recorder.close();
  });

  it('writes at the next start the run folders a crash took or tore and those never made, leaves whole ones alone, then removes the segment', async () => {
    const recorder = new DurableRecorder(stateDir);
    const [lost, torn, whole, waiting] = [await record(recorder, 1), await record(recorder, 2), await record(recorder, 3), await record(recorder, 4)];
    for (const r of [lost, torn, whole]) await start(recorder, r!);
    await recorder.close();
    expect(await segments()).toEqual([expect.stringMatching(/\.closed\.jsonl$/)]);
    // What a power cut can do to files written but not synced.
    await rm(path.join(stateDir, 'runs', lost!.runId), { recursive: true });
    await truncate(journal(torn!.runId), 10);
    const ran = `${whole!.firstLine}{"t":"end"}\n`;
    await writeFile(journal(whole!.runId), ran);

    const again = new AcceptedLog(stateDir);
    expect(await again.restore()).toEqual([lost!.runId, torn!.runId, waiting!.runId].sort());
    expect(await readFile(journal(waiting!.runId), 'utf8')).toBe(waiting!.firstLine);
    expect(await readFile(journal(lost!.runId), 'utf8')).toBe(lost!.firstLine);
    expect(await readFile(journal(torn!.runId), 'utf8')).toBe(torn!.firstLine);
    expect(await readFile(journal(whole!.runId), 'utf8')).toBe(ran);
    expect(await readFile(path.join(stateDir, 'runs', lost!.runId, 'workflow.yaml'), 'utf8')).toBe(SOURCE);
    expect(JSON.parse(await readFile(path.join(stateDir, 'runs', lost!.runId, 'run.json'), 'utf8'))).toMatchObject({ runId: lost!.runId, status: 'running', journalBytes: Buffer.byteLength(lost!.firstLine) });
    // Retired in the background: the folders are fsynced, and the segment goes.
    await again.close();
    expect(await segments()).toEqual([]);
    expect(await new AcceptedLog(stateDir).restore()).toEqual([]);
  });

  it('leaves alone the segment of a listener that is still writing it', async () => {
    const writing = new DurableRecorder(stateDir);
    const r = await record(writing, 1);
    const other = new AcceptedLog(stateDir);
    expect(await other.restore()).toEqual([]);
    await other.close();
    expect(await segments()).toHaveLength(1);
    await writing.close();
    expect(await new AcceptedLog(stateDir).restore()).toEqual([r.runId]);
  });

  it('starts a new segment when one is full and retires the full one once its runs are made and synced', async () => {
    const recorder = new DurableRecorder(stateDir, { segmentBytes: 1 });
    const runs = [];
    for (let n = 0; n < 4; n++) runs.push(await record(recorder, n));
    // Each batch filled a segment; none is retired while its run has no folder.
    expect(await segments()).toHaveLength(4);
    await start(recorder, runs[0]!);
    // Made but its journal not written yet: the log keeps the run.
    await recorder.make(runs[1]!.runId);
    expect(await segments()).toHaveLength(4);
    await writeFile(journal(runs[1]!.runId), runs[1]!.firstLine);
    recorder.started(runs[1]!.runId);
    await recorder.close();
    // The first two were retired; the third (full, its run not made) and the last were closed.
    expect(await segments()).toEqual([expect.stringMatching(/\.closed\.jsonl$/), expect.stringMatching(/\.closed\.jsonl$/)]);
    const texts = await Promise.all((await segments()).map(lines));
    expect(texts.map((t) => t.map((l) => (JSON.parse(l) as { t: string; run?: { runId: string } }).run?.runId ?? (JSON.parse(l) as { t: string }).t))).toEqual([
      ['owner', 'workflow', runs[2]!.runId],
      ['owner', 'workflow', runs[3]!.runId],
    ]);
    // The next start makes their folders.
    expect(await new AcceptedLog(stateDir).restore()).toEqual([runs[2]!.runId, runs[3]!.runId].sort());
  });

  it('refuses a segment size that is not a positive integer', () => {
    expect(() => new AcceptedLog(stateDir, { segmentBytes: 0 })).toThrow('Expected `segmentBytes` to be a positive integer, got `0`');
  });
});
