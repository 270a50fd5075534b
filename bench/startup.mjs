// Start-up: a one-item `ferry run` of a core.log step against `node -e ''` and a hand-written
// script that does the same work (one log line, one line appended to a file and fsync'd).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { median } from './lib.mjs';

const WORKFLOW = `name: startup
steps:
  - id: hello
    action: core.log
    with:
      message: hello
`;

// What the run does, written by hand: the log line, and one durable record of it.
const HAND = `import { appendFileSync, closeSync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
const dir = process.argv[2];
mkdirSync(dir, { recursive: true });
process.stderr.write('  [hello] hello\\n');
const fd = openSync(path.join(dir, 'log.jsonl'), 'a');
appendFileSync(fd, JSON.stringify({ step: 'hello', message: 'hello', at: new Date().toISOString() }) + '\\n');
fsyncSync(fd);
closeSync(fd);
`;

export function benchStartup({ rounds = 9 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-startup-'));
  const workflow = path.join(dir, 'startup.yaml');
  const hand = path.join(dir, 'hand.mjs');
  writeFileSync(workflow, WORKFLOW);
  writeFileSync(hand, HAND);
  const cli = new URL('../dist/cli.js', import.meta.url).pathname;
  const commands = {
    node: ['-e', ''],
    hand: [hand, path.join(dir, 'hand-out')],
    ferry: [cli, 'run', workflow, '--state-dir', path.join(dir, 'state')],
  };
  const time = (args) => {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    return ms;
  };
  const times = { node: [], hand: [], ferry: [] };
  // One warm-up of each (the file cache), then rounds that interleave the three.
  for (const args of Object.values(commands)) time(args);
  for (let r = 0; r < rounds; r++) for (const [name, args] of Object.entries(commands)) times[name].push(time(args));
  rmSync(dir, { recursive: true, force: true });
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  // The fastest round of each too: on a loaded machine it shows what the process itself costs.
  const f = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, Math.min(...v)]));
  return { rounds, nodeMs: m.node, handMs: m.hand, ferryMs: m.ferry, overNodeMs: m.ferry - m.node, overHandMs: m.ferry - m.hand, fastest: { nodeMs: f.node, handMs: f.hand, ferryMs: f.ferry, overHandMs: f.ferry - f.hand } };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(benchStartup({ rounds: Number(process.argv[2] ?? 9) }));
