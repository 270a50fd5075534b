import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const bin = path.join(root, 'dist/cli.js');

export interface Result {
  code: number;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment a `ferry` process gets: PATH, and TMPDIR when the test run has its own
 * temporary folder (test/helpers/leftovers.ts), so that what a process leaves there is seen.
 */
export function childEnv(env: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? '', ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}), ...env };
}

export function assertBuilt(): void {
  if (!existsSync(bin)) throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');
}

/** Runs the built `ferry` binary as a user would. */
export function ferry(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd: options.cwd ?? root, env: childEnv(options.env), maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      const e = error as (Error & { code?: number; signal?: string }) | null;
      resolve({ code: e ? Number(e.code ?? 1) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
  });
}

/** Starts `ferry` without waiting, for tests that signal or kill it; `err()` is its stderr so far. */
export function spawnFerry(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): { child: ChildProcess; done: Promise<Result>; err: () => string } {
  const child = spawn(process.execPath, [bin, ...args], { cwd: options.cwd ?? root, env: childEnv(options.env) });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Result>((resolve) => child.on('close', (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr })));
  return { child, done, err: () => stderr };
}

/**
 * Resolves with what `probe` gives once it gives something other than false or undefined
 * (polled every `everyMs`); fails naming `what` after `ms`.
 */
export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string, ms = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * `ferry serve` started as a process: `listening` resolves with its URL once it listens, and
 * fails with its stderr when it exits first.
 */
export function spawnServe(args: string[], options: { cwd?: string; env?: Record<string, string> }): { child: ChildProcess; done: Promise<Result>; stderr: () => string; listening: Promise<string> } {
  const { child, done, err } = spawnFerry(['serve', ...args], options);
  const exited = done.then((r) => Promise.reject(new Error(`ferry serve exited with ${r.code}:\n${r.stderr}`)));
  const listening = Promise.race([waitFor(() => /listening on (http:\/\/\S+)/.exec(err())?.[1], 'ferry serve to listen', 15_000, 10), exited]);
  return { child, done, stderr: err, listening };
}

/** Resolves once `condition` holds, polling every few ms. */
export function until(condition: () => boolean, everyMs = 5): Promise<void> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (condition()) {
        clearInterval(timer);
        resolve();
      }
    }, everyMs);
  });
}
