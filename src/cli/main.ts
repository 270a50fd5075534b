#!/usr/bin/env node
import { closeSharedAgent } from '../providers/http.js';
import { processIO } from './io.js';
import { runCommand } from './run-command.js';

// The process edge: argv in, exit code out. Everything else is testable without a process.
const io = processIO();
const code = await runCommand(process.argv.slice(2), io);
await closeSharedAgent();
process.exitCode = code;
