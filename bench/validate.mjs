// `ferry validate` of 200 workflow files, wall time of the whole command.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './lib.mjs';

export function benchValidate({ files = 200, rounds = 5 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-validate-'));
  const source = readFileSync(new URL('../workflows/sync-signups.yaml', import.meta.url), 'utf8');
  for (let i = 0; i < files; i++) writeFileSync(path.join(dir, `wf-${i}.yaml`), source.replace('name: sync-signups', `name: sync-signups-${i}`));
  const cli = new URL('../dist/cli.js', import.meta.url).pathname;
  const times = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    execFileSync(process.execPath, [cli, 'validate', dir]);
    times.push(performance.now() - t0);
  }
  const t0 = performance.now();
  execFileSync(process.execPath, [cli, 'validate', path.join(dir, 'wf-0.yaml')]);
  const one = performance.now() - t0;
  rmSync(dir, { recursive: true, force: true });
  return { files, ms: median(times), oneFileMs: one };
}
