import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, spawnFerry, until } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// Files an attacker or an accident hands to ferry: each is refused at once with a located
// error, and nothing waits on a pipe or reads a device forever.

let dir: string;
const valid = 'name: ok\nsteps:\n  - { id: a, action: core.log, with: { message: hi } }\n';

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-bounded-');
});

describe('workflow paths that are not files', () => {
  it('refuses a FIFO nobody writes to, in validate and run, without waiting on it', async () => {
    const fifo = path.join(dir, 'pipe.yaml');
    execFileSync('mkfifo', [fifo]);
    const checked = await ferry(['validate', 'pipe.yaml'], { cwd: dir });
    expect(checked.code).toBe(2);
    expect(checked.stdout).toMatch(/^pipe\.yaml:1:1: this is a named pipe \(FIFO\), not a workflow file/);
    const ran = await ferry(['run', 'pipe.yaml', '--dry-run'], { cwd: dir });
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain('pipe.yaml:1:1: this is a named pipe (FIFO), not a workflow file');
  });

  it('refuses a FIFO named as a test case\'s workflow in `ferry test`, without waiting on it', async () => {
    const folder = path.join(dir, 'tested');
    await mkdir(folder);
    execFileSync('mkfifo', [path.join(folder, 'piped.yaml')]);
    await writeFile(path.join(folder, 'piped.test.yaml'), 'workflow: piped.yaml\ncases:\n  - name: logs\n');
    const tested = await ferry(['test', 'piped.test.yaml'], { cwd: folder });
    expect(tested.code).toBe(2);
    expect(tested.stdout + tested.stderr).toContain('this is a named pipe (FIFO), not a workflow file');
  });

  it('refuses /dev/zero instead of reading it forever', async () => {
    const checked = await ferry(['validate', '/dev/zero', '--format', 'json']);
    expect(checked.code).toBe(2);
    expect(JSON.parse(checked.stdout)).toEqual([{ file: '/dev/zero', line: 1, col: 1, code: 'FERRY_FILE_NOT_REGULAR', message: expect.stringMatching(/^this is a device/) }]);
    const ran = await ferry(['run', '/dev/zero', '--dry-run']);
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain('this is a device, not a workflow file');
  });

  it('refuses a folder given to run as its workflow', async () => {
    await mkdir(path.join(dir, 'flows.yaml'));
    const ran = await ferry(['run', 'flows.yaml', '--dry-run'], { cwd: dir });
    expect(ran.code).toBe(2);
    expect(ran.stderr).toContain('flows.yaml:1:1: this is a folder, not a workflow file');
  });

  it('skips a FIFO inside a folder with a warning and checks the files beside it', async () => {
    const folder = path.join(dir, 'mixed');
    await mkdir(folder);
    await writeFile(path.join(folder, 'good.yaml'), valid);
    execFileSync('mkfifo', [path.join(folder, 'trap.yaml')]);
    const checked = await ferry(['validate', 'mixed', '--verbose'], { cwd: dir });
    expect(checked.code).toBe(0);
    expect(checked.stderr).toContain('warning: skipping mixed/trap.yaml: not a regular file');
    expect(checked.stderr).toContain('ok mixed/good.yaml');
  });
});

describe('file contents', () => {
  it('reports the first byte that is not UTF-8 at its line and column', async () => {
    const bytes = Buffer.concat([Buffer.from('name: bad\nsteps:\n  - { id: a, action: core.log, with: { message: "caf\u00e9 '), Buffer.from([0xff, 0xfe]), Buffer.from('" } }\n')]);
    await writeFile(path.join(dir, 'latin.yaml'), bytes);
    const checked = await ferry(['validate', 'latin.yaml', '--format', 'json'], { cwd: dir });
    expect(checked.code).toBe(2);
    expect(JSON.parse(checked.stdout)).toEqual([{ file: 'latin.yaml', line: 3, col: 55, code: 'FERRY_FILE_ENCODING', message: expect.stringContaining('byte 0xff') }]);
  });

  it('refuses a 10 MB file before reading it', async () => {
    const items = Array.from({ length: 400_000 }, (_, i) => `          - user-${i}-padding`).join('\n');
    await writeFile(path.join(dir, 'huge.yaml'), `name: huge\ntriggers:\n  - type: manual\n    inputs:\n      users:\n        type: array\n        default:\n${items}\nsteps:\n  - { id: a, action: core.log, with: { message: hi } }\n`);
    const checked = await ferry(['validate', 'huge.yaml'], { cwd: dir });
    expect(checked.code).toBe(2);
    expect(checked.stdout).toMatch(/^huge\.yaml:1:1: the file has [\d,]+ bytes; a workflow file holds at most 1 MiB/);
  });
});

describe('signals', () => {
  it('ends `ferry validate` of a large folder on SIGTERM with exit 143', async () => {
    const folder = path.join(dir, 'many');
    await mkdir(folder);
    const steps = Array.from({ length: 2000 }, (_, i) => `  - { id: s${i}, action: core.log, with: { message: "<<steps.s${i - 1}.output>> ${i}" } }`);
    const text = `name: NAME\nsteps:\n  - { id: s0, action: core.log, with: { message: hi } }\n${steps.slice(1).join('\n')}\n`;
    for (let i = 0; i < 200; i++) await writeFile(path.join(folder, `w${String(i).padStart(3, '0')}.yaml`), text.replace('NAME', `w${i}`));
    const { child, done } = spawnFerry(['validate', folder, '--verbose']);
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    await until(() => err.includes('ok '));
    child.kill('SIGTERM');
    const stopped = await done;
    expect(stopped.code).toBe(143);
    expect(stopped.stderr).toContain('ferry validate: stopped by SIGTERM');
    expect(stopped.stderr.match(/^ok /gm)?.length ?? 0).toBeLessThan(200);
  });
});
