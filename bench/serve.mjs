// `npm run build && node bench/serve.mjs`: accepted deliveries per second and time-to-202 of
// `ferry serve`, measured with autocannon; writes the `serve` section of docs/BENCHMARKS.md.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import autocannon from 'autocannon';
import { writeSection } from './lib.mjs';

const root = new URL('..', import.meta.url).pathname;
const cli = path.join(root, 'dist/cli.js');
if (!existsSync(cli)) throw new Error('dist/cli.js is missing: run `npm run build` first');

const SECRET = 'bench-webhook-secret';
const DURATION_S = Number(process.env.BENCH_SERVE_SECONDS ?? 10);
const WORKFLOW = `name: bench
triggers:
  - type: webhook
    path: /hooks/bench
    secret: <<secrets.BENCH_SECRET>>
secrets: [BENCH_SECRET]
steps:
  - id: log
    action: core.log
    with: { message: "user <<trigger.body.user_id>> signed up" }
`;
// Each delivery is another signup: the listener treats the same signed body again as a
// replay (200, duplicate), so a benchmark of one repeated body would measure the dedupe.
let sent = 0;
const bodyOf = (n) => JSON.stringify({ user_id: `user_${String(n).padStart(5, '0')}`, email: 'ada@example.com', plan: 'pro', traits: { company: 'Analytical Engines', seats: 3 } });
const body = bodyOf(0);
const sign = (text) => `sha256=${createHmac('sha256', SECRET).update(text).digest('hex')}`;

async function startServe(dir) {
  const child = spawn(process.execPath, [cli, 'serve', '--dir', path.join(dir, 'wf'), '--port', '0', '--state-dir', path.join(dir, 'state')], {
    env: { PATH: process.env.PATH, BENCH_SECRET: SECRET },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      // Only the start matters; afterwards the per-run lines are read and dropped.
      if (err.length < 64 * 1024) err += d;
      const found = /listening on (http:\/\/\S+)/.exec(err);
      if (found) resolve(found[1]);
    });
    child.once('exit', (code) => reject(new Error(`ferry serve exited with ${code}:\n${err}`)));
  });
  return { url, stop: () => new Promise((resolve) => (child.once('exit', resolve), child.kill('SIGTERM'))) };
}

function cannon(url, connections, duration) {
  return autocannon({
    url: `${url}/hooks/bench`,
    connections,
    duration,
    requests: [
      {
        method: 'POST',
        setupRequest: (request) => {
          const text = bodyOf(++sent);
          return { ...request, body: text, headers: { 'content-type': 'application/json', 'x-hub-signature-256': sign(text) } };
        },
      },
    ],
  });
}

async function measure(connections) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-serve-'));
  await mkdir(path.join(dir, 'wf'));
  await writeFile(path.join(dir, 'wf', 'bench.yaml'), WORKFLOW);
  const server = await startServe(dir);
  try {
    await cannon(server.url, connections, 2); // warm-up: JIT, page cache, keep-alive sockets
    const r = await cannon(server.url, connections, DURATION_S);
    // Only 202s count: a 200 would be a duplicate, not an accepted delivery.
    const accepted = r.statusCodeStats?.['202']?.count ?? 0;
    if (accepted !== r['2xx'] || r.non2xx > 0 || r.errors > 0) throw new Error(`${r['2xx'] - accepted} answers were 200 (duplicates), ${r.non2xx} were not 2xx and ${r.errors} requests failed`);
    return { connections, perSecond: accepted / (r.duration || DURATION_S), p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max, accepted };
  } finally {
    await server.stop();
    const runs = (await readdir(path.join(dir, 'state', 'runs'))).length;
    console.error(`  ${connections} connections: ${runs} runs recorded`);
    await rm(dir, { recursive: true, force: true });
  }
}

const loadAtStart = os.loadavg()[0];
function machine() {
  const model = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown CPU';
  // The machine may be shared: the load around the benchmark says how quiet it was.
  return `nproc ${os.availableParallelism()}, ${model}, Node ${process.version}, ${os.platform()} ${os.release()}, 1-min load average ${loadAtStart.toFixed(1)} at start and ${os.loadavg()[0].toFixed(1)} at end`;
}

const ROUNDS = Number(process.env.BENCH_SERVE_ROUNDS ?? 3);
const rows = [];
for (const connections of [1, 32]) {
  const rounds = [];
  for (let i = 0; i < ROUNDS; i++) rounds.push(await measure(connections));
  // The round with the median throughput, whole: its latencies belong to its throughput.
  const row = rounds.sort((a, b) => a.perSecond - b.perSecond)[Math.floor(ROUNDS / 2)];
  console.log('serve', row);
  rows.push(row);
}
const n = (x) => Math.round(x).toLocaleString('en-US');
writeSection(
  'serve',
  `## ferry serve

${new Date().toISOString().slice(0, 10)}, ${machine()}.

\`node bench/serve.mjs\`: autocannon POSTs signed ${Buffer.byteLength(body)}-byte JSON deliveries (\`X-Hub-Signature-256\`), each with another user id (the same signed body again would be a replay, answered 200 as a duplicate), to a workflow whose one step is \`core.log\`, for ${DURATION_S} s after a 2 s warm-up (the median of ${ROUNDS} rounds, each on a fresh state dir), with the listener in its own process on the same machine (autocannon shares the CPUs). Every answer was a 202: each one waited until the run's folder, workflow copy and \`run\` entry were written and fsynced (file, run folder and runs folder), while the accepted runs ran in the background (\`--max-runs 32\`). Time-to-202 is autocannon's request latency.

| connections | accepted deliveries/s | time-to-202 p50 | time-to-202 p99 | max |
|---|---|---|---|---|
${rows.map((r) => `| ${r.connections} | **${n(r.perSecond)}** | ${r.p50} ms | **${r.p99} ms** | ${r.max} ms |`).join('\n')}
`,
);
