// A sandbox emulator in its own process, so that benchmark clients do not share its CPU.
// Prints {"amplitude": url, "segment": url} on stdout; answers "stats" lines on stdin.
import readline from 'node:readline';
import { startSandbox } from '../dist/sandbox.js';

const latencyMs = Number(process.env.LATENCY_MS ?? 0);
const exportGb = Number(process.env.EXPORT_BYTES ?? 0);
const sandbox = await startSandbox({ latencyMs, recordBodies: false });

if (exportGb > 0) {
  // A synthetic export: 24 hours of NDJSON lines adding up to EXPORT_BYTES, generated lazily.
  const perHour = Math.ceil(exportGb / 24);
  const line = JSON.stringify({ event_type: 'bench', user_id: 'user_000000', event_properties: { pad: 'x'.repeat(300) } });
  const linesPerHour = Math.ceil(perHour / (line.length + 1));
  sandbox.amplitude.setExportData((hour) => {
    if (!hour.startsWith('20261101')) return null;
    return (function* () {
      for (let i = 0; i < linesPerHour; i++) yield line;
    })();
  });
}

process.stdout.write(`${JSON.stringify({ amplitude: sandbox.amplitude.url, segment: sandbox.segment.url })}\n`);
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (cmd) => {
  if (cmd === 'stats') {
    const a = sandbox.amplitude;
    const s = sandbox.segment;
    const span = (requests) => (requests.length === 0 ? { firstAt: 0, lastAt: 0 } : { firstAt: requests[0].at, lastAt: requests[requests.length - 1].at });
    process.stdout.write(`${JSON.stringify({ amplitude: { requests: a.requests.length, events: a.events.size, identifications: a.identifications.length, maxInFlight: a.maxInFlight, ...span(a.requests) }, segment: { requests: s.requests.length, messages: s.messages.size } })}\n`);
  } else if (cmd === 'reset') {
    sandbox.amplitude.reset();
    sandbox.segment.reset();
    process.stdout.write('{}\n');
  }
});
rl.on('close', async () => {
  await sandbox.close();
  process.exit(0);
});
