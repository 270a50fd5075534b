// Engine throughput against a hand-written undici + p-queue loop, and batching gains.
import os from 'node:os';
import PQueue from 'p-queue';
import { Agent, request } from 'undici';
import { builtinRegistry, createFerry, loadWorkflowText, noJournal, runWorkflow } from '../dist/index.js';
import { median, startEmulator } from './lib.mjs';

const registry = builtinRegistry();
// Fresh limit scopes per run (a runtime each), one keep-alive Agent for all, as ferry makes it.
const dispatcher = new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 120_000, connections: 256 });
const KEY = 'sandbox-amplitude-key';

/** One loop of one Amplitude action per item, with the provider settings under test. */
function loopWorkflow(url, action, withBlock, { concurrency, loopConcurrency, batch }) {
  return loadWorkflowText('bench.yaml', `
name: bench
providers:
  amplitude: { api_key: ${KEY}, base_url: "${url}", concurrency: ${concurrency}, batch: ${batch} }
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: ${loopConcurrency} }
    steps:
      - id: call
        action: ${action}
        with: ${withBlock}
`, registry);
}

/**
 * The same request as send_event's, written as a plain `http.request` step: what a user
 * writes for an API ferry has no provider for. Nothing after the loop reads its answers.
 */
function httpWorkflow(url, { concurrency, loopConcurrency }, { readAnswers = false } = {}) {
  // A step after the loop that reads the items makes the loop keep every answer whole.
  const after = readAnswers ? '  - { id: report, action: core.log, with: { message: "<<length steps.each.output.items>> answers" } }' : '';
  return loadWorkflowText('bench-http.yaml', `
name: bench-http
providers:
  http: { concurrency: ${concurrency} }
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: ${loopConcurrency} }
    steps:
      - id: call
        action: http.request
        with:
          method: POST
          url: ${url}/2/httpapi
          json: { api_key: ${KEY}, events: [{ user_id: <<id>>, event_type: Bench, insert_id: "http-<<loop.index>>" }] }
${after}
`, registry);
}

const eventsWorkflow = (url, settings) => loopWorkflow(url, 'amplitude.send_event', '{ user_id: <<id>>, event_type: Bench }', settings);
const identifyWorkflow = (url, settings) => loopWorkflow(url, 'amplitude.identify_user', '{ user_id: <<id>>, user_properties: { plan: pro } }', settings);

async function runEngine(workflow, ids, { summary: measure = false } = {}) {
  const t0 = performance.now();
  const summary = await runWorkflow(workflow, { ferry: createFerry({ registry, dispatcher }), inputs: { ids }, journal: noJournal });
  const ms = performance.now() - t0;
  if (summary.status !== 'succeeded') throw new Error(JSON.stringify(summary.error));
  return measure ? { ms, summaryBytes: Buffer.byteLength(JSON.stringify(summary)) } : ms;
}

/** What a careful engineer writes by hand: one Agent, p-queue at the same concurrency, same bodies. */
async function runHandWritten(url, ids, concurrency) {
  const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256 });
  const queue = new PQueue({ concurrency });
  const t0 = performance.now();
  await Promise.all(
    ids.map((id, i) =>
      queue.add(async () => {
        const body = JSON.stringify({ api_key: KEY, events: [{ user_id: id, event_type: 'Bench', insert_id: `hand-${i}` }] });
        const res = await request(`${url}/2/httpapi`, { dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' }, body });
        await res.body.text();
        if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
      }),
    ),
  );
  const ms = performance.now() - t0;
  await agent.close();
  return ms;
}

const ids = (n) => Array.from({ length: n }, (_, i) => `user_${100_000 + i}`);

/**
 * Bench 1: 20,000 calls, one request each, at 0 and 20 ms latency: the hand-written loop,
 * `amplitude.send_event` with `batch: false`, the same request as an `http.request` step,
 * and that step again with a step after the loop that reads the answers (so the loop keeps
 * them whole). Each round runs the four in turn; `summaryBytes` is the size of an http
 * run's summary as `--json` prints it, before indentation.
 */
export async function benchUnbatched({ events = 20_000, concurrency = 50, rounds = 3 } = {}) {
  const load = os.loadavg()[0];
  const rows = [];
  for (const latency of [0, 20]) {
    const emu = await startEmulator({ LATENCY_MS: String(latency) });
    const list = ids(events);
    const settings = { concurrency, loopConcurrency: concurrency * 2, batch: false };
    const workflow = eventsWorkflow(emu.amplitude, settings);
    const http = httpWorkflow(emu.amplitude, settings);
    const httpRead = httpWorkflow(emu.amplitude, settings, { readAnswers: true });
    await runHandWritten(emu.amplitude, list.slice(0, 2000), concurrency); // warm-up
    for (const w of [workflow, http, httpRead]) await runEngine(w, list.slice(0, 2000));
    const times = { hand: [], engine: [], http: [], httpRead: [] };
    const bytes = {};
    for (let r = 0; r < rounds; r++) {
      times.hand.push(await runHandWritten(emu.amplitude, list, concurrency));
      times.engine.push(await runEngine(workflow, list));
      for (const [name, w] of [['http', http], ['httpRead', httpRead]]) {
        const run = await runEngine(w, list, { summary: true });
        times[name].push(run.ms);
        bytes[name] = run.summaryBytes;
      }
    }
    const stats = await emu.stats();
    await emu.close();
    const handMs = median(times.hand);
    const row = { latency, handMs, maxInFlight: stats.amplitude.maxInFlight };
    for (const name of ['engine', 'http', 'httpRead']) {
      row[`${name}Ms`] = median(times[name]);
      row[`${name}Ratio`] = handMs / median(times[name]);
    }
    rows.push({ ...row, summaryBytes: bytes.http, readSummaryBytes: bytes.httpRead });
  }
  return { events, concurrency, rounds, load, rows };
}

/** Bench 2: 100,000 identifies batched (requests, time) against `batch: false` throughput at 20 ms. */
export async function benchBatching({ items = 100_000, unbatchedItems = 3_000, latency = 20 } = {}) {
  const emu = await startEmulator({ LATENCY_MS: String(latency) });
  const batched = identifyWorkflow(emu.amplitude, { concurrency: 10, loopConcurrency: 2000, batch: true });
  const batchedMs = await runEngine(batched, ids(items));
  const after = await emu.stats();
  await emu.reset();
  const single = identifyWorkflow(emu.amplitude, { concurrency: 10, loopConcurrency: 20, batch: false });
  const singleMs = await runEngine(single, ids(unbatchedItems));
  const singleStats = await emu.stats();
  await emu.close();
  const batchedRate = items / (batchedMs / 1000);
  const singleRate = unbatchedItems / (singleMs / 1000);
  return { items, latency, batchedMs, requests: after.amplitude.requests, identifications: after.amplitude.identifications, unbatchedItems, singleMs, singleRequests: singleStats.amplitude.requests, batchedRate, singleRate, speedup: batchedRate / singleRate };
}

/**
 * Bench 3: default batching in ordinary loops (issue 15, point 1). `send_event` loops with the
 * default `batch:` (5 ms window), loop concurrency 16 / provider 16 and loop concurrency 1,
 * against the hand-written unbatched loop (p-queue 16) and the same loops with `batch: false`.
 * Cases interleave within each round; medians of `rounds`. At 20 ms fewer events, so that the
 * unbatched loops finish in seconds (throughput is what is compared).
 */
export async function benchBatchingDefault({ rounds = 3, sizes = { 0: { wide: 20_000, one: 5_000 }, 20: { wide: 4_000, one: 400 } } } = {}) {
  const rows = [];
  for (const latency of [0, 20]) {
    const emu = await startEmulator({ LATENCY_MS: String(latency) });
    const { wide, one } = sizes[latency];
    const cases = [
      { name: 'hand', items: wide, run: (list) => runHandWritten(emu.amplitude, list, 16) },
      { name: 'wide', items: wide, workflow: eventsWorkflow(emu.amplitude, { concurrency: 16, loopConcurrency: 16, batch: true }) },
      { name: 'wideOff', items: wide, workflow: eventsWorkflow(emu.amplitude, { concurrency: 16, loopConcurrency: 16, batch: false }) },
      { name: 'one', items: one, workflow: eventsWorkflow(emu.amplitude, { concurrency: 16, loopConcurrency: 1, batch: true }) },
      { name: 'oneOff', items: one, workflow: eventsWorkflow(emu.amplitude, { concurrency: 16, loopConcurrency: 1, batch: false }) },
    ];
    for (const c of cases) {
      c.ms = [];
      c.run ??= (list) => runEngine(c.workflow, list);
      await c.run(ids(Math.min(c.items, 500))); // warm-up
    }
    for (let r = 0; r < rounds; r++) {
      for (const c of cases) {
        await emu.reset();
        c.ms.push(await c.run(ids(c.items)));
        const stats = await emu.stats();
        if (stats.amplitude.events !== c.items) throw new Error(`${c.name}: ${stats.amplitude.events} of ${c.items} events stored`);
        c.requests = stats.amplitude.requests;
        c.maxInFlight = stats.amplitude.maxInFlight;
      }
    }
    await emu.close();
    const rate = (c) => c.items / (median(c.ms) / 1000);
    const by = Object.fromEntries(cases.map((c) => [c.name, { items: c.items, ms: median(c.ms), rate: rate(c), requests: c.requests, maxInFlight: c.maxInFlight }]));
    rows.push({ latency, ...by });
  }
  return { rounds, rows };
}
