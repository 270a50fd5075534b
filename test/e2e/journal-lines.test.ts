import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { readJournal } from '../../src/store/journal.js';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let sandbox: Sandbox;
beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: ['amp-key-0123456789abcdef'] });
});
afterAll(async () => sandbox.close());

describe('short journal lines', () => {
  it('writes finished log steps of consecutive items as one line, and `ferry retry` skips each of them', async () => {
    const dir = await tempDir('ferry-journal-lines-');
    const env = { AMP_KEY: 'amp-key-0123456789abcdef', FERRY_STATE_DIR: path.join(dir, 'state') };
    await writeFile(
      path.join(dir, 'wf.yaml'),
      `name: lines
secrets: [AMP_KEY]
triggers:
  - type: manual
    inputs:
      users: { type: array }
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url} }
retry: { attempts: 1 }
steps:
  - id: each
    loop: { over: <<inputs.users>>, as: user, concurrency: 8 }
    steps:
      - { id: note, action: core.log, with: { message: "note <<user>>" } }
      - { id: ev, action: amplitude.send_event, with: { user_id: <<user>>, event_type: Seen } }
`,
    );
    const users = Array.from({ length: 40 }, (_, i) => `user_${1000 + i}`);
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_1020' });
    const first = await ferry(['run', path.join(dir, 'wf.yaml'), '--input', `users=${JSON.stringify(users)}`], { env });
    expect(first.code).toBe(1);
    const runId = /ferry retry ([0-9A-Z]{26})/.exec(first.stderr)?.[1] ?? '';
    const file = path.join(dir, 'state/runs', runId, 'journal.jsonl');
    const lines = (await readFile(file, 'utf8')).trim().split('\n');
    // The log steps of a batch's items finish together: one line says they all succeeded.
    expect(lines.some((l) => /^\{"t":"step","id":"note","item":\[\d+\],"n":\d+\}$/.test(l))).toBe(true);
    const { entries } = await readJournal(file);
    const done = new Set(entries.flatMap((e) => (e.t === 'step' && e.id === 'note' && e.status === 'succeeded' ? [e.item[0]] : [])));
    const sent = new Set(entries.flatMap((e) => (e.t === 'step' && e.id === 'ev' && e.status === 'succeeded' ? [e.item[0]] : [])));
    expect(done.size).toBeGreaterThan(8);

    sandbox.amplitude.clearFaults();
    const before = sandbox.amplitude.requests.length;
    const retry = await ferry(['retry', runId, '--json'], { env });
    expect(retry.code).toBe(0);
    // No finished log step runs again; only the events not stored go out.
    const logged = users.filter((u) => retry.stderr.includes(`note ${u}`)).map((u) => users.indexOf(u));
    expect(logged.filter((i) => done.has(i))).toEqual([]);
    expect(logged.length).toBe(40 - done.size);
    const resent = sandbox.amplitude.requests.slice(before).flatMap((r) => ((r.body as { events?: { user_id: string }[] }).events ?? []).map((e) => users.indexOf(e.user_id)));
    expect(resent.sort((a, b) => a - b)).toEqual(users.map((_, i) => i).filter((i) => !sent.has(i)));
    expect(JSON.parse(retry.stdout).steps.each.output.count).toBe(40);
  });
});
