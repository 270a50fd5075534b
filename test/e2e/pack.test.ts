import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, root } from '../helpers/cli.js';

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
    await exec(npm, ['pack', '--pack-destination', packDir, '--silent'], { cwd: root });
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
    exec(process.execPath, [path.join(project, 'node_modules/ferry/dist/cli.js'), ...args], { cwd: project, env: { PATH: process.env.PATH ?? '' } });

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
});
