import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// A gate step that fails on the first call and passes after, then an Amplitude call: the retry
// has to send to Amplitude, and where it sends shows which mode it resumed in.
let server: Awaited<ReturnType<typeof startServer>>;
let gateOpen = false;
let dir: string;

beforeAll(async () => {
  assertBuilt();
  server = await startServer((req, res) => {
    if (req.url === '/gate') return json(res, gateOpen ? 200 : 400, { open: gateOpen });
    // Stands in for a live Amplitude (base_url) in the live-run case.
    return json(res, 200, { code: 200, events_ingested: 1, payload_size_bytes: 10, server_upload_time: 1 });
  });
});
afterAll(async () => server.close());
beforeEach(async () => {
  gateOpen = false;
  server.seen.length = 0;
  dir = await tempDir('ferry-sandbox-retry-');
});

function workflow(amplitudeBaseUrl?: string): string {
  return `name: gated
secrets: [AMP_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>"${amplitudeBaseUrl ? `, base_url: ${amplitudeBaseUrl}` : ''} }
retry: { attempts: 1 }
steps:
  - id: gate
    action: http.request
    with: { method: POST, url: "${server.url}/gate", json: { n: 1 } }
  - id: ev
    action: amplitude.send_event
    with: { user_id: user_12345, event_type: Synced }
`;
}

const runIdOf = (stderr: string): string => /ferry retry ([0-9A-Z]{26})/.exec(stderr)?.[1] ?? '';

async function runEntry(stateDir: string, runId: string): Promise<Record<string, unknown>> {
  const text = await readFile(path.join(stateDir, 'runs', runId, 'journal.jsonl'), 'utf8');
  return JSON.parse(text.split('\n')[0] as string) as Record<string, unknown>;
}

describe('a sandbox run stays in the sandbox', () => {
  it('retries a --sandbox run in the sandbox again, never against the real Amplitude', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow());
    const stateDir = path.join(dir, 'state');
    const env = { FERRY_STATE_DIR: stateDir };

    const first = await ferry(['run', wf, '--sandbox'], { env });
    expect(first.code).toBe(1);
    const runId = runIdOf(first.stderr);
    expect(await runEntry(stateDir, runId)).toMatchObject({ t: 'run', mode: 'sandbox' });

    gateOpen = true;
    const retry = await ferry(['retry', runId], { env });
    expect(retry.stderr).toContain(`resuming run ${runId} of gated in the sandbox`);
    expect(retry.stderr).not.toMatch(/ENOTFOUND|amplitude\.com|missing secret/);
    expect(retry.code).toBe(0);
    // The emulator that the retry started received the event.
    expect(retry.stderr).toMatch(/The sandbox received \(nothing left this machine\):\n {2}Amplitude: 1 event stored \(1 request\)\n/);
  });

  it('retries a live run live, and its missing-secret hint does not suggest --sandbox', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow(server.url));
    const stateDir = path.join(dir, 'state');

    const first = await ferry(['run', wf], { env: { FERRY_STATE_DIR: stateDir, AMP_KEY: 'live-key-0123456789' } });
    expect(first.code).toBe(1);
    const runId = runIdOf(first.stderr);
    expect(await runEntry(stateDir, runId)).toMatchObject({ t: 'run', mode: 'live' });

    gateOpen = true;
    const noKey = await ferry(['retry', runId], { env: { FERRY_STATE_DIR: stateDir } });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('missing secret `AMP_KEY`');
    expect(noKey.stderr).not.toContain('--sandbox');
    expect(noKey.stderr).toContain('is a live run');

    const retry = await ferry(['retry', runId], { env: { FERRY_STATE_DIR: stateDir, AMP_KEY: 'live-key-0123456789' } });
    expect(retry.code).toBe(0);
    expect(retry.stderr).not.toContain('sandbox');
    // The live target (this server, as Amplitude's base_url) got the event.
    expect(server.seen.filter((r) => r.url === '/2/httpapi')).toHaveLength(1);
  });

  it('treats a journal from before modes were recorded as a live run', async () => {
    const wf = path.join(dir, 'wf.yaml');
    await writeFile(wf, workflow(server.url));
    const stateDir = path.join(dir, 'state');
    const first = await ferry(['run', wf], { env: { FERRY_STATE_DIR: stateDir, AMP_KEY: 'live-key-0123456789' } });
    const runId = runIdOf(first.stderr);
    const file = path.join(stateDir, 'runs', runId, 'journal.jsonl');
    const lines = (await readFile(file, 'utf8')).split('\n');
    const { mode: _mode, ...old } = JSON.parse(lines[0] as string) as Record<string, unknown>;
    await writeFile(file, [JSON.stringify(old), ...lines.slice(1)].join('\n'));
    expect(await readdir(path.join(stateDir, 'runs'))).toEqual([runId]);

    gateOpen = true;
    const retry = await ferry(['retry', runId], { env: { FERRY_STATE_DIR: stateDir } });
    expect(retry.code).toBe(2);
    expect(retry.stderr).toContain('missing secret `AMP_KEY`');
  });
});
