import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, root } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;
/** Runs keep their journals in the test's folder, never in the working copy's `.ferry`. */
const state = (): Record<string, string> => ({ FERRY_STATE_DIR: path.join(dir, 'state') });
async function file(name: string, text: string): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, text.replace(/^\n/, ''));
  return p;
}

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-cli-');
});

describe('ferry validate', () => {
  it('exits 0 quietly for valid files and lists them with --verbose', async () => {
    const quiet = await ferry(['validate', 'workflows']);
    expect(quiet).toMatchObject({ code: 0, stdout: '' });
    const verbose = await ferry(['validate', 'workflows', '--verbose']);
    expect(verbose.stderr).toContain('ok workflows/hello-loop.yaml');
  });

  it('prints every error of a file as file:line:col: message and exits 2', async () => {
    const bad = await file('bad.yaml', `
name: bad
steps:
  - id: one
    action: core.lgo
  - id: two
    action: core.log
    with: { message: "<<steps.three.output>>" }
`);
    const result = await ferry(['validate', bad], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stdout.trim().split('\n')).toEqual([
      `${bad}:4:13: unknown action \`core.lgo\`; did you mean \`core.log\`? (\`ferry actions\` lists them)`,
      `${bad}:7:23: \`steps.three.output\`: there is no step \`three\``,
    ]);
  });

  it('prints GitHub annotations with --format github', async () => {
    const bad = await file('tab.yaml', 'name: x\nsteps:\n\t- id: a\n');
    const result = await ferry(['validate', 'tab.yaml', '--format', 'github'], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stdout).toContain('::error file=tab.yaml,line=3,col=1::YAML does not allow tabs');
    void bad;
  });

  it('exits 2 with usage help for an unknown option', async () => {
    const result = await ferry(['validate', '--bogus']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("Unknown option '--bogus'");
  });
});

describe('ferry run', () => {
  it('runs the example, prints step lines on stderr and the summary as JSON on stdout', async () => {
    const result = await ferry(['run', 'workflows/hello-loop.yaml', '--json'], { env: state() });
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout);
    expect(summary).toMatchObject({ workflow: 'hello-loop', status: 'succeeded', error: null });
    expect(summary.steps.greet_each.output.count).toBe(3);
    expect(summary.runId).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(result.stderr).toMatch(/✓ greet_each {2}succeeded {2}3 items/);
    expect(result.stderr).toContain('[report] greeted 3 users');
  });

  it('takes --input values as JSON when they parse, and @file reads a file', async () => {
    const users = await file('users.json', JSON.stringify([{ name: 'Zed' }]));
    const result = await ferry(['run', path.join(root, 'workflows/hello-loop.yaml'), '--input', `users=@${users}`, '--json'], { cwd: dir, env: state() });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('hello Zed (#0)');
  });

  it('checks inputs before running and exits 2 naming the input', async () => {
    const result = await ferry(['run', 'workflows/hello-loop.yaml', '--input', 'users={"a":1}'], { env: state() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/invalid input: `users` must be array/);
    expect(result.stderr).not.toContain('hello');
  });

  it('exits 2 naming a declared secret that is missing from the environment', async () => {
    const wf = await file('secret.yaml', `
name: secret
secrets: [API_TOKEN]
steps:
  - { id: a, action: core.log, with: { message: "token <<secrets.API_TOKEN>>" } }
`);
    const result = await ferry(['run', wf], { env: state() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('missing secret `API_TOKEN`');
  });

  it('never prints a secret value, even when a step logs it', async () => {
    const wf = await file('leak.yaml', `
name: leak
secrets: [API_TOKEN]
steps:
  - { id: a, action: core.log, with: { message: "token <<secrets.API_TOKEN>>" } }
`);
    const result = await ferry(['run', wf, '--json'], { env: { ...state(), API_TOKEN: 'tok_live_5up3r5ecret' } });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('token [redacted]');
    expect(result.stdout + result.stderr).not.toContain('tok_live_5up3r5ecret');
  });

  it('exits 1 when a step fails, naming the step, the loop item and the cause', async () => {
    const server = await startServer((req, res) => (req.url === '/2' ? json(res, 400, { error: 'user 2 is blocked' }) : json(res, 200, {})));
    try {
      const wf = await file('fail.yaml', `
name: fail
steps:
  - id: each
    loop: { over: [0, 1, 2, 3] }
    steps:
      - { id: call, action: http.request, with: { url: "${server.url}/<<item>>" } }
`);
      const result = await ferry(['run', wf, '--json'], { env: state() });
      expect(result.code).toBe(1);
      const summary = JSON.parse(result.stdout);
      expect(summary.status).toBe('failed');
      expect(summary.error).toMatchObject({ step: 'call', item: 2 });
      expect(result.stderr).toMatch(/failed: step `call`, loop item 2: http answered 400 "user 2 is blocked": GET http:\/\/127.0.0.1:\d+\/2/);
      expect(summary.error.provider).toEqual({ name: 'http', status: 400, error: 'user 2 is blocked' });
      expect(server.seen.map((s) => s.url)).toEqual(['/0', '/1', '/2']);
    } finally {
      await server.close();
    }
  });

  it('exits 2 for an invalid workflow without running anything', async () => {
    const wf = await file('invalid.yaml', 'name: x\nsteps:\n  - id: A\n    action: core.log\n');
    const result = await ferry(['run', wf], { env: state() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`${wf}:3:9: step id \`A\``);
  });
});

describe('ferry actions and schema', () => {
  it('lists every action with its inputs', async () => {
    const result = await ferry(['actions']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('core.log');
    expect(result.stdout).toMatch(/message\*/);
    expect(result.stdout).toContain('http.request');
    const asJson = JSON.parse((await ferry(['actions', '--json'])).stdout) as { name: string }[];
    expect(asJson.map((a) => a.name).sort()).toEqual(['amplitude.export_events', 'amplitude.identify_user', 'amplitude.send_event', 'core.log', 'http.request', 'segment.identify_user', 'segment.track']);
    expect(result.stdout).toMatch(/amplitude\.identify_user\n.*\n(.*\n)*\s+user_properties_json\s+string/);
  });

  it('prints the same schema that schemas/workflow.schema.json holds (run `npm run schema` when this fails)', async () => {
    const result = await ferry(['schema']);
    const onDisk = await readFile(path.join(root, 'schemas/workflow.schema.json'), 'utf8');
    expect(JSON.parse(result.stdout)).toEqual(JSON.parse(onDisk));
  });
});

describe('the command line explains itself', () => {
  it('lists, for every command, each option of its usage line with one line of help', async () => {
    const top = await ferry(['--help']);
    const names = [...top.stdout.matchAll(/^ {2}(\w+) {2,}/gm)].map((m) => m[1] ?? '');
    expect(names).toEqual(expect.arrayContaining(['validate', 'run', 'retry', 'runs', 'show', 'serve', 'worker', 'test', 'init']));
    for (const name of names) {
      const help = await ferry([name, '--help']);
      expect(help.code, name).toBe(0);
      const [usage, ...rest] = help.stdout.split('\n');
      expect(usage, name).toMatch(new RegExp(`^Usage: ferry ${name}\\b`));
      const options = rest.slice(rest.indexOf('Options:') + 1).filter((line) => line !== '');
      expect(options.length, name).toBeGreaterThan(0);
      const described = new Map(options.map((line) => [/--([\w-]+)/.exec(line)?.[1], line]));
      for (const flag of new Set([...(usage ?? '').matchAll(/--([\w-]+)/g)].map((m) => m[1]))) {
        // One line each: the flag, then words saying what it does.
        expect(described.get(flag), `ferry ${name} --${flag}`).toMatch(new RegExp(`^ {2}(-\\w, )?--${flag}( \\S+)? {2,}\\w.{8,}$`));
      }
      expect(described.get('help'), name).toMatch(/^ {2}-h, --help {2,}show this help$/);
    }
  });

  it("shows an option's value and default: `ferry serve --help`", async () => {
    const help = await ferry(['serve', '--help']);
    expect(help.stdout).toContain('\nListen for webhooks and start runs.\n');
    expect(help.stdout).toMatch(/\n {2}--port PORT +the port to listen on \(0: any free port\) \(default: 8787\)\n/);
  });

  it('lists runs in columns as wide as their content, whatever the workflow names', async () => {
    const env = { FERRY_STATE_DIR: path.join(dir, 'columns-state') };
    const long = await file('long.yaml', 'name: a-workflow-with-a-rather-long-name\nsteps:\n  - { id: a, action: core.log, with: { message: hi } }\n');
    const short = await file('short.yaml', 'name: s\nsteps:\n  - { id: a, action: core.log, with: { message: hi } }\n');
    expect((await ferry(['run', long], { env })).code).toBe(0);
    expect((await ferry(['run', short], { env })).code).toBe(0);
    const list = await ferry(['runs'], { env });
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const header = lines[0] ?? '';
    for (const column of ['WORKFLOW', 'STATUS', 'STARTED', 'DURATION']) {
      const at = header.indexOf(column);
      // Every row's cell starts where its header does, two spaces after the widest cell before.
      for (const line of lines.slice(1)) expect(line.slice(at - 2, at), `${column} in ${line}`).toBe('  ');
      for (const line of lines.slice(1)) expect(line[at], `${column} in ${line}`).not.toBe(' ');
    }
    expect(header.indexOf('STATUS') - header.indexOf('WORKFLOW')).toBe('a-workflow-with-a-rather-long-name'.length + 2);
    expect(lines.every((line) => line === line.trimEnd())).toBe(true);
    const filtered = await ferry(['runs', '--workflow', 's', '--status', 'succeeded', '--limit', '1'], { env });
    expect(filtered.stdout.trimEnd().split('\n')).toHaveLength(2);
    expect(filtered.stdout).toMatch(/\n\w{26} {2}s {9}succeeded/);
  });

  it('ends the demo, a sandbox run, by saying what each provider received in plain words', async () => {
    const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.demo).toContain('node dist/cli.js run workflows/sync-signups.yaml --sandbox');
    const demo = await ferry(['run', 'workflows/sync-signups.yaml', '--sandbox'], { env: state() });
    expect(demo.code).toBe(0);
    expect(demo.stderr).toMatch(
      /\nrun \w{26} succeeded in \d+ms\n\nThe sandbox received \(nothing left this machine\):\n {2}Amplitude: 3 users identified, 3 events stored \(2 requests\)\n {2}Segment: 2 users identified \(1 request\)\n$/,
    );
  });
});
