import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// A full disk and a read-only state dir, for real: small tmpfs mounts (tests and CI run as root).
let sandbox: Sandbox;
let dir: string;
const mounts: string[] = [];

function mount(target: string, options: string): void {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', target], { stdio: 'pipe' });
  } catch (error) {
    throw new Error(`these tests mount a small tmpfs and need root (CI runs them as root): mount -o ${options} ${target} failed: ${String((error as { stderr?: Buffer }).stderr ?? error)}`);
  }
  mounts.push(target);
}

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: ['amp-key-0123456789abcdef'] });
  dir = await tempDir('ferry-disk-');
});
afterAll(async () => {
  for (const target of mounts.reverse()) execFileSync('umount', [target]);
  await sandbox.close();
  await rm(dir, { recursive: true, force: true });
});

const USERS = 600;
const users = Array.from({ length: USERS }, (_, i) => ({ id: `user_${100_000 + i}` }));

describe('a full disk is an error, not a crash', () => {
  it('stops with a clear message when the journal fills the disk, and resumes without a torn line once there is room', async () => {
    const stateDir = path.join(dir, 'full');
    await mkdir(stateDir);
    mount(stateDir, 'size=300k');
    // Leave room for the start of the run only: the journal fills the disk mid-loop.
    await writeFile(path.join(stateDir, 'filler'), Buffer.alloc(240 * 1024));
    const wf = path.join(dir, 'loop.yaml');
    await writeFile(
      wf,
      `name: filling
secrets: [AMP_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", base_url: ${sandbox.amplitude.url}, batch: false }
steps:
  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 4 }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: <<user.id>>, event_type: Synced, event_properties: { note: "a line long enough to fill a small disk quickly" } }
`,
    );
    await writeFile(path.join(dir, 'users.json'), JSON.stringify(users));
    const env = { AMP_KEY: 'amp-key-0123456789abcdef', FERRY_STATE_DIR: stateDir };

    const first = await ferry(['run', wf, '--input', `users=@${path.join(dir, 'users.json')}`], { env });
    expect(first.code).toBe(1);
    expect(first.stderr).not.toMatch(/\n\s+at /);
    expect(first.stderr).toContain(`the disk holding the state dir ${stateDir} is full (ENOSPC)`);
    const runId = /resume with: ferry retry ([0-9A-Z]{26})\n$/.exec(first.stderr)?.[1];
    expect(runId).toBeDefined();
    const sentBefore = sandbox.amplitude.requests.length;
    expect(sentBefore).toBeGreaterThan(0);
    expect(sentBefore).toBeLessThan(USERS);

    await rm(path.join(stateDir, 'filler'));
    const retry = await ferry(['retry', runId!], { env });
    expect(retry.code).toBe(0);

    const lines = (await readFile(path.join(stateDir, 'runs', runId!, 'journal.jsonl'), 'utf8')).split('\n');
    expect(lines.pop()).toBe('');
    for (const line of lines) expect(() => JSON.parse(line) as unknown, line).not.toThrow();
    expect(lines.filter((l) => l.startsWith('{"t":"resume"'))).toHaveLength(1);
    // Every user arrived; one sent twice (its record lost to the full disk) kept its insert_id.
    const keysByUser = new Map<string, Set<string>>();
    for (const request of sandbox.amplitude.requests) {
      for (const e of (request.body as { events?: { user_id: string; insert_id: string }[] }).events ?? []) {
        keysByUser.set(e.user_id, (keysByUser.get(e.user_id) ?? new Set()).add(e.insert_id));
      }
    }
    expect(keysByUser.size).toBe(USERS);
    expect([...keysByUser.values()].filter((keys) => keys.size !== 1)).toEqual([]);
  });

  it('leaves no run behind, and no resume hint, when not even the run entry fits on the disk', async () => {
    const stateDir = path.join(dir, 'no-room');
    await mkdir(stateDir);
    mount(stateDir, 'size=64k');
    await writeFile(path.join(stateDir, 'filler'), Buffer.alloc(56 * 1024));
    const wf = path.join(dir, 'big-input.yaml');
    await writeFile(wf, 'name: big-input\ntriggers: [{ type: manual, inputs: { note: { type: string } } }]\nsteps: [{ id: say, action: core.log, with: { message: "<<inputs.note>>" } }]\n');
    const result = await ferry(['run', wf, '--state-dir', stateDir, '--input', `note=${'x'.repeat(16 * 1024)}`]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/ENOSPC|full/);
    expect(result.stderr).toContain('the run did not start and nothing was sent');
    expect(result.stderr).not.toContain('ferry retry');
    const runs = await readdir(path.join(stateDir, 'runs')).catch(() => []);
    expect(runs).toEqual([]);
  });

  it('says that a read-only state dir is not writable, names it and how to choose another', async () => {
    const ro = path.join(dir, 'ro');
    await mkdir(ro);
    mount(ro, 'ro,size=64k');
    const wf = path.join(dir, 'log.yaml');
    await writeFile(wf, 'name: logs\nsteps:\n  - id: hello\n    action: core.log\n    with: { message: hi }\n');
    for (const stateDir of [ro, path.join(ro, 'state')]) {
      const result = await ferry(['run', wf, '--state-dir', stateDir]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`ferry run: the state dir ${stateDir} is not writable (EROFS): choose another with --state-dir DIR or FERRY_STATE_DIR`);
      expect(result.stderr).not.toMatch(/ENOENT|\n\s+at /);
    }
  });
});
