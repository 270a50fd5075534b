import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// vitest's globalSetup: `npm test` leaves nothing behind. Every test process (and every
// `ferry` the tests start, test/helpers/cli.ts passes TMPDIR on) gets a temporary folder of
// its own for this run, so that what is left in it is this run's alone, however many other
// runs share the machine's /tmp. At the end, a file or folder left there, a run left in the
// working copy's `.ferry`, or a new untracked file in the working copy fails the run, named.

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Every file under `dir`, relative to it; none when it does not exist. */
function filesUnder(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => !e.isDirectory())
      .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
  } catch {
    return [];
  }
}

/** Untracked and ignored paths of the working copy, as git shows them (folders collapsed); none outside git. */
function untracked(): string[] {
  try {
    const out = execFileSync('git', ['status', '--porcelain', '--ignored', '--untracked-files=normal'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out
      .split('\n')
      .filter((line) => line.startsWith('??') || line.startsWith('!!'))
      .map((line) => line.slice(3));
  } catch {
    return [];
  }
}

export default function setup(): () => void {
  const tmp = mkdtempSync(path.join(tmpdir(), 'ferry-vitest-'));
  // Test processes are forked after this, with this environment.
  process.env.TMPDIR = tmp;
  const stateBefore = new Set(filesUnder(path.join(root, '.ferry')));
  const untrackedBefore = new Set(untracked());
  return () => {
    const problems: string[] = [];
    const leftInTmp = readdirSync(tmp);
    if (leftInTmp.length > 0) problems.push(`left in the temporary folder (${tmp}): ${leftInTmp.sort().join(', ')}`);
    const newState = filesUnder(path.join(root, '.ferry')).filter((f) => !stateBefore.has(f));
    if (newState.length > 0) problems.push(`written to the working copy's .ferry (a test ran without --state-dir): ${newState.slice(0, 10).join(', ')}${newState.length > 10 ? ` and ${newState.length - 10} more` : ''}`);
    const newFiles = untracked().filter((f) => !untrackedBefore.has(f) && f !== '.ferry/');
    if (newFiles.length > 0) problems.push(`new untracked files in the working copy: ${newFiles.join(', ')}`);
    rmSync(tmp, { recursive: true, force: true });
    if (problems.length === 0) return;
    // A throw here is only logged by vitest: the exit code says the run failed.
    process.stderr.write(`\nThe tests left things behind; each test removes what it makes (afterAll / finally):\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
    process.exitCode = 1;
  };
}
