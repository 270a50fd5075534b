import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, bin } from '../helpers/cli.js';
import { json, startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

/*
 * The live progress display in a real terminal: tmux runs ferry in a pane (a pty and a
 * terminal emulator), and `capture-pane` shows what a person would see. The pane is narrower
 * than a progress line and short, so a line that wraps or a block that is taller than the
 * pane would leave copies of itself behind.
 */
const run = promisify(execFile);
const socket = `ferry-test-${process.pid}`;
const tmux = (...args: string[]) => run('tmux', ['-L', socket, '-f', '/dev/null', ...args]);

let dir: string;
let server: Awaited<ReturnType<typeof startServer>>;

beforeAll(async () => {
  assertBuilt();
  await run('tmux', ['-V']).catch(() => {
    throw new Error('these tests drive a real terminal through tmux: install tmux (apt-get install tmux)');
  });
  dir = await tempDir('ferry-pane-');
  // Every fifth call is throttled for a second: the display then has a second line, the pause.
  server = await startServer((req, res, index) => {
    if (index % 5 === 2) return json(res, 429, { error: 'slow down' }, { 'retry-after': '1' });
    setTimeout(() => json(res, 200, { ok: true }), 60);
  });
  await writeFile(path.join(dir, 'rows.csv'), `id\n${Array.from({ length: 14 }, (_, i) => `user_${i}`).join('\n')}\n`);
  await writeFile(
    path.join(dir, 'loop.yaml'),
    `name: loop\nsteps:\n  - id: each_row_of_the_file\n    loop: { file: rows.csv, as: row, concurrency: 1 }\n    steps:\n      - id: call\n        action: http.request\n        with: { method: POST, url: "${server.url}/rows", json: { id: "<<row.id>>" } }\n`,
  );
});

afterAll(async () => {
  await tmux('kill-server').catch(() => undefined);
  await server?.close();
});

/** Runs `before` then ferry in a fresh 32x8 pane; returns every screen seen while it ran, and the last one. */
async function inPane(name: string, before: string): Promise<{ screens: string[][]; last: string[] }> {
  const command = `cd '${dir}' && ${before} env -u CI '${process.execPath}' '${bin}' run loop.yaml --state-dir state; echo DONE; sleep 60`;
  await tmux('new-session', '-d', '-s', name, '-x', '32', '-y', '8', 'sh', '-c', command);
  const screens: string[][] = [];
  for (;;) {
    const { stdout } = await tmux('capture-pane', '-p', '-t', name);
    const screen = stdout.split('\n');
    screens.push(screen);
    if (screen.some((l) => l === 'DONE')) return { screens, last: screen };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const progressLines = (screen: string[]) => screen.filter((l) => l.startsWith('… each'));

describe('the live display in a terminal pane', () => {
  it.each([
    ['on the last line of the pane', 'last', 'seq 20;'],
    ['on the first line of the pane', 'first', "printf '\\033[H\\033[2J';"],
  ])('stays one block, cut to the pane, when the cursor starts %s', async (_, name, before) => {
    const { screens, last } = await inPane(name, before);
    // It was seen running, paused, and never twice on one screen.
    expect(screens.some((s) => progressLines(s).length === 1)).toBe(true);
    expect(screens.some((s) => s.some((l) => l.includes('paused')))).toBe(true);
    for (const screen of screens) expect(progressLines(screen).length, screen.join('\n')).toBeLessThanOrEqual(1);
    for (const screen of screens) for (const line of screen) expect(line.length).toBeLessThanOrEqual(32);
    // Once it ends the block is gone: the step's line and the run's line stay.
    expect(progressLines(last)).toEqual([]);
    expect(last.some((l) => l.includes('paused'))).toBe(false);
    // (Those wrap in a narrow pane as any text does: joined, they read whole.)
    const text = last.join('');
    expect(text).toMatch(/✓ each_row_of_the_file {2}succeeded {2}14 items/);
    expect(text).toMatch(/run \w+ succeeded in \d+ms/);
  }, 60_000);
});
