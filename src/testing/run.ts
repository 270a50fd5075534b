import { availableParallelism } from 'node:os';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, type WorkflowIssue } from '../errors.js';
import { Redactor } from '../redact.js';
import type { RunSession } from '../engine/session.js';
import type { Registry } from '../providers/registry.js';
import { locate, readSource } from '../workflow/load.js';
import { validateSource, WorkflowCompiler } from '../workflow/validate.js';
import type { Workflow } from '../workflow/types.js';
import { checkCase, type Failure } from './expect.js';
import { runCase } from './harness.js';
import { parseTestFile, TestFileChecker, type TestCase, type TestFile } from './spec.js';

export interface LocatedFailure extends Failure {
  line: number;
  col: number;
}

export interface CaseResult {
  name: string;
  line: number;
  durationMs: number;
  failures: LocatedFailure[];
}

export interface FileResult {
  /** As the user would write it, relative to the working directory. */
  file: string;
  /** Issues of the test file or of its workflow: the file could not run (exit 2). */
  issues: WorkflowIssue[];
  cases: CaseResult[];
  durationMs: number;
}

export const isTestFile = (name: string): boolean => /\.test\.ya?ml$/.test(name);

/** Test files under the given files and folders (folders recursively, skipping dot folders and node_modules). */
export async function findTestFiles(inputs: readonly string[], cwd: string): Promise<{ files: string[]; missing: string[] }> {
  const files: string[] = [];
  const missing: string[] = [];
  for (const input of inputs) {
    const abs = path.resolve(cwd, input);
    const info = await stat(abs).catch(() => undefined);
    if (!info) missing.push(input);
    else if (!info.isDirectory()) files.push(path.relative(cwd, abs) || input);
    else {
      const entries = await readdir(abs, { recursive: true, withFileTypes: true });
      files.push(
        ...entries
          .filter((e) => e.isFile() && isTestFile(e.name) && !path.relative(abs, e.parentPath).split(path.sep).some((part) => part.startsWith('.') || part === 'node_modules'))
          .map((e) => path.relative(cwd, path.join(e.parentPath, e.name)))
          .sort(),
      );
    }
  }
  return { files: [...new Set(files)], missing };
}

/** At most `limit` tasks at once, each started as a slot frees up. */
function pool(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (task) => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await task();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

export interface RunTestsOptions {
  cwd: string;
  registry: Registry;
  /** Cases in flight at once, across files. @default the number of CPUs, at most 8 */
  concurrency?: number;
  /** Told of each case's run session before it runs. */
  onRun?: (session: RunSession) => void;
}

/** Runs every case of every file, files and cases side by side; results keep the files' order. */
export async function runTestFiles(files: readonly string[], options: RunTestsOptions): Promise<FileResult[]> {
  const slot = pool(options.concurrency ?? Math.min(8, availableParallelism()));
  // Schemas and templates are compiled once for all the files of this call.
  const parsers: Parsers = { tests: new TestFileChecker(), workflows: new WorkflowCompiler(options.registry) };
  return Promise.all(files.map((file) => runFile(file, options, slot, parsers)));
}

interface Parsers {
  tests: TestFileChecker;
  workflows: WorkflowCompiler;
}

async function runFile(file: string, options: RunTestsOptions, slot: ReturnType<typeof pool>, parsers: Parsers): Promise<FileResult> {
  const started = performance.now();
  const result: FileResult = { file, issues: [], cases: [], durationMs: 0 };
  const loaded = await loadTestFile(file, options, parsers);
  if ('issues' in loaded) {
    result.issues = loaded.issues;
  } else {
    const { test, workflow } = loaded;
    result.cases = await Promise.all(test.cases.map((c) => slot(() => runOne(test, workflow, c, options))));
  }
  result.durationMs = Math.round(performance.now() - started);
  return result;
}

async function loadTestFile(file: string, options: RunTestsOptions, parsers: Parsers): Promise<{ test: TestFile; workflow: Workflow } | { issues: WorkflowIssue[] }> {
  const abs = path.resolve(options.cwd, file);
  // Read like a workflow (readSource): a FIFO or device is refused, not waited on; size and encoding are bounded.
  const read = await readSource(abs, file);
  if ('issue' in read) return { issues: [read.issue] };
  const { test, issues } = parseTestFile(file, abs, read.text, parsers.tests);
  if (!test) return { issues };
  const workflowName = path.relative(options.cwd, test.workflow);
  const workflowRead = await readSource(test.workflow, workflowName);
  if ('issue' in workflowRead) {
    const { line, col } = locate(test.source, ['workflow']);
    return { issues: [{ file, line, col, code: 'FERRY_TEST_WORKFLOW', message: `cannot read the workflow ${workflowName}: ${workflowRead.issue.message}` }] };
  }
  const source = workflowRead.text;
  // Positions of workflow issues point into the workflow file, named as the user would.
  const checked = validateSource(test.workflow, source, parsers.workflows);
  if (!checked.workflow) return { issues: checked.issues.map((i) => ({ ...i, file: workflowName })) };
  return { test, workflow: checked.workflow };
}

async function runOne(test: TestFile, workflow: Workflow, testCase: TestCase, options: RunTestsOptions): Promise<CaseResult> {
  const started = performance.now();
  let failures: Failure[];
  try {
    failures = checkCase(testCase, await runCase(workflow, testCase, options.registry, options.onRun));
  } catch (error) {
    failures = [{ path: ['cases', testCase.index, 'name'], message: `the case could not run: ${errorMessage(error)}`, details: [] }];
  }
  // A case's `secrets:` are secrets like any other: no report (text, GitHub, JUnit) shows them.
  // The placeholders of secrets it leaves out are not, and stay readable.
  const redactor = new Redactor();
  for (const value of Object.values(testCase.secrets)) redactor.add(value);
  return {
    name: testCase.name,
    line: testCase.line,
    durationMs: Math.round(performance.now() - started),
    failures: failures
      .map((f) => ({ ...f, message: redactor.redactValue(f.message), details: redactor.redactValue(f.details), ...locate(test.source, f.path) }))
      .map(({ node: _node, ...f }) => f),
  };
}
