import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import type { WorkflowIssue } from '../errors.js';
import type { Fault } from '../sandbox/faults.js';
import { parseSource, Reporter, sourceData, type SourceDocument, type YamlPath } from '../workflow/load.js';
import { schemaIssues } from '../workflow/schema-errors.js';
import { parseDuration } from '../workflow/types.js';
import { TESTED_PROVIDERS, testFileSchema, type TestedProvider } from './schema.js';

/** A test file that passed its schema: cases ready to run, and the YAML to point failures at. */
export interface TestFile {
  /** The path as the user named it (for messages). */
  file: string;
  source: SourceDocument;
  /** Absolute path of the workflow under test. */
  workflow: string;
  cases: TestCase[];
}

export interface HttpResponseSpec {
  url: string;
  method?: string;
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export interface TestCase {
  index: number;
  name: string;
  /** 1-based line of the case, for JUnit. */
  line: number;
  inputs: Record<string, unknown> | undefined;
  /** Present when the case runs as the webhook trigger. */
  body: { value: unknown } | undefined;
  headers: Record<string, string>;
  env: Record<string, string>;
  secrets: Record<string, string>;
  faults: Partial<Record<TestedProvider, Fault[]>>;
  responses: HttpResponseSpec[];
  amplitudeExport: Record<string, object[]> | undefined;
  timeoutMs: number;
  /** The `expect` mapping as data; its YAML path is `['cases', index, 'expect']`. */
  expect: Record<string, unknown>;
}

export const DEFAULT_CASE_TIMEOUT_MS = 30_000;

/** The test file schema, compiled once for every file a `ferry test` reads. */
export class TestFileChecker {
  #validator: ValidateFunction | undefined;

  check(data: unknown): ValidateFunction {
    this.#validator ??= new Ajv({ allErrors: true, strict: false, verbose: true }).compile(testFileSchema());
    this.#validator(data);
    return this.#validator;
  }
}

const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});

/** Parses and checks a test file; every mistake becomes an issue at its line and column. */
export function parseTestFile(file: string, absFile: string, text: string, checker = new TestFileChecker()): { test: TestFile | undefined; issues: WorkflowIssue[] } {
  const { source, issues } = parseSource(file, text);
  if (issues.length > 0) return { test: undefined, issues };
  const data = sourceData(source);
  const report = new Reporter(source);
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    report.at([], 'FERRY_TEST_INVALID', 'a test file is a YAML mapping with `workflow` and `cases`');
    return { test: undefined, issues: report.issues };
  }
  const checked = checker.check(data);
  if (checked.errors && checked.errors.length > 0) schemaIssues(checked.errors, report);
  const root = data as Record<string, unknown>;
  const fileTimeout = typeof root.timeout === 'string' ? (parseDuration(root.timeout) ?? DEFAULT_CASE_TIMEOUT_MS) : DEFAULT_CASE_TIMEOUT_MS;
  const cases: TestCase[] = [];
  const names = new Map<string, number>();
  (Array.isArray(root.cases) ? root.cases : []).forEach((raw, index) => {
    const c = obj(raw);
    const at: YamlPath = ['cases', index];
    const name = typeof c.name === 'string' ? c.name : `case ${index + 1}`;
    const earlier = names.get(name);
    if (earlier !== undefined) report.at([...at, 'name'], 'FERRY_TEST_INVALID', `case ${index + 1} has the same name as case ${earlier + 1}; names tell cases apart in reports`);
    names.set(name, index);
    if ('inputs' in c && 'body' in c) report.at([...at, 'body'], 'FERRY_TEST_INVALID', 'use either `inputs` (manual trigger) or `body` (webhook trigger), not both', 'key');
    if ('headers' in c && !('body' in c)) report.at([...at, 'headers'], 'FERRY_TEST_INVALID', '`headers` go with `body`: they are the webhook request headers', 'key');
    const expect = obj(c.expect);
    if (expect.error !== undefined && expect.status !== 'failed') {
      report.at([...at, 'expect', 'error'], 'FERRY_TEST_INVALID', 'an `error` expectation needs `status: failed`', 'key');
    }
    const faults: Partial<Record<TestedProvider, Fault[]>> = {};
    for (const provider of TESTED_PROVIDERS) {
      const list = obj(c.faults)[provider];
      if (Array.isArray(list)) faults[provider] = list.map((f, i) => toFault(obj(f), provider, [...at, 'faults', provider, i], report));
    }
    const caseTimeout = typeof c.timeout === 'string' ? parseDuration(c.timeout) : undefined;
    cases.push({
      index,
      name,
      line: report.source.lineCounter.linePos(rangeStart(source, index)).line,
      inputs: 'inputs' in c ? obj(c.inputs) : undefined,
      body: 'body' in c ? { value: c.body } : undefined,
      headers: strings(c.headers),
      env: strings(c.env),
      secrets: strings(c.secrets),
      faults,
      responses: (Array.isArray(c.responses) ? c.responses : []).map((r) => {
        const o = obj(r);
        return { url: String(o.url), ...(typeof o.method === 'string' ? { method: o.method.toUpperCase() } : {}), status: typeof o.status === 'number' ? o.status : 200, headers: strings(o.headers), body: o.body === undefined ? {} : o.body };
      }),
      amplitudeExport: c.amplitude_export === undefined ? undefined : (obj(c.amplitude_export) as Record<string, object[]>),
      timeoutMs: caseTimeout ?? fileTimeout,
      expect,
    });
  });
  if (report.issues.length > 0) return { test: undefined, issues: report.issues.sort((a, b) => a.line - b.line || a.col - b.col) };
  return { test: { file, source, workflow: path.resolve(path.dirname(absFile), String(root.workflow)), cases }, issues: [] };
}

function strings(v: unknown): Record<string, string> {
  return Object.fromEntries(Object.entries(obj(v)).map(([k, x]) => [k, String(x)]));
}

function rangeStart(source: SourceDocument, index: number): number {
  const cases = source.doc.get('cases', true) as { items?: { range?: [number, number, number] }[] } | undefined;
  return cases?.items?.[index]?.range?.[0] ?? 0;
}

const KINDS = ['status', 'reset', 'reject_user', 'throttle_user'] as const;
/** Which keys each kind of fault takes besides its own. */
const ALLOWED: Record<(typeof KINDS)[number], string[]> = {
  status: ['times', 'path', 'retry_after', 'body'],
  reset: ['times', 'path'],
  reject_user: ['status'],
  throttle_user: ['times', 'retry_after'],
};

/** A test file's fault as the emulator's Fault, or an issue when its keys do not fit together. */
function toFault(f: Record<string, unknown>, provider: TestedProvider, at: YamlPath, report: Reporter): Fault {
  const kinds = KINDS.filter((k) => k in f && !(k === 'status' && 'reject_user' in f));
  const kind = kinds[0];
  if (kinds.length !== 1 || kind === undefined) {
    report.at(at, 'FERRY_TEST_INVALID', `a fault needs exactly one of \`status\`, \`reset\`, \`reject_user\` or \`throttle_user\`${kinds.length > 1 ? `, got ${kinds.map((k) => `\`${k}\``).join(' and ')}` : ''}`);
    return { kind: 'status', status: 500 };
  }
  for (const key of Object.keys(f)) {
    if (key !== kind && !ALLOWED[kind].includes(key)) report.at([...at, key], 'FERRY_TEST_INVALID', `\`${key}\` does not go with \`${kind}\` (it takes ${ALLOWED[kind].map((k) => `\`${k}\``).join(', ')})`, 'key');
  }
  if (provider === 'http' && kind === 'reject_user') report.at([...at, kind], 'FERRY_TEST_INVALID', '`reject_user` needs a provider that knows users (amplitude or segment)', 'key');
  if (provider !== 'amplitude' && kind === 'throttle_user') report.at([...at, kind], 'FERRY_TEST_INVALID', '`throttle_user` is an Amplitude answer (a 429 naming the throttled users); use `status: 429` here', 'key');
  const times = typeof f.times === 'number' ? f.times : 1;
  const retryAfter = typeof f.retry_after === 'number' ? f.retry_after : undefined;
  switch (kind) {
    case 'status': {
      const status = Number(f.status);
      // A 429 without Retry-After makes ferry wait Amplitude's documented 30 s: too slow for a test.
      const wait = retryAfter ?? (status === 429 ? 0 : undefined);
      return { kind: 'status', status, times, ...(typeof f.path === 'string' ? { path: f.path } : {}), ...(wait === undefined ? {} : { retryAfter: wait }), ...(f.body === undefined ? {} : { body: f.body }) };
    }
    case 'reset':
      return { kind: 'reset', times, ...(typeof f.path === 'string' ? { path: f.path } : {}) };
    case 'reject_user':
      return { kind: 'reject-user', userId: String(f.reject_user), ...(typeof f.status === 'number' ? { status: f.status } : {}) };
    case 'throttle_user':
      return { kind: 'throttle-user', userId: String(f.throttle_user), times, retryAfter: retryAfter ?? 0 };
  }
}
