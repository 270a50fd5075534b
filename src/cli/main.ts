#!/usr/bin/env node
import { processIO } from './io.js';
import { runCommand } from './run-command.js';

// The process edge: argv in, exit code out. Everything else is testable without a process.
// A closed pipe (`ferry actions | head`) is a normal way for a reader to stop.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw error;
  });
}
// SIGINT/SIGTERM stop gracefully (no new work, calls on the wire finish, the journal records);
// a second signal exits at once.
const stop = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (stop.signal.aborted) process.exit(sig === 'SIGINT' ? 130 : 143);
    stop.abort(sig);
  });
}
const io = processIO(stop.signal);
// Each command makes its runtime (createFerry) and closes it before it returns: nothing of a
// command's keeps the process alive after it.
const code = await runCommand(process.argv.slice(2), io);
process.exitCode = code;
