import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-init-');
});

interface GithubWorkflow {
  on: Record<string, unknown>;
  jobs: Record<string, { if: string; steps: { run?: string; env?: Record<string, string> }[] }>;
}

describe('ferry init', () => {
  it('scaffolds a workflow, its tests and a GitHub Actions file that pass `ferry validate` and `ferry test` as generated', async () => {
    const init = await ferry(['init', 'project'], { cwd: dir });
    expect(init.code).toBe(0);
    expect(init.stdout).toContain('created project/workflows/sync-users.yaml\ncreated project/workflows/sync-users.test.yaml\ncreated project/.github/workflows/ferry.yml\n');
    const project = path.join(dir, 'project');
    const workflow = await readFile(path.join(project, 'workflows/sync-users.yaml'), 'utf8');
    expect(workflow.split('\n')[0]).toBe('# yaml-language-server: $schema=../node_modules/ferry/schemas/workflow.schema.json');
    const tests = await readFile(path.join(project, 'workflows/sync-users.test.yaml'), 'utf8');
    expect(tests.split('\n')[0]).toBe('# yaml-language-server: $schema=../node_modules/ferry/schemas/test.schema.json');

    const validate = await ferry(['validate', 'workflows', '--format', 'github'], { cwd: project });
    expect(validate).toMatchObject({ code: 0, stdout: '' });
    const test = await ferry(['test', 'workflows'], { cwd: project });
    expect(test.code).toBe(0);
    expect(test.stdout).toContain('3 passed — 1 file in');
  });

  it('checks on pull requests and runs on a schedule with the keys from the repository secrets', async () => {
    const text = await readFile(path.join(dir, 'project/.github/workflows/ferry.yml'), 'utf8');
    const gh = parse(text) as GithubWorkflow;
    expect(Object.keys(gh.on)).toEqual(expect.arrayContaining(['pull_request', 'schedule']));
    const check = gh.jobs.check;
    const runJob = gh.jobs.run;
    expect(check?.if).toContain("github.event_name == 'pull_request'");
    expect(check?.steps.map((s) => s.run).filter(Boolean)).toEqual([
      'npm ci',
      './node_modules/.bin/ferry validate workflows --format github',
      './node_modules/.bin/ferry test workflows --reporter github --reporter junit --output reports/ferry-test.xml',
    ]);
    expect(runJob?.if).toContain("github.event_name == 'schedule'");
    // `exec`: the step's shell becomes ferry, so a cancelled job's signal reaches it (pack.test.ts runs it).
    const step = runJob?.steps.find((s) => s.run?.includes('ferry run'));
    expect(step?.run).toBe('exec ./node_modules/.bin/ferry run workflows/sync-users.yaml');
    expect(step?.env).toEqual({ AMPLITUDE_API_KEY: '${{ secrets.AMPLITUDE_API_KEY }}', SEGMENT_WRITE_KEY: '${{ secrets.SEGMENT_WRITE_KEY }}' });
  });

  it('refuses to overwrite existing files and writes none of the others', async () => {
    const other = await tempDir('ferry-init-');
    await ferry(['init'], { cwd: other });
    await writeFile(path.join(other, 'workflows/sync-users.yaml'), 'name: mine\n');
    const again = await ferry(['init'], { cwd: other });
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('not overwriting workflows/sync-users.yaml, workflows/sync-users.test.yaml, .github/workflows/ferry.yml');
    expect(await readFile(path.join(other, 'workflows/sync-users.yaml'), 'utf8')).toBe('name: mine\n');
    expect(again.stdout).toBe('');
  });

  it('adds .ferry/ to .gitignore once, keeping what is there, and says how to install ferry from git', async () => {
    const project = await tempDir('ferry-init-');
    await writeFile(path.join(project, '.gitignore'), 'node_modules');
    const first = await ferry(['init'], { cwd: project });
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('added .ferry/ to .gitignore');
    expect(first.stdout).toContain('\n  npm install --save-dev git+https://github.com/ferry-dev/ferry.git ');
    expect(first.stdout).not.toContain('npm install --save-dev ferry');
    expect(await readFile(path.join(project, '.gitignore'), 'utf8')).toBe('node_modules\n.ferry/\n');

    const again = await tempDir('ferry-init-');
    await writeFile(path.join(again, '.gitignore'), '/.ferry\n');
    await writeFile(path.join(again, 'package.json'), JSON.stringify({ devDependencies: { ferry: 'git+https://github.com/ferry-dev/ferry.git' } }));
    const second = await ferry(['init'], { cwd: again });
    expect(second.code).toBe(0);
    expect(await readFile(path.join(again, '.gitignore'), 'utf8')).toBe('/.ferry\n');
    expect(second.stdout).not.toContain('.gitignore');
    expect(second.stdout).not.toContain('npm install');

    const fresh = await tempDir('ferry-init-');
    expect((await ferry(['init'], { cwd: fresh })).stdout).toContain('created .gitignore');
    expect(await readFile(path.join(fresh, '.gitignore'), 'utf8')).toBe('.ferry/\n');
  });
});
