import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-ci-');
  await writeFile(path.join(dir, 'bad.yaml'), 'name: bad\nsteps:\n  - id: one\n    action: core.lgo\n  - id: two\n    action: core.log\n    with: { message: "50%: <<steps.three.output>>" }\n');
  await writeFile(path.join(dir, 'good.yaml'), 'name: good\nsteps:\n  - id: hello\n    action: core.log\n    with: { message: hello }\n');
  await writeFile(path.join(dir, 'good.test.yaml'), 'workflow: good.yaml\ncases:\n  - name: says hello, then goodbye\n    expect:\n      logs: [hello, goodbye]\n');
});

describe('output for CI', () => {
  it('ferry validate --format github prints one ::error annotation per mistake, at its line and column', async () => {
    const result = await ferry(['validate', 'bad.yaml', 'good.yaml', '--format', 'github'], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stdout.trim().split('\n')).toEqual([
      '::error file=bad.yaml,line=4,col=13::unknown action `core.lgo`; did you mean `core.log`? (`ferry actions` lists them)',
      '::error file=bad.yaml,line=7,col=28::`steps.three.output`: there is no step `three`',
    ]);
  });

  it('ferry validate --format json prints a list of {file,line,col,code,message}, empty when valid', async () => {
    const bad = await ferry(['validate', 'bad.yaml', '--format', 'json'], { cwd: dir });
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toEqual([
      { file: 'bad.yaml', line: 4, col: 13, code: 'FERRY_UNKNOWN_ACTION', message: 'unknown action `core.lgo`; did you mean `core.log`? (`ferry actions` lists them)' },
      { file: 'bad.yaml', line: 7, col: 28, code: 'FERRY_REF_UNKNOWN_STEP', message: '`steps.three.output`: there is no step `three`' },
    ]);
    const good = await ferry(['validate', 'good.yaml', '--format', 'json'], { cwd: dir });
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout)).toEqual([]);
  });

  it('ferry test --reporter github adds an annotation at the unmet expectation', async () => {
    const result = await ferry(['test', 'good.test.yaml', '--reporter', 'github'], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('good.test.yaml:5:21: no log line contains "goodbye"');
    expect(result.stdout).toContain('::error file=good.test.yaml,line=5,col=21,title=ferry test%3A says hello%2C then goodbye::no log line contains "goodbye"%0Athe run logged:%0A  hello\n');
  });
});
