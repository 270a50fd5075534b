import type { YamlPath } from '../workflow/load.js';
import type { CaseOutcome, ReceivedRequest } from './harness.js';
import { formatPath, matchList, mismatches, show, type ListFailure } from './match.js';
import { TESTED_PROVIDERS } from './schema.js';
import type { TestCase } from './spec.js';

/** One expectation that does not hold: where it is written, what went wrong, and the detail. */
export interface Failure {
  /** YAML path of the expectation in the test file. */
  path: YamlPath;
  message: string;
  details: string[];
}

const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Every expectation of a case checked against what its run did. */
export function checkCase(testCase: TestCase, outcome: CaseOutcome): Failure[] {
  const base: YamlPath = ['cases', testCase.index, 'expect'];
  const expect = testCase.expect;
  const failures: Failure[] = [];
  const fail = (at: YamlPath, message: string, details: string[] = []): void => void failures.push({ path: [...base, ...at], message, details });

  if (outcome.timedOut) {
    return [{ path: ['cases', testCase.index, 'name'], message: `the run did not finish within ${testCase.timeoutMs} ms (set \`timeout:\` for a longer case)`, details: [] }];
  }
  const wanted = typeof expect.status === 'string' ? expect.status : 'succeeded';
  const summary = outcome.summary;
  const actual = outcome.invalid !== undefined ? 'invalid' : (summary?.status ?? 'failed');
  const reason = outcome.invalid ?? summary?.error?.message;
  if (wanted !== actual) {
    const at: YamlPath = 'status' in expect ? ['status'] : [];
    const verb: Record<string, string> = { succeeded: 'succeed', failed: 'fail', invalid: 'be refused as invalid' };
    fail(at, `expected the run to ${verb[wanted] ?? wanted}, but it ${actual === 'invalid' ? 'was refused' : actual}${reason ? `: ${reason}` : ''}`);
  }
  if (!summary) return failures;

  // Production answers 200 and loses these silently; a test can say so.
  for (const d of outcome.dropped) {
    failures.push({ path: ['cases', testCase.index, 'name'], message: `Segment would drop message ${d.n}: ${d.reason}`, details: [`Segment answers 200 to it and drops it without a word: ${show(d.message, 120)}`] });
  }
  checkError(expect.error, summary.error, fail);
  for (const [id, expected] of Object.entries(obj(expect.outputs))) {
    const step = summary.steps[id];
    if (!step) {
      fail(['outputs', id], `the run has no top-level step \`${id}\` (it ran: ${Object.keys(summary.steps).join(', ') || 'none'})`);
      continue;
    }
    for (const m of mismatches(expected, step.output)) fail(['outputs', id, ...m.path], `outputs.${formatPath([id, ...m.path])}: ${m.message}`);
  }
  (Array.isArray(expect.logs) ? expect.logs : []).forEach((text, k) => {
    if (!outcome.logs.some((line) => line.includes(String(text)))) {
      fail(['logs', k], `no log line contains ${show(text)}`, outcome.logs.length ? ['the run logged:', ...outcome.logs.slice(0, 10).map((l) => `  ${l}`)] : ['the run logged nothing']);
    }
  });
  for (const provider of TESTED_PROVIDERS) {
    const spec = obj(obj(expect.calls)[provider]);
    const received = outcome.received[provider];
    checkList(spec, received, 'sequence', ['calls', provider], `${provider} request`, (r) => describeRequest(r as ReceivedRequest, provider), fail);
  }
  const stored = outcome.stored;
  checkList(obj(expect.events), stored.events, 'set', ['events'], 'Amplitude event', (e) => show(e, 120), fail);
  checkList(obj(expect.identifications), stored.identifications, 'set', ['identifications'], 'Amplitude identification', (e) => show(e, 120), fail);
  checkList(obj(expect.messages), stored.messages, 'set', ['messages'], 'Segment message', (e) => show(e, 120), fail);
  for (const [user, expected] of Object.entries(obj(expect.users))) {
    const props = stored.users[user];
    if (!props) fail(['users', user], `Amplitude has no user \`${user}\` (it has: ${Object.keys(stored.users).slice(0, 10).join(', ') || 'none'})`);
    else for (const m of mismatches(expected, props)) fail(['users', user, ...m.path], `users.${formatPath([user, ...m.path])}: ${m.message}`);
  }
  return failures;
}

type Fail = (at: YamlPath, message: string, details?: string[]) => void;

function checkError(expected: unknown, actual: { step: string; item: number | null; message: string } | null, fail: Fail): void {
  if (expected === undefined || !actual) return;
  if (typeof expected === 'string') {
    if (!actual.message.includes(expected)) fail(['error'], `the error message does not contain ${show(expected)}`, [`it is: ${actual.message}`]);
    return;
  }
  const e = obj(expected);
  if (typeof e.step === 'string' && e.step !== actual.step) fail(['error', 'step'], `expected step \`${e.step}\` to fail, but \`${actual.step}\` did`, [actual.message]);
  if ('item' in e && e.item !== actual.item) fail(['error', 'item'], `expected loop item ${show(e.item)} to fail, but it was ${show(actual.item)}`, [actual.message]);
  if (typeof e.message === 'string' && !actual.message.includes(e.message)) fail(['error', 'message'], `the error message does not contain ${show(e.message)}`, [`it is: ${actual.message}`]);
}

/** `count`, `items`/`requests` and `order` of one list expectation. */
function checkList(spec: Record<string, unknown>, received: readonly unknown[], defaultOrder: 'sequence' | 'set', at: YamlPath, noun: string, describe: (x: unknown) => string, fail: Fail): void {
  const listing = (): string[] => (received.length === 0 ? [`none received`] : [...received.slice(0, 20).map((r, i) => `  ${i + 1}. ${describe(r)}`), ...(received.length > 20 ? [`  … and ${received.length - 20} more`] : [])]);
  if (typeof spec.count === 'number' && spec.count !== received.length) {
    fail([...at, 'count'], `expected ${plural(spec.count, noun)}, got ${received.length}`, listing());
  }
  const key = Array.isArray(spec.requests) ? 'requests' : 'items';
  const expected = Array.isArray(spec[key]) ? (spec[key] as unknown[]) : [];
  if (expected.length === 0) return;
  const order = spec.order === 'set' || spec.order === 'sequence' ? spec.order : defaultOrder;
  for (const failure of matchList(expected, received, order)) {
    const { message, details } = describeFailure(failure, noun, describe, received);
    fail([...at, key, failure.index], `${formatPath([...at.slice(at[0] === 'calls' ? 1 : 0), key, failure.index])}: ${message}`, details);
  }
}

function describeFailure(failure: ListFailure, noun: string, describe: (x: unknown) => string, received: readonly unknown[]): { message: string; details: string[] } {
  switch (failure.kind) {
    case 'missing': {
      const closest = failure.closest;
      if (!closest) return { message: `no ${noun} matches: none received`, details: [] };
      return {
        message: `no ${noun} matches`,
        details: [`closest is #${closest.at + 1}, ${describe(received[closest.at])}:`, ...closest.mismatches.slice(0, 8).map((m) => `  ${formatPath(m.path) || '(the whole value)'}: ${m.message}`)],
      };
    }
    case 'order':
      return {
        message: `matches ${noun} #${failure.matchedAt + 1}, which came before #${failure.after + 1} that matched the item above it`,
        details: ['the order differs; write `order: set` when it does not matter'],
      };
    case 'taken':
      return { message: `matches only ${noun} ${failure.candidates.map((c) => `#${c + 1}`).join(', ')}, which other items of this list already matched`, details: [] };
  }
}

export function describeRequest(r: ReceivedRequest, provider: string): string {
  const where = provider === 'http' ? r.url : r.path;
  const query = Object.keys(r.query).length ? `?${new URLSearchParams(r.query).toString()}` : '';
  return `${r.method} ${where}${query} → ${r.status === 0 ? 'connection dropped' : r.status}  ${show(r.body, 90)}`;
}
