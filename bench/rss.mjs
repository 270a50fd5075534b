// Peak memory of a 1,000,000-row JSONL loop (batched segment.track) and of a 1 GB export.
import { execFile } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startEmulator } from './lib.mjs';

function child(file, inputs = {}) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [new URL('./rss-child.mjs', import.meta.url).pathname, file, JSON.stringify(inputs)], { maxBuffer: 1 << 20 }, (error, stdout) => {
      if (error) reject(error);
      else resolve(JSON.parse(stdout));
    });
  });
}

export async function benchLoopRss({ rows = 1_000_000 } = {}) {
  const dir = mkdtempSync(path.join(tmpdir(), 'ferry-rss-loop-'));
  const data = path.join(dir, 'rows.jsonl');
  const out = createWriteStream(data);
  for (let i = 0; i < rows; i++) {
    if (!out.write(`{"id":"user_${i}","plan":"${i % 3 === 0 ? 'pro' : 'free'}"}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  const emu = await startEmulator();
  const wf = path.join(dir, 'wf.yaml');
  writeFileSync(wf, `
name: rss-loop
providers:
  segment: { write_key: sandbox-segment-key, base_url: "${emu.segment}", concurrency: 8 }
steps:
  - id: each
    loop: { file: rows.jsonl, as: row, concurrency: 2500 }
    steps:
      - id: track
        action: segment.track
        with: { userId: <<row.id>>, event: Replayed, properties: { plan: <<row.plan>> } }
`);
  const result = await child(wf);
  const stats = await emu.stats();
  await emu.close();
  const journalBytes = statSync(path.join(result.state, 'runs', '01RSSBENCH0000000000000000', 'journal.jsonl')).size;
  rmSync(dir, { recursive: true, force: true });
  rmSync(result.state, { recursive: true, force: true });
  return { rows, ...result, journalBytes, requests: stats.segment.requests, messages: stats.segment.messages };
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
  const result = await child(wf);
  await emu.close();
  const size = statSync(path.join(dir, 'out', 'events.ndjson')).size;
  rmSync(dir, { recursive: true, force: true });
  rmSync(result.state, { recursive: true, force: true });
  return { bytes, ...result, outputBytes: size };
}
