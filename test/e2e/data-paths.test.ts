import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let sandbox: Sandbox;
/** Holds the workflow's folder (`wf/`), the state dir (`state/`) and a folder outside both. */
let base: string;
let dir: string;
let stateDir: string;
let outside: string;

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: ['amp-key-0123456789abcdef'] });
});
afterAll(async () => sandbox.close());
beforeEach(async () => {
  sandbox.amplitude.reset();
  base = await tempDir('ferry-paths-');
  dir = path.join(base, 'wf');
  stateDir = path.join(base, 'state');
  outside = path.join(base, 'outside');
  await mkdir(path.join(dir, 'data'), { recursive: true });
  await mkdir(outside);
  await writeFile(path.join(dir, 'data', 'users.csv'), 'id,name\nu1,Ada\nu2,Grace\n');
  await writeFile(path.join(outside, 'private.csv'), 'id,name\nx1,Not for you\n');
});

const env = () => ({ AMP_KEY: 'amp-key-0123456789abcdef', FERRY_STATE_DIR: stateDir });

/** A loop over `file:` that logs each row's name. */
async function logLoop(file: string): Promise<string> {
  const wf = path.join(dir, 'wf.yaml');
  await writeFile(
    wf,
    `name: paths
${file.includes('inputs.') ? 'triggers: [{ type: manual, inputs: { file: { type: string } } }]' : ''}
steps:
  - id: each
    loop: { file: "${file}", as: row }
    steps:
      - id: say
        action: core.log
        with: { message: "row <<row.name>>" }
`,
  );
  return wf;
}

const outsideError = (value: string, resolved: string): string =>
  `step \`each\`: loop.file ${JSON.stringify(value)} resolves to ${resolved}, outside the workflow's folder (${dir}) and the state dir (${stateDir})`;

describe('loop.file from a template', () => {
  it('reads a file inside the workflow folder named by an input', async () => {
    const wf = await logLoop('<<inputs.file>>');
    const result = await ferry(['run', wf, '--input', 'file=data/users.csv', '--json', '--verbose'], { env: env() });
    expect(result.stderr).toContain('row Ada');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).steps.each.output).toEqual({ count: 2 });
  });

  it('reads a file inside the state dir', async () => {
    await mkdir(stateDir, { recursive: true });
    await writeFile(path.join(stateDir, 'rows.jsonl'), '{"name":"Lin"}\n');
    const wf = await logLoop('<<inputs.file>>');
    const result = await ferry(['run', wf, '--input', `file=${path.join(stateDir, 'rows.jsonl')}`, '--verbose'], { env: env() });
    expect(result.stderr).toContain('row Lin');
    expect(result.code).toBe(0);
  });

  it.each([
    ['a relative path that climbs out', '../../../../../../etc/passwd', '/etc/passwd'],
    ['an absolute path', '/etc/passwd', '/etc/passwd'],
  ])('refuses %s, naming the step, the value and the allowed folders', async (_name, value, resolved) => {
    const wf = await logLoop('<<inputs.file>>');
    const result = await ferry(['run', wf, '--input', `file=${value}`], { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(outsideError(value, resolved));
    expect(result.stderr).not.toContain('root:');
  });

  it('refuses a symlink inside the folder that points outside it', async () => {
    await symlink(path.join(outside, 'private.csv'), path.join(dir, 'data', 'link.csv'));
    const wf = await logLoop('<<inputs.file>>');
    const result = await ferry(['run', wf, '--input', 'file=data/link.csv', '--verbose'], { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(outsideError('data/link.csv', path.join(outside, 'private.csv')));
    expect(result.stderr).not.toContain('Not for you');
  });

  it('still reads a literal path outside the folder: the author wrote it', async () => {
    const wf = await logLoop('../outside/private.csv');
    const result = await ferry(['run', wf, '--verbose'], { env: env() });
    expect(result.stderr).toContain('row Not for you');
    expect(result.code).toBe(0);
  });

  it('is checked by validate: a reference to an unknown step is reported at its line and column', async () => {
    const wf = await logLoop('<<steps.export.output.path>>');
    const result = await ferry(['validate', wf]);
    expect(result.code).toBe(2);
    expect(result.stdout).toContain(`${wf}:5:20: \`steps.export.output.path\`: there is no step \`export\``);
  });
});

describe('amplitude.export_events output from a template', () => {
  async function exportFlow(): Promise<string> {
    sandbox.amplitude.setExportData(new Map([['20261101T00', [{ event_type: 'x', user_id: 'u1' }]]]));
    const wf = path.join(dir, 'export.yaml');
    await writeFile(
      wf,
      `name: exp
triggers:
  - type: manual
    inputs: { out: { type: string } }
secrets: [AMP_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", secret_key: sandbox-amplitude-secret, base_url: ${sandbox.amplitude.url} }
steps:
  - id: exp
    action: amplitude.export_events
    with: { start: "20261101T00", end: "20261101T00", output: "<<inputs.out>>" }
  - id: each
    loop: { file: "<<steps.exp.output.path>>", as: ev }
    steps:
      - id: say
        action: core.log
        with: { message: "event of <<ev.user_id>>" }
`,
    );
    return wf;
  }

  it('writes inside the workflow folder, and a later loop reads the file it wrote', async () => {
    const wf = await exportFlow();
    const result = await ferry(['run', wf, '--input', 'out=exports/events.ndjson', '--json', '--verbose'], { env: env() });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).steps.exp.output).toEqual({ count: 1, path: path.join(dir, 'exports', 'events.ndjson') });
    expect(result.stderr).toContain('event of u1');
  });

  it('refuses to write outside the workflow folder and the state dir, before calling Amplitude', async () => {
    const wf = await exportFlow();
    const target = path.join(outside, 'events.ndjson');
    const result = await ferry(['run', wf, '--input', `out=${target}`], { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `step \`exp\`: \`with.output\` ${JSON.stringify(target)} resolves to ${target}, outside the workflow's folder (${dir}) and the state dir (${stateDir})`,
    );
    expect(existsSync(target)).toBe(false);
    expect(sandbox.amplitude.requests).toHaveLength(0);
  });
});

describe('ferry retry of a file loop', () => {
  it('refuses, naming the file, when the file changed since the run read it, and resumes once it is the same again', async () => {
    const rows = Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: `user_${10_000 + i}` })).join('\n');
    const data = path.join(dir, 'data', 'users.jsonl');
    await writeFile(data, rows);
    const wf = path.join(dir, 'send.yaml');
    await writeFile(
      wf,
      `name: send
triggers:
  - type: manual
    inputs: { file: { type: string } }
secrets: [AMP_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, batch: false }
retry: { attempts: 1 }
steps:
  - id: each_user
    loop: { file: "<<inputs.file>>", as: user }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: <<user.id>>, event_type: Synced }
`,
    );
    sandbox.amplitude.inject({ kind: 'reject-user', userId: 'user_10012' });
    const first = await ferry(['run', wf, '--input', 'file=data/users.jsonl'], { env: env() });
    expect(first.code).toBe(1);
    const runId = /ferry retry ([0-9A-Z]{26})/.exec(first.stderr)?.[1] ?? '';
    const journal = await readFile(path.join(stateDir, 'runs', runId, 'journal.jsonl'), 'utf8');
    expect(journal).toContain(`"t":"source","id":"each_user","item":[],"path":${JSON.stringify(data)}`);
    sandbox.amplitude.clearFaults();

    await appendFile(data, `\n${JSON.stringify({ id: 'user_99999' })}`);
    const sent = sandbox.amplitude.requests.length;
    const refused = await ferry(['retry', runId], { env: env() });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`cannot resume run ${runId}: ${data} changed since the run read it`);
    expect(refused.stderr).toContain('start a new run with `ferry run`');
    expect(sandbox.amplitude.requests.length).toBe(sent);

    // The same bytes again (a fresh checkout, say): the file is the one the run read.
    await writeFile(data, rows);
    const resumed = await ferry(['retry', runId, '--json'], { env: env() });
    expect(resumed.stderr).not.toContain('cannot resume');
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout).steps.each_user.output).toEqual({ count: 20 });
    expect(sandbox.amplitude.events.size).toBe(20);
  });
});
