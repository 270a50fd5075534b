import { chmod, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;
let stateDir: string;
let wf: string;

beforeAll(() => assertBuilt());
beforeEach(async () => {
  dir = await tempDir('ferry-folders-');
  stateDir = path.join(dir, 'state');
  wf = path.join(dir, 'wf.yaml');
  await writeFile(wf, 'name: hello\nsteps:\n  - id: say\n    action: core.log\n    with: { message: hi }\n');
});

const env = () => ({ FERRY_STATE_DIR: stateDir });
const mode = async (file: string) => ((await stat(file)).mode & 0o777).toString(8);

async function oneRun(): Promise<string> {
  const run = await ferry(['run', wf], { env: env() });
  expect(run.code).toBe(0);
  const [runId] = await readdir(path.join(stateDir, 'runs'));
  return runId as string;
}

describe('run folders are readable by their owner only', () => {
  it('creates runs/, the run folder, the journal and the workflow copy owner-only', async () => {
    const runId = await oneRun();
    const runDir = path.join(stateDir, 'runs', runId);
    expect(await mode(path.join(stateDir, 'runs'))).toBe('700');
    expect(await mode(runDir)).toBe('700');
    expect(await mode(path.join(runDir, 'journal.jsonl'))).toBe('600');
    expect(await mode(path.join(runDir, 'workflow.yaml'))).toBe('600');
  });

  it('makes a run folder left open by an older ferry owner-only when the run is retried', async () => {
    await writeFile(wf, `name: hello\nretry: { attempts: 1 }\nsteps:\n  - id: say\n    action: http.request\n    with: { method: GET, url: "http://127.0.0.1:9/closed" }\n`);
    const run = await ferry(['run', wf], { env: env() });
    expect(run.code).toBe(1);
    const [runId] = await readdir(path.join(stateDir, 'runs'));
    const runDir = path.join(stateDir, 'runs', runId as string);
    await chmod(path.join(stateDir, 'runs'), 0o755);
    await chmod(runDir, 0o755);
    await chmod(path.join(runDir, 'journal.jsonl'), 0o644);
    await ferry(['retry', runId as string], { env: env() });
    expect(await mode(path.join(stateDir, 'runs'))).toBe('700');
    expect(await mode(runDir)).toBe('700');
    expect(await mode(path.join(runDir, 'journal.jsonl'))).toBe('600');
  });
});

describe('a corrupt journal is reported for its run', () => {
  const ids = {
    binary: '01M8MX6D8TRNMWDKMXHFAFBSA1',
    empty: '01M8MX6D8TRNMWDKMXHFAFBSA2',
    noRunEntry: '01M8MX6D8TRNMWDKMXHFAFBSA3',
    noJournal: '01M8MX6D8TRNMWDKMXHFAFBSA4',
    damagedLines: '01M8MX6D8TRNMWDKMXHFAFBSA5',
  };

  async function corruptRuns(goodRunId: string): Promise<void> {
    const folder = (id: string) => path.join(stateDir, 'runs', id);
    for (const id of Object.values(ids)) await mkdir(folder(id), { recursive: true });
    await writeFile(path.join(folder(ids.binary), 'journal.jsonl'), Buffer.from([0x00, 0xff, 0xfe, 0x0a, 0x1b, 0x5b, 0x32, 0x4a, 0x0a, 0x7b, 0x80, 0x0a]));
    await writeFile(path.join(folder(ids.empty), 'journal.jsonl'), '');
    await writeFile(path.join(folder(ids.noRunEntry), 'journal.jsonl'), '{"t":"step","id":"say","item":[],"status":"succeeded","ms":1}\n{"t":"end","status":"succeeded","at":"2024-01-01T00:00:00.000Z","ms":1,"error":null}\n');
    // A good journal with lines that parse as JSON but are no entries, and garbage between them.
    const good = await readFile(path.join(folder(goodRunId), 'journal.jsonl'), 'utf8');
    const [runLine, ...rest] = good.split('\n');
    await writeFile(path.join(folder(ids.damagedLines), 'journal.jsonl'), [runLine?.replace(goodRunId, ids.damagedLines), 'null', '{"t":"step"}', '\u0000\u0001garbage', '42', ...rest].join('\n'));
  }

  it('lists every run, the corrupt ones as corrupt with the problem, and shows the others', async () => {
    const goodRunId = await oneRun();
    await corruptRuns(goodRunId);

    const list = await ferry(['runs'], { env: env() });
    expect(list.code).toBe(0);
    expect(list.stderr).toBe('');
    const line = (id: string) => list.stdout.split('\n').find((l) => l.startsWith(id)) ?? `(no line for ${id})`;
    expect(line(goodRunId)).toMatch(/hello\s+succeeded/);
    expect(line(ids.binary)).toMatch(/corrupt .*\(corrupt journal: journal\.jsonl has no readable `run` entry \(3 unreadable lines\)\)$/);
    expect(line(ids.empty)).toMatch(/corrupt .*\(corrupt journal: journal\.jsonl is empty\)$/);
    expect(line(ids.noRunEntry)).toMatch(/corrupt .*\(corrupt journal: journal\.jsonl has no readable `run` entry \(0 unreadable lines\)\)$/);
    expect(line(ids.noJournal)).toMatch(/corrupt .*\(corrupt journal: journal\.jsonl is missing\)$/);
    expect(line(ids.damagedLines)).toMatch(/hello\s+succeeded .*\(4 unreadable journal lines\)$/);

    const json = await ferry(['runs', '--json'], { env: env() });
    expect(json.code).toBe(0);
    const listed = JSON.parse(json.stdout) as { runId: string; status: string; problem?: string }[];
    expect(listed.find((r) => r.runId === ids.empty)).toMatchObject({ status: 'corrupt', problem: 'journal.jsonl is empty' });
    expect(listed).toHaveLength(6);

    const show = await ferry(['show', goodRunId], { env: env() });
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('status    succeeded');
    const damaged = await ferry(['show', ids.damagedLines], { env: env() });
    expect(damaged.code).toBe(0);
    expect(damaged.stdout).toContain('(4 unreadable journal lines skipped');

    for (const command of ['show', 'retry']) {
      const corrupt = await ferry([command, ids.binary], { env: env() });
      expect(corrupt.code).toBe(2);
      expect(corrupt.stderr).toMatch(new RegExp(`^ferry ${command}: run ${ids.binary} cannot be (shown|resumed): its journal is corrupt \\(journal\\.jsonl has no readable \`run\` entry`));
    }
  });

  it('starts a retry on a fresh line after the torn last line of a killed process', async () => {
    await writeFile(wf, `name: hello\nretry: { attempts: 1 }\nsteps:\n  - id: say\n    action: http.request\n    with: { method: GET, url: "http://127.0.0.1:9/closed" }\n`);
    expect((await ferry(['run', wf], { env: env() })).code).toBe(1);
    const [runId] = await readdir(path.join(stateDir, 'runs'));
    const journal = path.join(stateDir, 'runs', runId as string, 'journal.jsonl');
    await writeFile(journal, `${await readFile(journal, 'utf8')}{"t":"step","id":"sa`);

    await ferry(['retry', runId as string], { env: env() });
    const lines = (await readFile(journal, 'utf8')).split('\n');
    expect(lines).toContain('{"t":"step","id":"sa');
    expect(lines.filter((l) => l.startsWith('{"t":"resume"'))).toHaveLength(1);
    const show = await ferry(['show', runId as string], { env: env() });
    expect(show.stdout).toContain('(1 unreadable journal line skipped');
  });
});
