// `ferry validate` of 200 workflow files, wall time of the whole command.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './lib.mjs';

export function benchValidate({ files = 200, rounds = 5 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-validate-'));
  const source = readFileSync(new URL('../workflows/sync-signups.yaml', import.meta.url), 'utf8');
  // Each copy names its loop variable and an input field differently, so that its templates
  // and its input schema are its own (as in a repository of different workflows) and no cache
  // sees them twice; only the `<<secrets.…>>` references repeat, as across a real repository.
  const copy = (i) =>
    source
      .replace('name: sync-signups', `name: sync-signups-${i}`)
      .replace(/^(\s*as: )user$/m, `$1u${i}`)
      .replace(/(<<(?:json )?)user\./g, `$1u${i}.`)
      .replace(/^( +)name: \{ type: string \}$/m, `$&\n$1field_${i}: { type: string }`);
  if (copy(1) === source.replace('name: sync-signups', 'name: sync-signups-1')) throw new Error('bench/validate.mjs: the example workflow changed; update copy()');
  for (let i = 0; i < files; i++) writeFileSync(path.join(dir, `wf-${i}.yaml`), copy(i));
  const cli = new URL('../dist/cli.js', import.meta.url).pathname;
  const time = (target) => {
    const t0 = performance.now();
    execFileSync(process.execPath, [cli, 'validate', target]);
    return performance.now() - t0;
  };
  // Alternated, so that a burst of load on a shared machine hits both numbers alike.
  const all = [];
  const one = [];
  for (let r = 0; r < rounds; r++) {
    all.push(time(dir));
    one.push(time(path.join(dir, 'wf-0.yaml')));
  }
  rmSync(dir, { recursive: true, force: true });
  return { files, rounds, ms: median(all), oneFileMs: median(one) };
}
