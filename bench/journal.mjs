// Journal overhead: a 100k-item loop with the file journal against the same loop without it.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { FileJournal, builtinRegistry, createFerry, loadWorkflowText, noJournal, runWorkflow } from '../dist/index.js';
import { median, startEmulator } from './lib.mjs';

/**
 * Two loops: `core.log` items (no provider call, so the journal's share is as large as it
 * gets) and batched `amplitude.send_event` items against the emulator (what a real loop does).
 */
export async function benchJournal({ items = 100_000, rounds = 7 } = {}) {
  const load = loadavg()[0];
  const emu = await startEmulator();
  const worst = await measure(`
name: journal-bench
steps:
  - id: each
    loop: { over: <<inputs.items>>, as: n, concurrency: 16 }
    steps:
      - id: note
        action: core.log
        with: { message: "item <<n>>", level: debug }
`, items, rounds);
  const real = await measure(`
name: journal-bench-events
providers:
  amplitude: { api_key: sandbox-amplitude-key, base_url: "${emu.amplitude}" }
steps:
  - id: each
    loop: { over: <<inputs.items>>, as: n, concurrency: 2000 }
    steps:
      - id: ev
        action: amplitude.send_event
        with: { user_id: "user_<<n>>", event_type: Bench }
`, items, rounds);
  await emu.close();
  return { items, rounds, load, worst, real };
}

async function measure(yaml, items, rounds) {
  const registry = builtinRegistry();
  const ferry = createFerry({ registry });
  const workflow = loadWorkflowText('bench.yaml', yaml, registry);
  const list = Array.from({ length: items }, (_, i) => i);
  const once = async (withJournal) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ferry-bench-'));
    const journal = withJournal ? FileJournal.create(dir, '01JRNLBENCH000000000000000', workflow.source) : noJournal;
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const summary = await runWorkflow(workflow, { ferry, inputs: { items: list }, journal });
    const ms = performance.now() - t0;
    journal.close();
    const cpu = process.cpuUsage(c0);
    const bytes = withJournal ? statSync(journal.path).size : 0;
    rmSync(dir, { recursive: true, force: true });
    if (summary.status !== 'succeeded') throw new Error(JSON.stringify(summary.error));
    return { ms, cpuMs: (cpu.user + cpu.system) / 1000, bytes };
  };
  await once(false);
  await once(true);
  const off = [];
  const on = [];
  for (let i = 0; i < rounds; i++) {
    off.push(await once(false));
    on.push(await once(true));
  }
  const m = (runs, key) => median(runs.map((r) => r[key]));
  return {
    offMs: m(off, 'ms'),
    onMs: m(on, 'ms'),
    ratio: m(on, 'ms') / m(off, 'ms'),
    // CPU time of this process (the emulator runs in its own): what the journal adds, less
    // sensitive than wall time to the other processes on a shared machine.
    offCpuMs: m(off, 'cpuMs'),
    onCpuMs: m(on, 'cpuMs'),
    cpuRatio: m(on, 'cpuMs') / m(off, 'cpuMs'),
    journalBytes: m(on, 'bytes'),
  };
}
