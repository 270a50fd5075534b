import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, type Result } from '../helpers/cli.js';
import { startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;
let server: Awaited<ReturnType<typeof startServer>>;
let run: Result;
let failing: string;

/** `line:col` of the first `needle` in `text`, past its first `skip` characters (a key before the value). */
function where(text: string, needle: string, skip = 0): string {
  const lines = text.split('\n');
  const line = lines.findIndex((l) => l.includes(needle));
  if (line < 0) throw new Error(`no line holds ${needle}`);
  return `${line + 1}:${(lines[line] as string).indexOf(needle) + skip + 1}`;
}

/** The testcase elements of a JUnit report, with their failure text. */
function junitCases(xml: string): { name: string; classname: string; failure: string | undefined }[] {
  const unescape = (s: string): string => s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
  const attr = (tag: string, name: string): string => unescape(new RegExp(`${name}="([^"]*)"`).exec(tag)?.[1] ?? '');
  return [...xml.matchAll(/<testcase ([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g)].map((m) => {
    const failure = /<failure [^>]*>([\s\S]*?)<\/failure>/.exec(m[3] ?? '')?.[1];
    return { name: attr(m[1] as string, 'name'), classname: attr(m[1] as string, 'classname'), failure: failure === undefined ? undefined : unescape(failure) };
  });
}

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-test-');
  // A real server that the workflow names for every provider: `ferry test` must never call it.
  server = await startServer((_req, res) => {
    res.writeHead(500);
    res.end('the network was used');
  });
  await mkdir(path.join(dir, 'flows'));
  await writeFile(
    path.join(dir, 'flows/signup.yaml'),
    `name: signup
triggers:
  - type: webhook
    path: /hooks/signup
    inputs:
      user: { type: object, required: [id] }
secrets: [AMPLITUDE_API_KEY, SEGMENT_WRITE_KEY, CRM_TOKEN]
providers:
  amplitude: { api_key: <<secrets.AMPLITUDE_API_KEY>>, base_url: ${server.url} }
  segment: { write_key: <<secrets.SEGMENT_WRITE_KEY>>, base_url: ${server.url} }
steps:
  - id: crm
    action: http.request
    with:
      method: PUT
      url: ${server.url}/crm/users/<<inputs.user.id>>
      headers: { authorization: "Bearer <<secrets.CRM_TOKEN>>" }
      json: { email: <<default inputs.user.email "">> }
  - id: amp
    action: amplitude.send_event
    with: { user_id: <<inputs.user.id>>, event_type: Signed Up, event_properties: { crm_id: <<default steps.crm.output.body.id "none">> } }
  - id: seg
    action: segment.track
    with: { userId: <<inputs.user.id>>, event: Signed Up }
`,
  );
  await writeFile(
    path.join(dir, 'flows/signup.test.yaml'),
    `workflow: signup.yaml
cases:
  - name: creates the CRM record, then tells Amplitude and Segment
    body: { user: { id: user_0001, email: ada@example.com } }
    responses:
      - { url: ${server.url}/crm/users/*, method: PUT, status: 201, body: { id: 42 } }
    expect:
      outputs:
        crm: { status: 201, body: { id: 42 } }
      calls:
        http:
          count: 1
          requests:
            - { method: PUT, url: ${server.url}/crm/users/user_0001, headers: { authorization: Bearer sandbox-crm-token }, body: { email: ada@example.com } }
      events:
        items: [{ event_type: Signed Up, user_id: user_0001, event_properties: { crm_id: 42 } }]
      messages:
        count: 1
        items: [{ type: track, userId: user_0001, event: Signed Up }]

  - name: retries two 429 answers of Amplitude, in that order
    body: { user: { id: user_0002 } }
    faults:
      amplitude: [{ status: 429, times: 2 }]
    expect:
      calls:
        amplitude:
          count: 3
          requests: [{ status: 429 }, { status: 429 }, { status: 200, path: /2/httpapi }]
      events: { count: 1 }
`,
  );
  failing = `workflow: signup.yaml
cases:
  - name: counts a retried request
    body: { user: { id: user_0003 } }
    faults:
      segment: [{ status: 503, times: 1 }]
    expect:
      calls:
        segment:
          count: 1
          requests: [{ status: 200 }, { status: 503 }]

  - name: looks for an event that was never sent
    body: { user: { id: user_0004 } }
    expect:
      events:
        items: [{ event_type: Signed In, user_id: user_0004 }]

  - name: expects a run to fail that succeeds
    body: { user: { id: user_0005 } }
    faults:
      amplitude: [{ reject_user: user_0009 }]
    expect:
      status: failed
`;
  await writeFile(path.join(dir, 'flows/failing.test.yaml'), failing);
  run = await ferry(['test', 'flows', '--reporter', 'junit', '--output', 'reports/ferry.xml'], { cwd: dir });
});

afterAll(async () => {
  await server?.close();
});

describe('ferry test', () => {
  it('runs the example test files of the repository and exits 0', async () => {
    const result = await ferry(['test', 'workflows']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('✓ workflows/sync-signups.test.yaml');
    expect(result.stdout).toMatch(/\d+ passed — 2 files in/);
  });

  it('runs against the emulators and the in-process HTTP fake: the real server named in the workflow receives nothing', () => {
    expect(run.stdout).toContain('✓ flows/signup.test.yaml');
    expect(run.stdout).toContain('  ✓ creates the CRM record, then tells Amplitude and Segment');
    expect(run.stdout).toContain('  ✓ retries two 429 answers of Amplitude, in that order');
    expect(server.seen).toEqual([]);
  });

  it('exits 1 and prints each unmet expectation at its file:line:col with what was received', () => {
    expect(run.code).toBe(1);
    const file = 'flows/failing.test.yaml';
    expect(run.stdout).toContain(`  ✗ counts a retried request`);
    expect(run.stdout).toContain(`${file}:${where(failing, 'count: 1', 'count: '.length)}: expected 1 segment request, got 2`);
    expect(run.stdout).toMatch(/1\. POST \/v1\/track → 503 .*\n\s+2\. POST \/v1\/track → 200/);
    // The 503 came first: the sequence {200, 503} is out of order, pointed at its second item.
    expect(run.stdout).toContain(`${file}:${where(failing, '{ status: 503 }]')}: segment.requests[1]: matches segment request #1, which came before #2 that matched the item above it`);
    expect(run.stdout).toContain('the order differs; write `order: set` when it does not matter');
    expect(run.stdout).toContain(`${file}:${where(failing, '{ event_type: Signed In')}: events.items[0]: no Amplitude event matches`);
    expect(run.stdout).toMatch(/closest is #1, .*"event_type":"Signed Up".*:\n\s+event_type: expected "Signed In", got "Signed Up"/);
    expect(run.stdout).toContain(`${file}:${where(failing, 'status: failed', 'status: '.length)}: expected the run to fail, but it succeeded`);
    expect(run.stdout).toContain('2 passed, 3 failed — 2 files in');
  });

  it('writes a JUnit report that parses back to one testcase per case, failures with their positions', async () => {
    const xml = await readFile(path.join(dir, 'reports/ferry.xml'), 'utf8');
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites name="ferry test" tests="5" failures="3" errors="0"/);
    const cases = junitCases(xml);
    expect(cases.map((c) => [c.classname, c.name, c.failure === undefined])).toEqual([
      ['flows/failing.test.yaml', 'counts a retried request', false],
      ['flows/failing.test.yaml', 'looks for an event that was never sent', false],
      ['flows/failing.test.yaml', 'expects a run to fail that succeeds', false],
      ['flows/signup.test.yaml', 'creates the CRM record, then tells Amplitude and Segment', true],
      ['flows/signup.test.yaml', 'retries two 429 answers of Amplitude, in that order', true],
    ]);
    expect(cases[0]?.failure).toContain(`flows/failing.test.yaml:${where(failing, 'count: 1', 'count: '.length)}: expected 1 segment request, got 2`);
  });

  it('exits 2 for an invalid test file, naming each mistake at its position, and runs nothing', async () => {
    await writeFile(path.join(dir, 'bad.test.yaml'), 'workflow: flows/signup.yaml\ncases:\n  - name: x\n    faults: { amplitude: [{ status: 429, reset: true }] }\n    expect: { stauts: failed }\n');
    const result = await ferry(['test', 'bad.test.yaml'], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stdout).toContain('✗ bad.test.yaml: cannot run');
    expect(result.stdout).toContain('bad.test.yaml:4:27: a fault needs exactly one of `status`, `reset`, `reject_user` or `throttle_user`, got `status` and `reset`');
    expect(result.stdout).toContain('bad.test.yaml:5:15: unknown key `stauts`; did you mean `status`?');
  });

  it('exits 2 when a test names a workflow that is not valid, with the workflow\'s own positions', async () => {
    await writeFile(path.join(dir, 'broken.yaml'), 'name: broken\nsteps:\n  - id: a\n    action: core.lgo\n');
    await writeFile(path.join(dir, 'broken.test.yaml'), 'workflow: broken.yaml\ncases: [{ name: x }]\n');
    const result = await ferry(['test', 'broken.test.yaml'], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stdout).toContain('broken.yaml:4:13: unknown action `core.lgo`; did you mean `core.log`?');
  });
});
