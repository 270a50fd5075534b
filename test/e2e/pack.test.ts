import { execFile, spawn } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { assertBuilt, childEnv, root, until } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';

const exec = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

// What a user gets from the registry: the packed tarball, installed in an empty project.
// Its dependencies come from npm's cache (CI has just run `npm ci`), or the registry.
describe('the published package', () => {
  let project: string;
  let packDir: string;

  beforeAll(async () => {
    assertBuilt();
    packDir = mkdtempSync(path.join(tmpdir(), 'ferry-pack-'));
    project = mkdtempSync(path.join(tmpdir(), 'ferry-installed-'));
    // `--ignore-scripts`: dist/ is built already; `prepare` would rebuild it under the other test files.
    await exec(npm, ['pack', '--pack-destination', packDir, '--silent', '--ignore-scripts'], { cwd: root });
    const tarball = readdirSync(packDir).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack wrote no tarball in ${packDir}`);
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'embedder', private: true, type: 'module' }));
    await exec(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--silent', path.join(packDir, tarball)], { cwd: project });
    copyFileSync(path.join(root, 'workflows/sync-signups.yaml'), path.join(project, 'sync-signups.yaml'));
  }, 180_000);

  afterAll(() => {
    rmSync(packDir, { recursive: true, force: true });
    rmSync(project, { recursive: true, force: true });
  });

  const ferry = (args: string[]) =>
    exec(process.execPath, [path.join(project, 'node_modules/ferry/dist/cli.js'), ...args], { cwd: project, env: childEnv() });

  it('ships its licence, schema and built files, and no sources or tests', () => {
    const files = readdirSync(path.join(project, 'node_modules/ferry'));
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist', 'schemas']));
    expect(files).not.toContain('src');
    expect(files).not.toContain('test');
  });

  it('validates a workflow and runs it against the sandbox with its installed `ferry` command', async () => {
    await ferry(['validate', 'sync-signups.yaml']); // exit 0, or exec rejects
    writeFileSync(path.join(project, 'broken.yaml'), 'name: broken\nsteps:\n  - id: a\n    action: amplitude.nope\n');
    await expect(ferry(['validate', 'broken.yaml'])).rejects.toMatchObject({ code: 2, stdout: expect.stringMatching(/broken\.yaml:4:\d+: .*amplitude\.nope/) });
    const run = await ferry(['run', 'sync-signups.yaml', '--sandbox', '--json']);
    const summary = JSON.parse(run.stdout) as { status: string; steps: Record<string, { status: string }> };
    expect(summary.status).toBe('succeeded');
    expect(Object.values(summary.steps).every((s) => s.status === 'succeeded')).toBe(true);
  }, 60_000);

  it('can be embedded: a runtime and a run session from `ferry`, the emulators from `ferry/sandbox`', async () => {
    writeFileSync(
      path.join(project, 'embed.mjs'),
      `import { createFerry, placeholderSecrets, startRun } from 'ferry';
import { startSandbox } from 'ferry/sandbox';
const ferry = createFerry();
const sandbox = await startSandbox();
const workflow = await ferry.load(new URL('./sync-signups.yaml', import.meta.url).pathname);
const session = startRun(workflow, {
  ferry,
  secrets: placeholderSecrets,
  providerOverrides: {
    amplitude: { api_key: 'sandbox-amplitude-key', base_url: sandbox.amplitude.url },
    segment: { write_key: 'sandbox-segment-key', base_url: sandbox.segment.url },
  },
});
const seen = [];
session.on((event) => seen.push(event.type));
const summary = await session.done;
console.log(JSON.stringify({ name: workflow.name, status: summary.status, events: seen.includes('run-started') && seen.includes('run-finished'), identified: sandbox.amplitude.identifications.length }));
await sandbox.close();
await ferry.close();
`,
    );
    const { stdout } = await exec(process.execPath, ['embed.mjs'], { cwd: project });
    expect(JSON.parse(stdout)).toEqual({ name: 'sync-signups', status: 'succeeded', events: true, identified: 3 });
  }, 60_000);

  it("stops gracefully when a cancelled CI job signals the run step that `ferry init` wrote", async () => {
    // GitHub runs a step as `bash -e <file>` and, on cancel, signals that shell only (SIGINT,
    // then SIGTERM). Only when the step `exec`s the installed binary does ferry get the signal:
    // a shell's child, and `npx` or `npm exec`, leave ferry running until the job is killed.
    await ferry(['init']);
    const gh = parse(readFileSync(path.join(project, '.github/workflows/ferry.yml'), 'utf8')) as { jobs: Record<string, { steps: { run?: string }[] }> };
    const step = gh.jobs.run?.steps.find((s) => s.run?.includes('ferry run'))?.run;
    expect(step).toBeDefined();
    const server = await startServer((_req, res) => void setTimeout(() => json(res, 200, {}), 50));
    try {
      rmSync(path.join(project, 'workflows/sync-users.test.yaml'));
      writeFileSync(
        path.join(project, 'workflows/sync-users.yaml'),
        `name: sync-users\nsteps:\n  - id: each\n    loop: { over: [${Array.from({ length: 200 }, (_, i) => i).join(', ')}], concurrency: 1 }\n    steps:\n      - { id: call, action: http.request, with: { url: "${server.url}/<<item>>" } }\n`,
      );
      writeFileSync(path.join(project, 'step.sh'), `${step ?? ''}\n`);
      const child = spawn('bash', ['--noprofile', '--norc', '-eo', 'pipefail', 'step.sh'], { cwd: project, env: childEnv() });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.resume();
      const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      await until(() => server.seen.length >= 3);
      child.kill('SIGTERM');
      const code = await closed;
      expect(stderr).toContain('run interrupted by SIGTERM');
      expect(code).toBe(143);
      expect(server.seen.length).toBeLessThan(200);
    } finally {
      await server.close();
    }
  }, 60_000);
});

// What the README's "Install" section says, word for word, in an empty project: the git
// repository is this working copy's files committed to a local repository (the same files
// that a push would put on GitHub), and npm installs from it as it would from GitHub:
// it clones it, installs its dev dependencies and runs its `prepare` script, which builds.
describe('installing as the README says', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), 'ferry-git-install-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('installs from the git repository into an empty project, where `ferry init`, validate and test work', async () => {
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Install\n'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
    const commands = block.split('\n').map((line) => line.replace(/\s+#.*$/, '').trim()).filter(Boolean);
    const { repository } = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { repository: { url: string } };
    expect(commands[0]).toBe(`npm install --save-dev ${repository.url}`);

    const repo = path.join(work, 'ferry');
    const files = (await exec('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, maxBuffer: 16 * 1024 * 1024 })).stdout.split('\0').filter(Boolean);
    for (const file of files) if (existsSync(path.join(root, file))) cpSync(path.join(root, file), path.join(repo, file), { verbatimSymlinks: true });
    const git = (...args: string[]) => exec('git', ['-c', 'user.name=ferry tests', '-c', 'user.email=tests@ferry.invalid', '-c', 'commit.gpgsign=false', ...args], { cwd: repo });
    await git('init', '-q');
    await git('add', '-A');
    await git('commit', '-q', '-m', 'working copy');

    const project = path.join(work, 'project');
    mkdirSync(project);
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'my-project', private: true }));
    // Dependencies come from npm's cache when it has them (CI has just run `npm ci`).
    const env = { ...process.env, npm_config_prefer_offline: 'true', npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
    for (const command of commands) {
      const line = command.replace(repository.url, `git+file://${repo}`);
      await exec('sh', ['-c', line], { cwd: project, env, maxBuffer: 16 * 1024 * 1024 }).catch((error: Error & { stderr?: string; stdout?: string }) => {
        throw new Error(`\`${command}\` failed in an empty project: ${error.message}\n${error.stdout ?? ''}${error.stderr ?? ''}`);
      });
    }
    const pkg = JSON.parse(readFileSync(path.join(project, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    expect(pkg.devDependencies.ferry).toMatch(/^git\+file:/);
    expect(existsSync(path.join(project, 'node_modules/ferry/dist/cli.js'))).toBe(true);
    expect(existsSync(path.join(project, 'workflows/sync-users.yaml'))).toBe(true);
    expect(readFileSync(path.join(project, '.gitignore'), 'utf8')).toBe('.ferry/\n');
  }, 600_000);
});
