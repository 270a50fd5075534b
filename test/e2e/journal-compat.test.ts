import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { readJournal } from '../../src/store/journal.js';
import { assertBuilt, ferry, root } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// The journal a loop run with a failure and its resume writes, entry for entry. The fixture
// was written by ferry before run events existed (the engine appended entries itself); the
// journal is now a subscriber of the run's events, writes short lines (defaults left out,
// consecutive bare items on one line), and must read back as the same entries.
// FERRY_UPDATE_FIXTURES=1 writes the fixture again.
const FIXTURE = path.join(root, 'test/fixtures/journal/loop-failure-resume.jsonl');

let sandbox: Sandbox;
beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: ['amp-key-0123456789abcdef'] });
});
afterAll(async () => sandbox.close());

/** The journal's entries as read back, without what differs between two runs of the same thing: times, pids, ids and the folder. */
async function normalize(file: string, dir: string, runId: string): Promise<unknown[]> {
  const { entries, skipped } = await readJournal(file);
  expect(skipped).toBe(0);
  return entries
    .map((entry) => JSON.parse(JSON.stringify(entry).split(dir).join('<dir>').split(runId).join('<run>')) as Record<string, unknown>)
    .map((entry) => {
      const out: Record<string, unknown> = { ...entry };
      for (const key of ['at', 'startedAt', 'pid', 'ms', 'mtimeMs']) if (key in out) out[key] = 0;
      if (out.calls) out.calls = { ...(out.calls as object), waitedMs: 0 };
      const output = out.output as Record<string, unknown> | null | undefined;
      if (output && 'server_upload_time' in output) out.output = { ...output, server_upload_time: 0 };
      return out;
    });
}

/**
 * Runs a workflow with loops whose third row fails, then `ferry retry`s it; `beforeRetry` may
 * change the journal in between. Returns the journal's entries, normalized.
 */
async function failAndResume(beforeRetry?: (journalFile: string) => Promise<void>): Promise<unknown[]> {
  {
    const dir = await tempDir('ferry-journal-compat-');
    const env = { AMP_KEY: 'amp-key-0123456789abcdef', FERRY_STATE_DIR: path.join(dir, 'state') };
    await writeFile(path.join(dir, 'rows.jsonl'), ['user_r1', 'user_r2', 'user_r3', 'user_r4'].map((id) => JSON.stringify({ id })).join('\n'));
    await writeFile(
      path.join(dir, 'wf.yaml'),
      `name: compat
secrets: [AMP_KEY]
triggers:
  - type: manual
    inputs:
      users: { type: array }
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, batch: false }
retry: { attempts: 2, backoff: { initial: 5ms, max: 5ms } }
steps:
  - id: greet
    action: core.log
    with: { message: "hello" }
  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 1 }
    steps:
      - { id: ev, action: amplitude.send_event, with: { user_id: <<user>>, event_type: Seen } }
  - id: each_row
    loop: { file: rows.jsonl, as: row, concurrency: 1 }
    steps:
      - { id: say, action: core.log, with: { message: "row <<row.id>>" } }
      - { id: row_ev, action: amplitude.send_event, with: { user_id: <<row.id>>, event_type: Row } }
  - id: done
    action: core.log
    with: { message: "done <<steps.each_row.output.count>>" }
`,
    );
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_r3' });
    const first = await ferry(['run', path.join(dir, 'wf.yaml'), '--input', 'users=["user_a1","user_a2"]'], { env });
    expect(first.code).toBe(1);
    expect(first.stderr).toContain('step `row_ev`, loop item 2 (rows.jsonl line 3): amplitude answered 400');
    const runId = /ferry retry ([0-9A-Z]{26})/.exec(first.stderr)?.[1] ?? '';
    sandbox.amplitude.clearFaults();
    const journal = path.join(dir, 'state/runs', runId, 'journal.jsonl');
    await beforeRetry?.(journal);
    const retry = await ferry(['retry', runId], { env });
    expect(retry.code).toBe(0);
    return normalize(journal, dir, runId);
  }
}

async function fixture(): Promise<unknown[]> {
  return (await readFile(FIXTURE, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as unknown);
}

describe('the journal', () => {
  it('holds the same entries as before run events for a loop run that fails and is resumed', async () => {
    const entries = await failAndResume();
    if (process.env.FERRY_UPDATE_FIXTURES === '1') await writeFile(FIXTURE, `${entries.map((e) => JSON.stringify(e)).join('\n')}\n`);
    expect(entries).toEqual(await fixture());
  });

  it('resumes a journal an older ferry wrote, one full entry per line', async () => {
    const entries = await failAndResume(async (file) => {
      const { entries: written } = await readJournal(file);
      // Every field of every entry, as ferry wrote them before lines left defaults out.
      const full = written.map((e) => JSON.stringify(e.t === 'step' ? { t: e.t, id: e.id, item: e.item, status: e.status, output: e.output, ...(e.error ? { error: e.error } : {}), ms: e.ms, ...(e.calls ? { calls: e.calls } : {}) } : e));
      expect(full.some((line) => line.includes('"status":"succeeded","output":null'))).toBe(true);
      await writeFile(file, `${full.join('\n')}\n`);
    });
    expect(entries).toEqual(await fixture());
  });
});
