import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// Clears the screen, retitles the terminal, rings the bell; then a one-byte CSI (C1) and a
// right-to-left override.
const ATTACK = '\u001b[2J\u001b]0;pwned\u0007 denied \u009b31m \u202eevil';
// eslint-disable-next-line no-control-regex
const RAW_CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/;

let dir: string;
let stateDir: string;
let server: Awaited<ReturnType<typeof startServer>>;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-terminal-');
  stateDir = path.join(dir, 'state');
  server = await startServer((req, res) => {
    if (req.url.startsWith('/v1/')) {
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end(ATTACK);
    } else {
      // 200 with NUL bytes and garbage: for send_event (JSON expected) and export (a zip expected).
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('\u0000garbage\u001b[2J');
    }
  });
});
afterAll(async () => server?.close());

async function workflow(name: string, step: string): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(
    file,
    `name: ${name}
providers:
  segment: { write_key: seg-key-0123456789, base_url: ${server.url} }
  amplitude: { api_key: amp-key-0123456789, secret_key: amp-secret-0123, base_url: ${server.url} }
retry: { attempts: 1 }
steps:
${step}`,
  );
  return file;
}

describe('nothing raw reaches a terminal', () => {
  it('prints a provider error body with its control characters escaped, on stderr and in `ferry show`', async () => {
    const file = await workflow('ansi', '  - id: seg\n    action: segment.track\n    with: { userId: user_0001, event: Signed Up }\n');
    const run = await ferry(['run', file, '--state-dir', stateDir]);
    expect(run.code).toBe(1);
    expect(run.stderr).not.toMatch(RAW_CONTROLS);
    expect(run.stderr).toContain('segment answered 401: \\u001b[2J\\u001b]0;pwned\\u0007 denied \\u009b31m \\u202eevil');
    const runId = /ferry retry (\S+)/.exec(run.stderr)?.[1] ?? '';
    const show = await ferry(['show', runId, '--state-dir', stateDir]);
    expect(show.stdout).toContain('segment answered 401: \\u001b[2J');
    expect(show.stdout + show.stderr).not.toMatch(RAW_CONTROLS);
  });

  it('keeps --json and `show --json` valid JSON with no raw control character', async () => {
    const file = await workflow('ansi-json', '  - id: seg\n    action: segment.track\n    with: { userId: user_0001, event: Signed Up }\n');
    const run = await ferry(['run', file, '--json', '--state-dir', stateDir]);
    expect(run.stdout).not.toMatch(RAW_CONTROLS);
    const summary = JSON.parse(run.stdout) as { runId: string; error: { message: string } };
    // The message itself quotes the body escaped; JSON carries that text as it is.
    expect(summary.error.message).toContain('\\u001b[2J');
    const show = await ferry(['show', summary.runId, '--json', '--state-dir', stateDir]);
    expect(show.stdout).not.toMatch(RAW_CONTROLS);
    JSON.parse(show.stdout);
  });

  it('escapes control characters that come from data, such as a logged input', async () => {
    const file = path.join(dir, 'log.yaml');
    await writeFile(file, 'name: log\nsteps:\n  - id: say\n    action: core.log\n    with: { message: "got <<inputs.text>>" }\n');
    const run = await ferry(['run', file, '--input', `text=${ATTACK}`, '--state-dir', stateDir]);
    expect(run.code).toBe(0);
    expect(run.stderr).not.toMatch(RAW_CONTROLS);
    expect(run.stderr).toContain('[say] got \\u001b[2J\\u001b]0;pwned\\u0007 denied');
  });

  it('says amplitude answered 200 with a body that is not JSON, with an escaped excerpt, instead of a SyntaxError', async () => {
    const file = await workflow('garbage', '  - id: event\n    action: amplitude.send_event\n    with: { user_id: user_0001, event_type: Signed Up }\n');
    const run = await ferry(['run', file, '--state-dir', stateDir]);
    expect(run.code).toBe(1);
    expect(run.stderr).not.toMatch(RAW_CONTROLS);
    expect(run.stderr).toContain('amplitude answered 200 with a body that is not JSON (it starts: \\u0000garbage\\u001b[2J)');
    expect(run.stderr).not.toContain('SyntaxError');
  });

  it('says so when an export answers 200 with a body that is not a zip archive', async () => {
    const file = await workflow('export-garbage', '  - id: export\n    action: amplitude.export_events\n    with: { start: 20260101T05, end: 20260101T05, output: out/x.ndjson }\n');
    const run = await ferry(['run', file, '--state-dir', stateDir]);
    expect(run.code).toBe(1);
    expect(run.stderr).not.toMatch(RAW_CONTROLS);
    expect(run.stderr).toContain('amplitude answered 200 with a body that is not a zip archive (it starts: \\u0000garbage\\u001b[2J)');
  });
});
