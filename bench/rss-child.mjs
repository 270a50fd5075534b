// Runs one workflow in this process and reports its peak RSS: the parent compares it to the bound.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FileJournal, Limiter, builtinRegistry, loadWorkflowText, runWorkflow } from '../dist/index.js';

const [file, inputsJson] = process.argv.slice(2);
const { readFileSync } = await import('node:fs');
const registry = builtinRegistry();
const workflow = loadWorkflowText(file, readFileSync(file, 'utf8'), registry);
const state = mkdtempSync(path.join(tmpdir(), 'ferry-rss-'));
const journal = FileJournal.create(state, '01RSSBENCH0000000000000000', workflow.source);
const t0 = performance.now();
const summary = await runWorkflow(workflow, { registry, inputs: JSON.parse(inputsJson ?? '{}'), journal, limiter: new Limiter() });
journal.close();
process.stdout.write(`${JSON.stringify({ status: summary.status, error: summary.error, output: summary.steps[Object.keys(summary.steps)[0]]?.output, ms: performance.now() - t0, maxRssMb: process.resourceUsage().maxRSS / 1024, state })}\n`);
