import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, type Result } from '../helpers/cli.js';
import { startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// Lengths 14, 14, 14 and 10: none a multiple of 3, so base64 of `key:` shares no block with
// base64 of the key, and only an encoding declared where it is made can be redacted.
const SEGMENT_KEY = 'wk_Segment7Key';
const AMP_KEY = 'ampKey_1234567';
const AMP_SECRET = 'ampSecret_9876';
const TOKEN = 'tok en/+=7';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

/** Every form in which one of the secrets could leak. */
const FORBIDDEN = [
  SEGMENT_KEY,
  b64(`${SEGMENT_KEY}:`),
  `Basic ${b64(`${SEGMENT_KEY}:`)}`,
  b64(SEGMENT_KEY),
  AMP_KEY,
  AMP_SECRET,
  b64(`${AMP_KEY}:${AMP_SECRET}`),
  TOKEN,
  encodeURIComponent(TOKEN),
  new URLSearchParams({ t: TOKEN }).toString().slice(2),
  TOKEN.toUpperCase(),
];

let dir: string;
let stateDir: string;
let server: Awaited<ReturnType<typeof startServer>>;

const env = (): Record<string, string> => ({ SEGMENT_WRITE_KEY: SEGMENT_KEY, AMPLITUDE_API_KEY: AMP_KEY, AMPLITUDE_SECRET_KEY: AMP_SECRET, CRM_TOKEN: TOKEN });

function leaks(text: string): string[] {
  return FORBIDDEN.filter((form) => text.includes(form));
}

async function write(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-secrets-');
  stateDir = path.join(dir, 'state');
  // A provider that refuses every call and echoes what it got: the Authorization header, the
  // query string and the body, as some APIs do in a 401.
  server = await startServer((req, res) => {
    res.writeHead(401, { 'content-type': 'text/plain' });
    res.end(`unauthorized; authorization=${req.headers.authorization ?? '-'}; url=${req.url}; body=${req.body}`);
  });
});
afterAll(async () => server?.close());

const providers = (): string => `secrets: [SEGMENT_WRITE_KEY, AMPLITUDE_API_KEY, AMPLITUDE_SECRET_KEY, CRM_TOKEN]
providers:
  segment: { write_key: <<secrets.SEGMENT_WRITE_KEY>>, base_url: ${server.url} }
  amplitude: { api_key: <<secrets.AMPLITUDE_API_KEY>>, secret_key: <<secrets.AMPLITUDE_SECRET_KEY>>, base_url: ${server.url} }
retry: { attempts: 1 }
`;

const steps: Record<string, string> = {
  'segment.track': `  - id: seg
    action: segment.track
    with: { userId: user_0001, event: Signed Up }
`,
  'amplitude.export_events': `  - id: export
    action: amplitude.export_events
    with: { start: 20260101T05, end: 20260101T05, output: out/export.ndjson }
`,
  'amplitude.send_event': `  - id: event
    action: amplitude.send_event
    with: { user_id: user_0001, event_type: Signed Up }
`,
  'http.request with the token in the query and upper-cased in a header': `  - id: crm
    action: http.request
    with:
      url: SERVER/crm
      query: { token: <<secrets.CRM_TOKEN>> }
      headers: { x-token: <<upper secrets.CRM_TOKEN>> }
`,
};

describe('a provider that echoes the credentials in its 401', () => {
  for (const [name, step] of Object.entries(steps)) {
    it(`never shows a secret in any form: ${name}`, async () => {
      const file = await write(`${name.split(' ')[0]?.replace('.', '-')}.yaml`, `name: echo\n${providers()}steps:\n${step.replace('SERVER', server.url)}`);
      const seen = server.seen.length;
      const run = await ferry(['run', file, '--json', '--state-dir', stateDir], { env: env() });
      expect(run.code).toBe(1);
      // The provider did receive the credential and echo it: the test means something.
      const echoed = server.seen.slice(seen).map((r) => `${r.headers.authorization ?? ''} ${r.url} ${r.body} ${String(r.headers['x-token'] ?? '')}`).join('\n');
      expect(leaks(echoed).length).toBeGreaterThan(0);
      const summary = JSON.parse(run.stdout) as { runId: string; error: { message: string } };
      expect(summary.error.message).toContain('answered 401');
      expect(summary.error.message).toContain('[redacted]');

      const show = await ferry(['show', summary.runId, '--state-dir', stateDir]);
      const showJson = await ferry(['show', summary.runId, '--json', '--state-dir', stateDir]);
      const retry = await ferry(['retry', summary.runId, '--json', '--state-dir', stateDir], { env: env() });
      expect(retry.code).toBe(1);
      expect(show.stdout).toContain('[redacted]');
      JSON.parse(showJson.stdout);
      JSON.parse(retry.stdout);
      const runDir = path.join(stateDir, 'runs', summary.runId);
      const files = await Promise.all((await readdir(runDir)).filter((f) => f.endsWith('.jsonl')).map((f) => readFile(path.join(runDir, f), 'utf8')));
      const outputs: [string, string][] = [
        ['run stdout', run.stdout],
        ['run stderr', run.stderr],
        ['show', show.stdout + show.stderr],
        ['show --json', showJson.stdout],
        ['retry stdout', retry.stdout],
        ['retry stderr', retry.stderr],
        ['journal', files.join('\n')],
      ];
      for (const [where, text] of outputs) expect({ where, leaks: leaks(text) }).toEqual({ where, leaks: [] });
    });
  }
});

describe('secrets read in other ways', () => {
  it('hides a secret transformed by `upper` or `lower`, or read through `env.NAME`, like the secret itself', async () => {
    const file = await write('upper.yaml', `name: upper
secrets: [CRM_TOKEN]
steps:
  - id: shout
    action: core.log
    with: { message: "upper <<upper secrets.CRM_TOKEN>> lower <<lower secrets.CRM_TOKEN>> env <<env.CRM_TOKEN>>" }
`);
    const run = await ferry(['run', file, '--state-dir', stateDir], { env: { CRM_TOKEN: 'MixedCase-Token1' } });
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('upper [redacted] lower [redacted] env [redacted]');
    expect(run.stderr).not.toMatch(/mixedcase-token1/i);
  });

  it('--dry-run shows the placeholder, never the real value, for `<<env.NAME>>` of a declared secret', async () => {
    const file = await write('dry.yaml', `name: dry
secrets: [CRM_TOKEN]
steps:
  - id: say
    action: core.log
    with: { message: "env says <<env.CRM_TOKEN>>" }
  - id: crm
    action: http.request
    with: { method: POST, url: ${server.url}/crm, json: { token: <<env.CRM_TOKEN>>, also: <<secrets.CRM_TOKEN>> } }
`);
    const real = 'real-crm-token-value';
    const text = await ferry(['run', file, '--dry-run'], { env: { CRM_TOKEN: real } });
    const json = await ferry(['run', file, '--dry-run', '--json'], { env: { CRM_TOKEN: real } });
    expect(text.code).toBe(0);
    for (const r of [text, json]) expect(`${r.stdout}${r.stderr}`).not.toContain(real);
    expect(text.stderr).toContain('env says [redacted]');
    const plan = JSON.parse(json.stdout) as { calls: { body: unknown }[] };
    expect(plan.calls[0]?.body).toEqual({ token: '[redacted]', also: '[redacted]' });
  });

  it('keeps --json and the journal valid JSON when a secret reads `true` or `1`, and hides the whole value `1`', async () => {
    const answers = await startServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, count: 1, got: JSON.parse(req.body || 'null') as unknown }));
    });
    try {
      const file = await write('tokens.yaml', `name: tokens
secrets: [FLAG, PIN]
steps:
  - id: call
    action: http.request
    with: { method: POST, url: ${answers.url}/x, json: { pin: <<secrets.PIN>>, flag: <<secrets.FLAG>>, note: "flag is true" } }
`);
      const run = await ferry(['run', file, '--json', '--state-dir', stateDir], { env: { FLAG: 'true', PIN: '1' } });
      expect(run.code).toBe(0);
      const summary = JSON.parse(run.stdout) as { runId: string; steps: { call: { output: { body: unknown } } } };
      expect(summary.steps.call.output.body).toEqual({ ok: true, count: 1, got: { pin: '[redacted]', flag: '[redacted]', note: 'flag is [redacted]' } });
      const journal = await readFile(path.join(stateDir, 'runs', summary.runId, 'journal.jsonl'), 'utf8');
      const lines = journal.trim().split('\n');
      const entries = lines.map((l) => JSON.parse(l) as { t: string; output?: { body: unknown } });
      expect(entries.find((e) => e.t === 'step')?.output?.body).toEqual({ ok: true, count: 1, got: { pin: '[redacted]', flag: '[redacted]', note: 'flag is [redacted]' } });
      const show = await ferry(['show', summary.runId, '--json', '--state-dir', stateDir]);
      JSON.parse(show.stdout);
    } finally {
      await answers.close();
    }
  });
});

describe('ferry test reports', () => {
  let result: Result;
  let xml: string;
  const secret = 'case-secret-4711';

  beforeAll(async () => {
    await write('crm.yaml', `name: crm
secrets: [CRM_TOKEN]
steps:
  - id: crm
    action: http.request
    with: { url: https://crm.example.com/users, headers: { authorization: Bearer <<secrets.CRM_TOKEN>> } }
  - id: say
    action: core.log
    with: { message: <<secrets.CRM_TOKEN>> }
`);
    await write('crm.test.yaml', `workflow: crm.yaml
cases:
  - name: sends the token
    secrets: { CRM_TOKEN: ${secret} }
    expect:
      logs: [never logged]
      calls:
        http:
          requests: [{ headers: { authorization: Bearer wrong } }]
`);
    result = await ferry(['test', 'crm.test.yaml', '--reporter', 'text', '--reporter', 'github', '--reporter', 'junit', '--output', 'report.xml'], { cwd: dir });
    xml = await readFile(path.join(dir, 'report.xml'), 'utf8');
  });

  it('fails the case and shows what was received, with the case secret redacted in the text and GitHub reports', () => {
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('no log line contains');
    expect(result.stdout).toContain('Bearer [redacted]');
    expect(result.stdout).toContain('::error file=crm.test.yaml');
    expect(result.stdout + result.stderr).not.toContain(secret);
  });

  it('redacts the case secret in the JUnit report', () => {
    expect(xml).toContain('<failure');
    expect(xml).toContain('[redacted]');
    expect(xml).not.toContain(secret);
  });
});
