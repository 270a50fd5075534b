import type { Redactor } from '../redact.js';
import type { CallSummary } from '../types.js';
import type { JournalEntry, StepEntry } from './journal.js';

/**
 * One journal line for `entry`. Most lines are `step` entries of loop items, so those are
 * written by hand and short: fields equal to their default are left out (`status`
 * `succeeded`, `output` null, `ms` 0) and a call summary without failures or waits is its
 * count (`"calls":1`); `journalEntryFrom` fills them back. Secrets are redacted in the values
 * that come from outside the engine (outputs, errors, a run's inputs and trigger), value by
 * value; what the engine makes itself (ids, item positions, counts, times) is never searched,
 * so a secret that spells `1234` cannot turn item 1234 into `[redacted]`.
 */
export function journalLine(entry: JournalEntry, redactor: Redactor | undefined): string {
  if (entry.t === 'step') return stepLine(entry, redactor);
  if (entry.t === 'progress') return `{"t":"progress","id":${JSON.stringify(entry.id)},"item":[${entry.item.join(',')}],"done":${entry.done}}\n`;
  return `${valueText(entry, redactor)}\n`;
}

/**
 * A step entry that says no more than where it is: succeeded, no output, no calls, no time
 * (a loop item's `core.log`, a skipped branch taken). Consecutive ones of one step are
 * written as one line (`bareLine`).
 */
export function isBare(entry: StepEntry): boolean {
  return entry.status === 'succeeded' && entry.ms === 0 && (entry.output === null || entry.output === undefined) && entry.calls === undefined && entry.error === undefined && entry.item.length > 0;
}

/** Bare entries of one step at `count` consecutive positions: at `item`, then with its last index counting up. */
export interface BareRun {
  id: string;
  item: readonly number[];
  count: number;
}

/** Most positions one bare line covers, so that a reader expands a bounded number of entries at a time. */
export const MAX_BARE_RUN = 1024;

export function bareLine(run: BareRun): string {
  return `{"t":"step","id":${JSON.stringify(run.id)},"item":[${run.item.join(',')}]${run.count > 1 ? `,"n":${run.count}` : ''}}\n`;
}

function stepLine(entry: StepEntry, redactor: Redactor | undefined): string {
  let line = `{"t":"step","id":${JSON.stringify(entry.id)},"item":[${entry.item.join(',')}]`;
  // Statuses are the engine's own words: no escaping needed.
  if (entry.status !== 'succeeded') line += `,"status":"${entry.status}"`;
  if (entry.output !== null && entry.output !== undefined) line += `,"output":${valueText(entry.output, redactor)}`;
  if (entry.error) line += `,"error":${valueText(entry.error, redactor)}`;
  if (entry.calls) line += `,"calls":${callsText(entry.calls)}`;
  if (entry.ms !== 0) line += `,"ms":${entry.ms}`;
  return `${line}}\n`;
}

function valueText(value: unknown, redactor: Redactor | undefined): string {
  return redactor ? redactor.redactJson(value) : (JSON.stringify(value) ?? 'null');
}

/** `calls` as its count when every call took one attempt, none failed and none waited. */
function callsText(calls: CallSummary): string {
  if (calls.attempts === calls.calls && calls.waitedMs === 0 && isEmpty(calls.failures)) return String(calls.calls);
  return JSON.stringify(calls);
}

function isEmpty(record: Record<string, number>): boolean {
  for (const _ in record) return false;
  return true;
}

/**
 * Adds the entries a parsed journal line holds to `into`, with the fields `journalLine` leaves
 * out filled back and a bare run (`"n"`) expanded into its entries; false for a line that is
 * not an entry. Lines written in full (older journals, the Redis backend) are read as they are.
 */
export function addJournalEntries(value: unknown, into: JournalEntry[]): boolean {
  if (!isObject(value)) return false;
  if (value.t !== 'step') {
    if (!isJournalEntry(value)) return false;
    into.push(value);
    return true;
  }
  value.status ??= 'succeeded';
  value.ms ??= 0;
  if (!('output' in value)) value.output = null;
  if (typeof value.calls === 'number') value.calls = { calls: value.calls, attempts: value.calls, failures: {}, waitedMs: 0 };
  const { n } = value;
  delete value.n;
  if (!isJournalEntry(value) || value.t !== 'step') return false;
  into.push(value);
  if (n === undefined) return true;
  const last = value.item.length - 1;
  const first = value.item[last];
  if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > MAX_BARE_RUN || typeof first !== 'number') {
    into.pop();
    return false;
  }
  for (let i = 1; i < (n as number); i++) {
    const item = value.item.slice();
    item[last] = first + i;
    into.push({ t: 'step', id: value.id, item, status: 'succeeded', output: null, ms: 0 });
  }
  return true;
}

const isString = (v: unknown): v is string => typeof v === 'string';
const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The fields readers rely on, per entry type: a line that parses but lacks them is damage, not an entry. */
export function isJournalEntry(value: unknown): value is JournalEntry {
  if (!isObject(value)) return false;
  switch (value.t) {
    case 'run':
      return isString(value.runId) && isString(value.workflow) && isString(value.file) && isString(value.startedAt) && typeof value.pid === 'number' && isObject(value.inputs) && isObject(value.trigger) && Array.isArray(value.shape);
    case 'resume':
      return isString(value.at) && typeof value.pid === 'number';
    case 'step':
      return isString(value.id) && Array.isArray(value.item) && isString(value.status) && typeof value.ms === 'number';
    case 'progress':
      return isString(value.id) && Array.isArray(value.item) && typeof value.done === 'number';
    case 'item':
      return isString(value.id) && Array.isArray(value.item) && (value.status === 'failed' || value.status === 'succeeded');
    case 'source':
      return isString(value.id) && Array.isArray(value.item) && isString(value.path) && typeof value.size === 'number' && typeof value.mtimeMs === 'number' && isString(value.hash);
    case 'end':
      return isString(value.status) && isString(value.at) && (value.error === null || isObject(value.error));
    default:
      return false;
  }
}
