import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { resumeStateFrom, runWorkflow } from '../../src/engine/run.js';
import { createFerry } from '../../src/engine/runtime.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import type { JournalEntry, RunJournal } from '../../src/store/journal.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { sandboxProviders } from '../helpers/sandbox.js';
import { workflowFrom } from '../helpers/workflow.js';

let sandbox: Sandbox;
let dir: string;
beforeAll(async () => {
  sandbox = await startSandbox();
  dir = await mkdtemp(path.join(tmpdir(), 'ferry-onerror-engine-'));
});
afterAll(async () => {
  await sandbox.close();
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
});

const ids = Array.from({ length: 10 }, (_, i) => `user_${10_000 + i}`);
const registry = builtinRegistry();

/** Each row is sent to Segment, then to Amplitude, whose failures are set aside. */
async function workflow(): Promise<ReturnType<typeof workflowFrom>> {
  await writeFile(path.join(dir, 'rows.csv'), `id\n${ids.join('\n')}\n`);
  return workflowFrom(
    `
name: aside
retry: { attempts: 1 }
${sandboxProviders(sandbox)}
steps:
  - id: each
    loop: { file: rows.csv, as: row }
    steps:
      - id: seg
        action: segment.identify_user
        with: { userId: <<row.id>> }
      - id: amp
        action: amplitude.identify_user
        on_error: continue
        with: { user_id: <<row.id>> }
`,
    registry,
    path.join(dir, 'aside.yaml'),
  );
}

const memory = (entries: JournalEntry[]): RunJournal => ({ append: (e) => entries.push(e), close: () => undefined });
const ampUsers = (): string[] => sandbox.amplitude.identifications.map((i) => String(i.user_id)).sort();
const segUsers = (): string[] => sandbox.segment.requests.map((r) => String((r.body as { userId?: string }).userId)).sort();

describe('on_error: continue across attempts of one run', () => {
  it('keeps set-aside items failed when a killed run is taken up again, and sends only them (not their finished steps) on `ferry retry`', async () => {
    const wf = await workflow();
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10002' });
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10006' });
    const entries: JournalEntry[] = [];
    const first = await runWorkflow(wf, { ferry: createFerry({ registry }), journal: memory(entries), runId: 'R1' });
    expect(first).toMatchObject({ status: 'failed', failed_items: 2, error: { step: 'amp', code: 'FERRY_ITEMS_FAILED' } });
    const aside = entries.filter((e) => e.t === 'item');
    expect(aside).toMatchObject([
      { id: 'each', item: [2], status: 'failed', step: 'amp', line: 4, value: { id: 'user_10002' } },
      { id: 'each', item: [6], status: 'failed', line: 8 },
    ]);

    // Killed right after row 2 was set aside: the rows that had not finished by then run
    // again; row 2 stays failed without being sent again, row 6 fails anew.
    const cut = entries.findIndex((e) => e.t === 'item' && e.item[0] === 2);
    const killed = entries.slice(0, cut + 1);
    const ran = (id: string): Set<number> => new Set(killed.flatMap((e) => (e.t === 'step' && e.id === id ? [e.item[0] as number] : [])));
    const ampDone = ran('amp');
    const segDone = ran('seg');
    expect(ampDone.size).toBeLessThan(10);
    sandbox.amplitude.reset();
    sandbox.segment.reset();
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10006' });
    const takenUp = await runWorkflow(wf, { ferry: createFerry({ registry }), journal: memory(killed), runId: 'R1', resume: resumeStateFrom(entries.slice(0, cut + 1)) });
    expect(takenUp).toMatchObject({ status: 'failed', failed_items: 2 });
    expect(ampUsers()).toEqual(ids.filter((id, i) => !ampDone.has(i) && id !== 'user_10006'));
    expect(segUsers()).toEqual(ids.filter((_, i) => !segDone.has(i)));
    expect(ampUsers()).not.toContain('user_10002');

    // `ferry retry` once the cause is fixed: rows 2 and 6 go to Amplitude again, and only there.
    sandbox.amplitude.reset();
    sandbox.segment.reset();
    const retried = await runWorkflow(wf, { ferry: createFerry({ registry }), journal: memory(killed), runId: 'R1', resume: resumeStateFrom(killed), resendFailed: true });
    expect(retried.status).toBe('succeeded');
    expect(retried.failed_items).toBeUndefined();
    expect(ampUsers()).toEqual(['user_10002', 'user_10006']);
    expect(segUsers()).toEqual([]);
    expect(killed.filter((e) => e.t === 'item' && e.status === 'succeeded').map((e) => (e as { item: number[] }).item)).toEqual([[2], [6]]);
    // Nothing is left to send.
    sandbox.amplitude.reset();
    const done = await runWorkflow(wf, { ferry: createFerry({ registry }), runId: 'R1', resume: resumeStateFrom(killed), resendFailed: true });
    expect(done.status).toBe('succeeded');
    expect(sandbox.amplitude.requests).toEqual([]);
  });
});

describe('on_error: continue in a loop of one step', () => {
  it('sets aside a row whose input is refused before any call and a row whose call fails, with their lines, and sends the others', async () => {
    await writeFile(path.join(dir, 'one.csv'), `id,event\n${ids.map((id, i) => `${id},${i === 3 ? '' : 'Seen'}`).join('\n')}\n`);
    const wf = workflowFrom(
      `
name: one-step
retry: { attempts: 1 }
${sandboxProviders(sandbox)}
steps:
  - id: each
    loop: { file: one.csv, as: row, concurrency: 4 }
    steps:
      - id: track
        action: segment.track
        on_error: continue
        with: { userId: <<row.id>>, event: <<row.event>> }
`,
      registry,
      path.join(dir, 'one.yaml'),
    );
    sandbox.segment.inject({ kind: 'reject-user', userId: 'user_10007' });
    const entries: JournalEntry[] = [];
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), journal: memory(entries), runId: 'R2' });
    expect(summary).toMatchObject({ status: 'failed', failed_items: 2, error: { step: 'track', code: 'FERRY_ITEMS_FAILED' } });
    const aside = entries.flatMap((e) => (e.t === 'item' ? [e] : [])).sort((a, b) => (a.item[0] as number) - (b.item[0] as number));
    expect(aside).toMatchObject([
      { id: 'each', item: [3], status: 'failed', step: 'track', line: 5, error: { message: expect.stringMatching(/loop item 3 \(one.csv line 5\): invalid input/) as unknown } },
      { id: 'each', item: [7], status: 'failed', step: 'track', line: 9, error: { status: 400 } },
    ]);
    const tracked = entries.flatMap((e) => (e.t === 'step' && e.id === 'track' ? [e] : []));
    expect(tracked).toHaveLength(10);
    expect(tracked.filter((e) => e.status === 'failed').map((e) => e.item[0])).toEqual(expect.arrayContaining([3, 7]) as unknown);
    expect(tracked.filter((e) => e.status === 'failed')).toHaveLength(2);
    const sent = sandbox.segment.requests.flatMap((r) => (r.path === '/v1/batch' ? (r.body as { batch: { userId: string }[] }).batch : [r.body as { userId: string }]));
    expect(new Set(sent.map((m) => m.userId))).toEqual(new Set(ids.filter((_, i) => i !== 3)));
  });
});
