// Reading runs back: `ferry runs` over 10,000 runs, `ferry show` of a 1,000,000-item run.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileJournal } from '../dist/index.js';
import { median } from './lib.mjs';

const cli = new URL('../dist/cli.js', import.meta.url).pathname;
const preload = new URL('./peak-rss.mjs', import.meta.url).href;
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** A run id like the engine's: a time part, then a counter, in Crockford base 32. */
function runId(n) {
  let tail = '';
  for (let i = 0, x = n; i < 16; i++, x = Math.floor(x / 32)) tail = CROCKFORD[x % 32] + tail;
  return `01JB0000A0${tail}`;
}

/** Runs a node process; returns its wall time, peak RSS (from bench/peak-rss.mjs) and stdout size. */
function measure(args) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-reads-rss-'));
  const report = path.join(dir, 'peak.json');
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, ['--import', preload, ...args], { env: { ...process.env, FERRY_BENCH_RSS_OUT: report }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = 0;
    let stderr = '';
    child.stdout.on('data', (d) => (out += d.length));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) return reject(new Error(`${args.join(' ')} exited ${code}: ${stderr.slice(-2000)}`));
      const peak = JSON.parse(readFileSync(report, 'utf8'));
      rmSync(dir, { recursive: true, force: true });
      resolve({ ms, maxRssMb: peak.maxRssMb, stdoutBytes: out });
    });
  });
}

async function medianOf(rounds, args) {
  const all = [];
  for (let i = 0; i < rounds; i++) all.push(await measure(args));
  return { ms: median(all.map((r) => r.ms)), maxRssMb: Math.max(...all.map((r) => r.maxRssMb)), stdoutBytes: all[0].stdoutBytes };
}

const shape = [{ id: 'each', steps: [{ id: 'track' }] }, { id: 'report' }];
const start = (id, workflow, startedAt) => ({ t: 'run', v: 1, runId: id, workflow, file: `/srv/flows/${workflow}.yaml`, startedAt, pid: 1, mode: 'live', inputs: { since: '2025-01-01' }, trigger: { type: 'manual' }, shape });
const calls = (attempts) => ({ calls: 1, attempts, failures: attempts > 1 ? { 429: attempts - 1 } : {}, waitedMs: attempts > 1 ? 1000 : 0 });

/** 10,000 finished runs of five workflows, 20 items each, every tenth one failed; written through FileJournal, which writes run.json. */
function manyRuns(stateDir, count) {
  const t0 = Date.parse('2025-01-01T00:00:00.000Z');
  for (let n = 0; n < count; n++) {
    const id = runId(n);
    const journal = FileJournal.create(stateDir, id, 'name: bench\n');
    const failed = n % 10 === 9;
    journal.append(start(id, `sync-${n % 5}`, new Date(t0 + n * 60_000).toISOString()));
    for (let i = 0; i < 20; i++) {
      const bad = failed && i === 13;
      journal.append({ t: 'step', id: 'track', item: [i], status: bad ? 'failed' : 'succeeded', output: bad ? null : { success: true }, ms: 40, calls: calls(bad ? 5 : 1), ...(bad ? { error: { step: 'track', item: i, message: 'step `track`, loop item 13: segment answered 400: bad request' } } : {}) });
    }
    const error = failed ? { step: 'track', item: 13, message: 'step `track`, loop item 13: segment answered 400: bad request' } : null;
    journal.append({ t: 'step', id: 'each', item: [], status: failed ? 'failed' : 'succeeded', output: { count: 20 }, ms: 900, ...(error ? { error } : {}) });
    if (!failed) journal.append({ t: 'step', id: 'report', item: [], status: 'succeeded', output: null, ms: 1 });
    journal.append({ t: 'end', status: failed ? 'failed' : 'succeeded', at: new Date(t0 + n * 60_000 + 1000).toISOString(), ms: 1000, error });
    journal.close();
  }
}

/** One run of a 1,000,000-row file loop, as the engine journals it: a step entry per row, a progress mark per 1000; 1 row in 500 needed a retry after a 429. */
function bigRun(stateDir, rows) {
  const id = runId(999_999);
  const journal = FileJournal.create(stateDir, id, 'name: big\n');
  journal.append({ ...start(id, 'replay', '2025-02-01T00:00:00.000Z'), shape: [{ id: 'each', steps: [{ id: 'track' }] }] });
  journal.append({ t: 'source', id: 'each', item: [], path: '/srv/data/rows.jsonl', size: 38_888_890, mtimeMs: 1738368000000.123, hash: '001dc6ed2fa80f6ae75146d605293f0b9a663003d0798d7c56748eef9996378f' });
  for (let i = 0; i < rows; i++) {
    journal.append({ t: 'step', id: 'track', item: [i], status: 'succeeded', output: { success: true }, ms: 40 + (i % 7), calls: calls(i % 500 === 499 ? 2 : 1) });
    if (i % 1000 === 999) journal.append({ t: 'progress', id: 'each', item: [], done: i + 1 });
  }
  journal.append({ t: 'step', id: 'each', item: [], status: 'succeeded', output: { count: rows }, ms: 290_000 });
  journal.append({ t: 'end', status: 'succeeded', at: '2025-02-01T00:04:50.000Z', ms: 290_000, error: null });
  journal.close();
  return { id, bytes: statSync(path.join(stateDir, 'runs', id, 'journal.jsonl')).size };
}

export async function benchJournalReads({ runs = 10_000, rows = 1_000_000, rounds = 3 } = {}) {
  const many = mkdtempSync(path.join(tmpdir(), 'ferry-reads-many-'));
  let t0 = performance.now();
  manyRuns(many, runs);
  const writeManyMs = performance.now() - t0;
  const baseline = await medianOf(rounds, ['-e', '']);
  const list = await medianOf(rounds, [cli, 'runs', '--state-dir', many]);
  const listJson = await medianOf(rounds, [cli, 'runs', '--json', '--state-dir', many]);
  const filtered = await medianOf(rounds, [cli, 'runs', '--status', 'failed', '--workflow', 'sync-4', '--state-dir', many]);
  const limited = await medianOf(rounds, [cli, 'runs', '--limit', '20', '--state-dir', many]);
  // The same state dir as an older ferry left it (no run.json): the first `ferry runs` reads every journal once and writes the records.
  for (let n = 0; n < runs; n++) unlinkSync(path.join(many, 'runs', runId(n), 'run.json'));
  const firstWithoutRecords = await measure([cli, 'runs', '--state-dir', many]);
  const afterwards = await medianOf(rounds, [cli, 'runs', '--state-dir', many]);
  rmSync(many, { recursive: true, force: true });

  const big = mkdtempSync(path.join(tmpdir(), 'ferry-reads-big-'));
  t0 = performance.now();
  const { id, bytes } = bigRun(big, rows);
  const writeBigMs = performance.now() - t0;
  const show = await medianOf(rounds, [cli, 'show', id, '--state-dir', big]);
  const showJson = await medianOf(rounds, [cli, 'show', id, '--json', '--state-dir', big]);
  rmSync(big, { recursive: true, force: true });
  return { runs, rows, rounds, writeManyMs, baseline, list, listJson, filtered, limited, firstWithoutRecords, afterwards, journalBytes: bytes, writeBigMs, show, showJson };
}
