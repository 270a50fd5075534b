// Peak memory of a 1,000,000-row JSONL loop (batched segment.track) and of a 1 GB export.
import { execFileSync, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmulator } from './lib.mjs';

/** Runs `ferry run <file>` as a user would; returns its exit code, peak RSS, time and state dir. */
function ferryRun(file, nodeArgs = [], cli = new URL('../dist/cli.js', import.meta.url).pathname) {
  const state = mkdtempSync(path.join(tmpdir(), 'ferry-rss-state-'));
  const report = path.join(state, 'peak.json');
  const preload = new URL('./peak-rss.mjs', import.meta.url).href;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, '--import', preload, cli, 'run', file, '--state-dir', state], { env: { ...process.env, FERRY_BENCH_RSS_OUT: report }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`ferry run exited ${code}: ${stderr.slice(-2000)}`));
      else resolve({ status: 'succeeded', state, ...JSON.parse(readFileSync(report, 'utf8')) });
    });
  });
}

/** The journal of the one run in a state dir. */
function journalSize(state) {
  const runs = path.join(state, 'runs');
  const [id] = readdirSync(runs);
  return statSync(path.join(runs, id, 'journal.jsonl')).size;
}

/**
 * `ferry run` of a 1,000,000-row JSONL loop of batched `segment.track`, in three set-ups:
 * as shipped (loop concurrency 1000), with a loop concurrency of one full Segment batch
 * (2500), and with a loop concurrency of 100. Node runs with its default flags. With
 * FERRY_BENCH_RSS_BASELINE set to another build's `dist/cli.js` (an older commit's worktree),
 * the shipped set-up also runs on that build, interleaved with this one round by round
 * (`rounds`, the median is reported), for a before/after on the same machine load.
 */
export async function benchLoopRss({ rows = 1_000_000, rounds = Number(process.env.FERRY_BENCH_RSS_ROUNDS ?? 3) } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-rss-loop-'));
  const data = path.join(dir, 'rows.jsonl');
  const out = createWriteStream(data);
  for (let i = 0; i < rows; i++) {
    if (!out.write(`{"id":"user_${i}","plan":"${i % 3 === 0 ? 'pro' : 'free'}"}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  const run = async (setup) => {
    const emu = await startEmulator();
    const wf = path.join(dir, 'wf.yaml');
    writeFileSync(wf, `
name: rss-loop
providers:
  segment: { write_key: sandbox-segment-key, base_url: "${emu.segment}", concurrency: 8 }
steps:
  - id: each
    loop: { file: rows.jsonl, as: row, concurrency: ${setup.concurrency} }
    steps:
      - id: track
        action: segment.track
        with: { userId: <<row.id>>, event: Replayed, properties: { plan: <<row.plan>> } }
`);
    const result = await ferryRun(wf, setup.nodeArgs, setup.cli);
    const stats = await emu.stats();
    await emu.close();
    const journalBytes = journalSize(result.state);
    rmSync(result.state, { recursive: true, force: true });
    return { ...result, journalBytes, requests: stats.segment.requests, messages: stats.segment.messages };
  };
  const shipped = { name: 'as shipped', concurrency: 1000, nodeArgs: [] };
  const baseline = process.env.FERRY_BENCH_RSS_BASELINE;
  const commit = baseline ? gitCommit(path.dirname(path.dirname(baseline))) : undefined;
  const compared = baseline ? [shipped, { name: 'as shipped, before (baseline build)', concurrency: 1000, nodeArgs: [], cli: baseline, commit }] : [shipped];
  const runs = compared.map(() => []);
  for (let round = 0; round < (baseline ? rounds : 1); round++) {
    for (const [i, setup] of compared.entries()) runs[i].push(await run(setup));
  }
  const results = compared.map((setup, i) => ({ ...setup, ...median(runs[i]), rounds: runs[i] }));
  for (const setup of [
    { name: 'loop concurrency 2500', concurrency: 2500, nodeArgs: [] },
    { name: 'loop concurrency 100', concurrency: 100, nodeArgs: [] },
  ]) {
    results.push({ ...setup, ...(await run(setup)) });
  }
  rmSync(dir, { recursive: true, force: true });
  return { rows, results };
}

/** The short commit of the checkout at `dir`, if it is one. */
function gitCommit(dir) {
  try {
    return execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

/** The run with the median peak RSS, its time replaced by the median time. */
function median(runs) {
  const mid = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  const rss = mid(runs.map((r) => r.maxRssMb));
  return { ...runs.find((r) => r.maxRssMb === rss), ms: mid(runs.map((r) => r.ms)) };
}

export async function benchExportRss({ bytes = 1024 ** 3 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-rss-export-'));
  const emu = await startEmulator({ EXPORT_BYTES: String(bytes) });
  const wf = path.join(dir, 'wf.yaml');
  writeFileSync(wf, `
name: rss-export
providers:
  amplitude: { api_key: sandbox-amplitude-key, secret_key: sandbox-amplitude-secret, base_url: "${emu.amplitude}" }
timeout: 5m
steps:
  - id: export
    action: amplitude.export_events
    with: { start: 20261101T00, end: 20261101T23, output: out/events.ndjson }
`);
  const result = await ferryRun(wf);
  await emu.close();
  const size = statSync(path.join(dir, 'out', 'events.ndjson')).size;
  rmSync(dir, { recursive: true, force: true });
  rmSync(result.state, { recursive: true, force: true });
  return { bytes, ...result, outputBytes: size };
}
