import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry, type Result } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// What a command loads is what its start-up costs (issue 15): a run that needs no backend, no
// HTTP and no archive reader loads none of them. test/helpers/loaded-modules.mjs records every
// module of the real `ferry` process.
const recorder = pathToFileURL(path.resolve(import.meta.dirname, '../helpers/loaded-modules.mjs')).href;
let dir: string;
let count = 0;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-startup-');
  await writeFile(path.join(dir, 'one.yaml'), 'name: one\nsteps:\n  - id: hello\n    action: core.log\n    with:\n      message: hello\n');
});

/** Runs `ferry` with the recorder; returns its result and the packages it loaded from node_modules. */
async function loading(args: string[], env: Record<string, string> = {}): Promise<{ result: Result; packages: Set<string> }> {
  const out = path.join(dir, `modules-${count++}.txt`);
  const result = await ferry(args, { cwd: dir, env: { NODE_OPTIONS: `--import ${recorder}`, FERRY_TEST_MODULES_OUT: out, ...env } });
  const lines = (await readFile(out, 'utf8')).split('\n');
  const packages = new Set(lines.flatMap((line) => [...line.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)\//g)].map((m) => m[1] as string)));
  return { result, packages };
}

const NOT_FOR_A_LOCAL_LOG_RUN = ['bullmq', 'ioredis', 'undici', 'yauzl', 'csv-parse', 'handlebars'];

describe('what `ferry run` loads', () => {
  it('never loads bullmq or ioredis (nor undici, yauzl, csv-parse, handlebars) for a core.log run without --backend', async () => {
    const { result, packages } = await loading(['run', 'one.yaml', '--state-dir', 'state']);
    expect(result).toMatchObject({ code: 0 });
    expect(result.stderr).toContain('[hello] hello');
    expect(NOT_FOR_A_LOCAL_LOG_RUN.filter((name) => packages.has(name))).toEqual([]);
    // The recorder sees packages: the run's own queue is one.
    expect(packages.has('p-queue')).toBe(true);
  });

  it('loads ioredis and bullmq with --backend (the recorder sees them when they load)', async () => {
    // Nothing listens on port 1: the command fails at once, after loading the backend.
    const { result, packages } = await loading(['run', 'one.yaml', '--backend', 'redis://127.0.0.1:1/0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('is not reachable');
    expect(packages.has('ioredis')).toBe(true);
    expect(packages.has('bullmq')).toBe(true);
  });

  it('loads undici for --dry-run, which answers calls with its MockAgent, and still no backend', async () => {
    const { result, packages } = await loading(['run', 'one.yaml', '--dry-run']);
    expect(result.code).toBe(0);
    expect(packages.has('undici')).toBe(true);
    expect(packages.has('ioredis') || packages.has('bullmq')).toBe(false);
  });
});
