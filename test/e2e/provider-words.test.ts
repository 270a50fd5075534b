import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const AMP_KEY = 'amp-key-0123456789abcdef';
const SEG_KEY = 'seg-key-0123456789abcdef';

let sandbox: Sandbox;
let server: Awaited<ReturnType<typeof startServer>>;
let dir: string;
let stateDir: string;

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY], segmentWriteKeys: [SEG_KEY] });
  // An API that fails with a JSON error body, and one whose body echoes the credential.
  server = await startServer((req, res) => {
    if (req.url.startsWith('/echo')) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: `token ${String(req.headers['x-token'])} is not allowed here`, request_id: 'req-42' }));
      return;
    }
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end('{"error":"boom"}');
  });
});
afterAll(async () => {
  await sandbox.close();
  await server.close();
});
beforeEach(async () => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
  dir = await tempDir('ferry-words-');
  stateDir = path.join(dir, 'state');
});

const env = (): Record<string, string> => ({ AMP_KEY, SEG_KEY, CRM_TOKEN: 'crm-tok-5up3r5ecret', FERRY_STATE_DIR: stateDir });
const users = (n: number): { id: string }[] => Array.from({ length: n }, (_, i) => ({ id: `user_${10_000 + i}` }));

async function workflow(steps: string): Promise<string> {
  const file = path.join(dir, 'wf.yaml');
  await writeFile(
    file,
    `name: words
secrets: [AMP_KEY, SEG_KEY, CRM_TOKEN]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, concurrency: 8, batch: true }
  segment: { write_key: "<<secrets.SEG_KEY>>", base_url: ${sandbox.segment.url}, concurrency: 8 }
retry: { attempts: 2, backoff: { initial: 5ms, max: 20ms } }
steps:
${steps}`,
  );
  return file;
}

interface Failed {
  summary: { runId: string; error: { step: string; item: number | null; message: string; provider?: Record<string, unknown> } };
  /** The journal's entry of the failed step. */
  entry: { error: { message: string; provider?: Record<string, unknown> } };
  show: string;
  showJson: { error: { provider?: Record<string, unknown> } };
  everything: string;
}

/** Runs a workflow that fails; returns its `--json` summary, the failed step's journal entry and `ferry show`. */
async function runFailing(file: string, inputs: string[] = []): Promise<Failed> {
  const run = await ferry(['run', file, '--json', ...inputs], { env: env() });
  expect(run.code, run.stderr).toBe(1);
  const summary = JSON.parse(run.stdout) as Failed['summary'];
  const journal = await readFile(path.join(stateDir, 'runs', summary.runId, 'journal.jsonl'), 'utf8');
  const entries = journal.trim().split('\n').map((l) => JSON.parse(l) as { t: string; id?: string; status?: string } & Failed['entry']);
  const entry = entries.find((e) => e.t === 'step' && e.id === summary.error.step && e.status === 'failed');
  expect(entry).toBeDefined();
  const show = await ferry(['show', summary.runId], { env: { FERRY_STATE_DIR: stateDir } });
  const showJson = await ferry(['show', summary.runId, '--json'], { env: { FERRY_STATE_DIR: stateDir } });
  return { summary, entry: entry as Failed['entry'], show: show.stdout, showJson: JSON.parse(showJson.stdout) as Failed['showJson'], everything: run.stdout + run.stderr + journal + show.stdout + showJson.stdout };
}

describe("the provider's own words are kept beside ferry's explanation", () => {
  it('keeps Amplitude\'s "Invalid field values on some events" and the one event\'s invalid fields from a batched send_event', async () => {
    await writeFile(path.join(dir, 'users.json'), JSON.stringify(users(20)));
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10013' });
    const file = await workflow(`  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 8 }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: <<user.id>>, event_type: Synced }
`);
    const { summary, entry, show, showJson } = await runFailing(file, ['--input', `users=@${path.join(dir, 'users.json')}`]);
    // More than one event went in a request: the detail is still this event's only.
    expect(sandbox.amplitude.requests.some((r) => ((r.body as { events?: unknown[] }).events?.length ?? 0) > 1)).toBe(true);
    expect(summary.error).toMatchObject({ step: 'ev', item: 13 });
    expect(summary.error.message).toContain('amplitude answered 400 "Invalid field values on some events": this event has invalid `user_id`');
    const said = { name: 'amplitude', status: 400, error: 'Invalid field values on some events', detail: { invalid_fields: ['user_id'] } };
    expect(summary.error.provider).toEqual(said);
    expect(entry.error.provider).toEqual(said);
    expect(showJson.error.provider).toEqual(said);
    expect(show).toContain('amplitude said: 400 Invalid field values on some events; invalid fields: user_id');
  });

  it('keeps an invalid `time` that Amplitude names by its index in the batch as this event\'s detail', async () => {
    sandbox.amplitude.inject({
      kind: 'status',
      status: 400,
      path: '/2/httpapi',
      body: { code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { time: [0] }, events_with_missing_fields: { event_type: [5, 6] } },
    });
    const file = await workflow(`  - id: each_user
    loop: { over: [1, 2, 3], as: n, concurrency: 4 }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: "user_1000<<n>>", event_type: Synced, time: 1767225600000 }
`);
    const { summary, entry, show } = await runFailing(file);
    expect(summary.error.message).toContain('amplitude answered 400 "Invalid field values on some events": this event has invalid `time`');
    const said = { name: 'amplitude', status: 400, error: 'Invalid field values on some events', detail: { invalid_fields: ['time'] } };
    expect(summary.error.provider).toEqual(said);
    expect(entry.error.provider).toEqual(said);
    expect(show).toContain('amplitude said: 400 Invalid field values on some events; invalid fields: time');
  });

  it("keeps Segment's error text from a 400 after the batch is split down to the bad message", async () => {
    await writeFile(path.join(dir, 'users.json'), JSON.stringify(users(12)));
    sandbox.segment.inject({ kind: 'reject-user', userId: 'user_10005' });
    const file = await workflow(`  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 8 }
    steps:
      - id: track
        action: segment.track
        with: { userId: <<user.id>>, event: Synced }
`);
    const { summary, entry, show, showJson } = await runFailing(file, ['--input', `users=@${path.join(dir, 'users.json')}`]);
    expect(summary.error).toMatchObject({ step: 'track', item: 5 });
    expect(summary.error.message).toContain('segment answered 400 "userId: user_10005 is rejected"');
    const said = { name: 'segment', status: 400, error: 'userId: user_10005 is rejected' };
    expect(summary.error.provider).toEqual(said);
    expect(entry.error.provider).toEqual(said);
    expect(showJson.error.provider).toEqual(said);
    expect(show).toContain('segment said: 400 userId: user_10005 is rejected');
  });

  it('takes the `error` field of a JSON body as the words of a server behind http.request', async () => {
    const file = await workflow(`  - id: call
    action: http.request
    with: { url: "${server.url}/things", method: POST, json: { a: 1 } }
`);
    const { summary, entry, show } = await runFailing(file);
    expect(summary.error.message).toBe(`step \`call\`: http answered 500 "boom": POST ${server.url}/things`);
    expect(summary.error.provider).toEqual({ name: 'http', status: 500, error: 'boom' });
    expect(entry.error.provider).toEqual({ name: 'http', status: 500, error: 'boom' });
    expect(show).toContain('http said: 500 boom\n');
  });

  it('redacts a credential the provider echoes in its words, in the summary, the journal and `ferry show`', async () => {
    const file = await workflow(`  - id: call
    action: http.request
    with: { url: "${server.url}/echo", headers: { x-token: "<<secrets.CRM_TOKEN>>" } }
`);
    const { summary, everything } = await runFailing(file);
    expect(summary.error.provider).toEqual({ name: 'http', status: 500, error: 'token [redacted] is not allowed here', detail: { request_id: 'req-42' } });
    expect(server.seen.at(-1)?.headers['x-token']).toBe('crm-tok-5up3r5ecret');
    expect(everything).not.toContain('crm-tok-5up3r5ecret');
    expect(everything).toContain('request id: req-42');
  });
});
