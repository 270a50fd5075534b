import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureIO } from '../../src/cli/io.js';
import { formatCount, formatDuration, renderProgress } from '../../src/cli/progress.js';
import { runCommand } from '../../src/cli/run-command.js';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

/** The escape that starts every cursor movement of the live display. */
const ESC = '\x1b';
let dir: string;
let server: Awaited<ReturnType<typeof startServer>>;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-progress-');
  // The first request of each run is throttled with Retry-After: 1; the rest answer after 40 ms.
  server = await startServer((req, res) => {
    if (req.url.endsWith('/throttle/0') && !server.seen.slice(0, -1).some((s) => s.url === req.url)) {
      json(res, 429, { error: 'slow down' }, { 'retry-after': '1' });
      return;
    }
    // Long calls for the CI test: its loop must outlast one plain-progress interval.
    setTimeout(() => json(res, 200, { ok: true }), req.url.includes('/ci-slow/') ? 1_100 : 40);
  });
  const workflow = (name: string, items: number, pathPart: string): string => `name: ${name}
steps:
  - id: each
    loop: { over: ${JSON.stringify(Array.from({ length: items }, (_, i) => i))}, as: n, concurrency: 1 }
    steps:
      - id: call
        action: http.request
        with: { url: "${server.url}/${pathPart}/<<n>>" }
  - id: done
    action: core.log
    with: { message: finished }
`;
  const fileWorkflow = (name: string, rows: string, pathPart: string): string => `name: ${name}
steps:
  - id: each
    loop: { file: ${rows}, as: row, concurrency: 1 }
    steps:
      - id: call
        action: http.request
        with: { url: "${server.url}/${pathPart}/<<loop.index>>" }
`;
  await writeFile(path.join(dir, 'rows.csv'), `id,name\n${Array.from({ length: 10 }, (_, i) => `user_${i},Name ${i}`).join('\n')}\n`);
  await writeFile(path.join(dir, 'file-throttled.yaml'), fileWorkflow('file-throttled', 'rows.csv', 'file/throttle'));
  await writeFile(path.join(dir, 'file-slow.yaml'), fileWorkflow('file-slow', 'rows.csv', 'ci-slow'));
  await writeFile(path.join(dir, 'throttled.yaml'), workflow('throttled', 3, 'throttle'));
  await writeFile(path.join(dir, 'slow.yaml'), workflow('slow', 8, 'slow'));
  await writeFile(path.join(dir, 'failing.yaml'), `name: failing\nsteps:\n  - id: call\n    action: http.request\n    with: { url: "${server.url}/missing", expect: [201] }\n`);
});

afterAll(async () => {
  await server?.close();
});

const run = async (file: string, options: { tty: boolean; env?: Record<string, string>; flags?: string[] }) => {
  const io = captureIO(options.env ?? {}, dir);
  io.isTTY = options.tty;
  const code = await runCommand(['run', file, '--state-dir', path.join(dir, '.ferry'), ...(options.flags ?? [])], io);
  return { code, err: io.err };
};

describe('formatCount', () => {
  it('groups thousands as en-US does, for counts and fractions', () => {
    for (const n of [0, 7, 999, 1000, 12_345, 999_999, 1_000_000, 1_234_567_890, 1234.5]) expect(formatCount(n)).toBe(n.toLocaleString('en-US'));
  });
});

describe('progress on stderr', () => {
  it('prints one plain line per step and per provider pause when stderr is not a terminal', async () => {
    const result = await ferry(['run', 'throttled.yaml'], { cwd: dir });
    expect(result.code).toBe(0);
    const lines = result.stderr.split('\n');
    expect(lines).toContain('  http paused for 1s (429): the provider asked to wait');
    expect(lines.some((l) => /^✓ each {2}succeeded {2}3 items {2}1 retry {2}\d+ms$/.test(l))).toBe(true);
    expect(lines).toContain('  [done] finished');
    expect(lines.some((l) => /^✓ done {2}succeeded {2}\d+ms$/.test(l))).toBe(true);
    // Nothing is redrawn: no carriage returns, no cursor movement.
    expect(result.stderr).not.toContain('\r');
    expect(result.stderr).not.toContain(ESC);
    expect(result.stdout).toBe('');
  });

  it('stays plain on a terminal when CI=true', async () => {
    const { code, err } = await run('slow.yaml', { tty: true, env: { CI: 'true' } });
    expect(code).toBe(0);
    expect(err).toMatch(/^✓ each {2}succeeded {2}8 items {2}\d+ms$/m);
    expect(err).not.toContain(ESC);
  });

  it('redraws a live line on a terminal with done/total, percent, rate and ETA, then leaves the step line', async () => {
    const { code, err } = await run('slow.yaml', { tty: true });
    expect(code).toBe(0);
    expect(err).toMatch(/… each {2}\d\/8 {2}\d+% {2}[\d.]+\/s/);
    expect(err).toMatch(/ETA \d+s/);
    expect(err).toContain(`${ESC}[1A\r${ESC}[J`);
    // Once the loop ends its live line is erased and the permanent line stays.
    expect(err).toContain(`${ESC}[1A\r${ESC}[J✓ each  succeeded  8 items`);
  });

  it('shows only errors with --quiet', async () => {
    const ok = await run('slow.yaml', { tty: true, flags: ['--quiet'] });
    expect(ok).toEqual({ code: 0, err: '' });
    const failed = await run('failing.yaml', { tty: false, flags: ['--quiet'] });
    expect(failed.code).toBe(1);
    expect(failed.err).toMatch(/^\nrun \w+ failed: step `call`: http answered 200/);
    expect(failed.err).not.toContain('✗ call');
  });
});

describe('progress of a file loop off a terminal (CI)', () => {
  // rows.csv: an 8-byte header and ten rows of 14 bytes = 148 bytes.
  it('prints the loop\'s line at a pause: items done, percent and bytes read of the file, rate, time left', async () => {
    const result = await ferry(['run', 'file-throttled.yaml'], { cwd: dir, env: { CI: 'true' } });
    expect(result.code).toBe(0);
    const lines = result.stderr.split('\n');
    const paused = lines.findIndex((l) => l.startsWith('  http paused for 1s (429)'));
    expect(paused).toBeGreaterThanOrEqual(0);
    // The first row was taken (the header and it are 22 of 148 bytes; CSV positions are
    // estimated per row) and is waiting for the pause to end: the file is not read as done.
    const line = lines[paused + 1] ?? '';
    expect(line).toMatch(/^… each {2}0 items {2}\d+% {2}\d+ B\/148 B {2}0\.0\/s {2}ETA \d+s$/);
    expect(Number(/ (\d+) B\//.exec(line)?.[1])).toBeGreaterThanOrEqual(10);
    expect(Number(/ (\d+) B\//.exec(line)?.[1])).toBeLessThanOrEqual(30);
    expect(result.stderr).not.toContain(ESC);
  });

  it('prints the running loop\'s line every 10 s, so that a long CI log is never silent', async () => {
    // Ten calls of 1.1 s each, one at a time: the loop runs past the first 10 s mark.
    const result = await ferry(['run', 'file-slow.yaml'], { cwd: dir, env: { CI: 'true' } });
    expect(result.code).toBe(0);
    const lines = result.stderr.split('\n');
    const progress = lines.filter((l) => l.startsWith('… each'));
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress[0]).toMatch(/^… each {2}\d items {2}\d+% {2}\d+ B\/148 B {2}[\d.]+\/s {2}ETA \d+s$/);
    // Before the step's own line, which ends the loop.
    expect(lines.indexOf(progress[0] as string)).toBeLessThan(lines.findIndex((l) => l.startsWith('✓ each')));
    expect(result.stderr).not.toContain(ESC);
  }, 30_000);
});

describe('the live display', () => {
  it('says how far a loop is, how fast it goes, when it ends, its retries and the pauses still running', () => {
    const now = 1_000_000;
    const lines = renderProgress(
      {
        step: 'each_user',
        startedAt: now - 10_000,
        loop: { total: 10_000, done: 2_500, retries: 3 },
        pauses: new Map([
          ['amplitude', { until: now + 12_300, reason: '429' }],
          ['segment', { until: now - 1, reason: '503' }],
        ]),
      },
      now,
    );
    expect(lines).toEqual(['… each_user  2,500/10,000  25%  250/s  ETA 30s  3 retries', '  amplitude paused (429), resumes in 13s']);
  });

  it('counts items without a total for file loops, and shows how long a single step has run', () => {
    expect(renderProgress({ step: 'rows', startedAt: 0, loop: { total: undefined, done: 42, retries: 0 }, pauses: new Map() }, 2_000)).toEqual(['… rows  42 items  21/s']);
    expect(renderProgress({ step: 'export', startedAt: 0, loop: undefined, pauses: new Map() }, 61_900)).toEqual(['… export  running 1m 1s']);
  });

  it('writes durations in seconds, minutes and hours', () => {
    expect([formatDuration(400), formatDuration(59_001), formatDuration(3_600_000 + 5 * 60_000)]).toEqual(['1s', '1m 0s', '1h 5m']);
  });
});
