// Journal overhead: a 100k-item loop with the file journal against the same loop without it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileJournal, Limiter, builtinRegistry, loadWorkflowText, noJournal, runWorkflow } from '../dist/index.js';

const ITEMS = Number(process.env.BENCH_JOURNAL_ITEMS ?? 100_000);
const registry = builtinRegistry();
const workflow = loadWorkflowText('bench.yaml', `
name: journal-bench
steps:
  - id: each
    loop: { over: <<inputs.items>>, as: n, concurrency: 16 }
    steps:
      - id: note
        action: core.log
        with: { message: "item <<n>>", level: debug }
`, registry);
const items = Array.from({ length: ITEMS }, (_, i) => i);

async function once(withJournal) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bench-'));
  const journal = withJournal ? FileJournal.create(dir, '01JOURNALBENCH000000000000', workflow.source) : noJournal;
  const t0 = performance.now();
  const summary = await runWorkflow(workflow, { registry, inputs: { items }, journal, limiter: new Limiter() });
  const ms = performance.now() - t0;
  journal.close();
  rmSync(dir, { recursive: true, force: true });
  if (summary.status !== 'succeeded') throw new Error(JSON.stringify(summary.error));
  return ms;
}

export async function benchJournal() {
  await once(false);
  await once(true); // warm-up
  const off = [];
  const on = [];
  for (let i = 0; i < 5; i++) {
    off.push(await once(false));
    on.push(await once(true));
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const offMs = median(off);
  const onMs = median(on);
  return { items: ITEMS, offMs, onMs, ratio: onMs / offMs };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchJournal());
}
