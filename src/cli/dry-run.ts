import { stat } from 'node:fs/promises';
import { MockAgent } from 'undici';
import { createFerry } from '../engine/runtime.js';
import { placeholderSecrets } from '../engine/secrets.js';
import { startRun } from '../engine/session.js';
import { readItems } from '../engine/sources.js';
import type { TriggerData } from '../types.js';
import type { Registry } from '../providers/registry.js';
import { lowerHeaders } from '../testing/harness.js';
import { isolate, mapSteps } from '../testing/isolate.js';
import type { Step, Workflow } from '../workflow/types.js';
import type { CommandIO } from './io.js';

export interface DryRunOptions {
  /** The command's registry (the workflow was loaded with it). */
  registry: Registry;
  /** Inputs as given; the session checks them. */
  inputs: Record<string, unknown>;
  trigger: TriggerData;
  /** Render only the first N items of each loop. */
  limit: number | undefined;
  json: boolean;
  verbose: boolean;
}

interface PlannedCall {
  step: string;
  /** Loop indexes from the outermost loop in. */
  item: number[];
  action: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
}

/**
 * `ferry run --dry-run`: the workflow runs with every template rendered, but each provider
 * call is answered in-process with the provider's success shape and printed instead of
 * sent. Loops go one item at a time so that each call belongs to exactly one step.
 */
export async function dryRun(original: Workflow, options: DryRunOptions, io: CommandIO): Promise<number> {
  // A dry run never reads real secrets: placeholders stand in, and are redacted like secrets.
  // `<<env.NAME>>` of a declared secret reads the same placeholder as `<<secrets.NAME>>`:
  // a dry run never shows a real secret, whichever way the workflow reads it.
  const placeholders = await placeholderSecrets.lookup(original.secrets);
  for (const name of original.secrets) io.redactor.add(io.env[name]);
  const env = { ...io.env, ...placeholders };
  const notes: string[] = [];
  const note = (text: string): void => {
    notes.push(text);
    io.stderr(`${text}\n`);
  };
  const planned = await limitLoops(oneAtATime(original), options.limit, note);
  const isolated = await isolate(planned);
  const where = locateSteps(original.steps);
  let current: { step: string; item: number[] } = { step: '(run)', item: [] };
  const calls: PlannedCall[] = [];
  const agent = new MockAgent();
  agent.disableNetConnect();
  agent
    .get(() => true)
    .intercept({ path: () => true, method: () => true })
    .reply((opts) => {
      const url = new URL(opts.path, opts.origin);
      const text = typeof opts.body === 'string' ? opts.body : Buffer.isBuffer(opts.body) ? opts.body.toString('utf8') : '';
      const call: PlannedCall = { ...current, action: where.get(current.step)?.action ?? '', method: opts.method, url: url.toString(), headers: lowerHeaders(opts.headers), body: readBody(text, lowerHeaders(opts.headers)['content-type']) };
      calls.push(call);
      if (!options.json) io.stdout(formatCall({ ...call, body: io.redactor.redactValue(call.body) }, calls.length, where));
      return successAnswer(url.pathname, call.body);
    })
    .persist();
  // A runtime of its own around the recording dispatcher: nothing of it can reach the network.
  const ferry = createFerry({ registry: options.registry, dispatcher: agent, env });
  try {
    const session = startRun(isolated.workflow, {
      ferry,
      inputs: options.inputs,
      trigger: options.trigger,
      secrets: placeholderSecrets,
      env,
      redactor: io.redactor,
      // With one item at a time, a batch window would only add waiting.
      providerOverrides: Object.fromEntries(Object.keys(original.providers).map((p) => [p, { batch: false }])),
    });
    // Each call is labelled with the step that started last: loops go one item at a time.
    session.on((event) => {
      if (event.type === 'step-started') current = { step: event.step, item: [...event.item] };
      else if (event.type === 'step-finished' && event.summary.status === 'skipped' && !options.json) io.stdout(`- ${label(event.step, event.item, where)}  skipped (\`if:\` is false)\n\n`);
      else if (event.type === 'log' && (event.level !== 'debug' || options.verbose)) io.stderr(`  ${event.level === 'info' ? '' : `${event.level}: `}[${label(event.step, event.item, where)}] ${event.message}\n`);
    });
    io.onRun?.(session);
    const summary = await session.done;
    if (options.json) {
      io.json({ workflow: original.name, status: summary.status, error: summary.error, notes, calls: calls.map(redactHeaders) });
    }
    const byProvider = new Map<string, number>();
    for (const c of calls) byProvider.set(c.action.split('.')[0] ?? '', (byProvider.get(c.action.split('.')[0] ?? '') ?? 0) + 1);
    const counts = [...byProvider].map(([p, n]) => `${p} ${n}`).join(', ');
    if (summary.status === 'failed') {
      io.stderr(`\ndry run stopped after ${calls.length} call${calls.length === 1 ? '' : 's'}: ${summary.error?.message ?? 'failed'}\n`);
      return 2;
    }
    io.stderr(`\ndry run: ${calls.length} provider call${calls.length === 1 ? '' : 's'}${counts ? ` (${counts})` : ''} rendered; nothing was sent\n`);
    return 0;
  } finally {
    await Promise.all([ferry.close(), agent.close(), isolated.cleanup()]);
  }
}

/** Loops in item order, one at a time. */
function oneAtATime(workflow: Workflow): Workflow {
  return mapSteps(workflow, (s) => (s.kind === 'loop' ? { ...s, concurrency: 1 } : s));
}

/** Each loop cut to its first `limit` items; file loops are read up front for that. */
async function limitLoops(workflow: Workflow, limit: number | undefined, note: (text: string) => void): Promise<Workflow> {
  if (limit === undefined) return workflow;
  const files = new Map<string, unknown[]>();
  const collect = async (steps: readonly Step[]): Promise<void> => {
    for (const s of steps) {
      if (s.kind !== 'loop') continue;
      // A file an earlier step writes does not exist yet; it is read whole when the loop starts.
      if (s.file !== undefined && (await stat(s.file).then(() => true, () => false))) {
        const rows: unknown[] = [];
        for await (const row of readItems(s.file)) {
          rows.push(row);
          if (rows.length > limit) break;
        }
        files.set(s.id, rows);
      }
      await collect(s.steps);
    }
  };
  await collect(workflow.steps);
  const noted = new Set<string>();
  const cut = (id: string, items: unknown, more: boolean): unknown => {
    if (!Array.isArray(items) || (items.length <= limit && !more)) return items;
    if (!noted.has(id)) note(`${id}: showing the first ${limit} of ${more ? `more than ${limit}` : items.length} items (--limit ${limit})`);
    noted.add(id);
    return items.slice(0, limit);
  };
  return mapSteps(workflow, (s) => {
    if (s.kind !== 'loop') return s;
    const rows = files.get(s.id);
    if (rows) return { ...s, file: undefined, over: () => cut(s.id, rows, rows.length > limit) };
    const over = s.over;
    return over ? { ...s, over: (context) => cut(s.id, over(context), false) } : s;
  });
}

interface StepPlace {
  action: string;
  /** Enclosing loop ids, outermost first. */
  loops: string[];
}

function locateSteps(steps: readonly Step[], loops: string[] = [], out = new Map<string, StepPlace>()): Map<string, StepPlace> {
  for (const s of steps) {
    if (s.kind === 'loop') locateSteps(s.steps, [...loops, s.id], out);
    else out.set(s.id, { action: s.action, loops });
  }
  return out;
}

/** `each_user#2 › amp`: the loops and items that lead to a step. */
function label(step: string, item: readonly number[], where: Map<string, StepPlace>): string {
  const loops = where.get(step)?.loops ?? [];
  return [...loops.map((loop, i) => `${loop}#${item[i] ?? '?'}`), step].join(' › ');
}

function readBody(text: string, type: string | undefined): unknown {
  if (text === '') return undefined;
  if (/x-www-form-urlencoded/.test(type ?? '')) {
    // Amplitude's Identify form: shown field by field, the JSON field parsed.
    return Object.fromEntries([...new URLSearchParams(text)].map(([k, v]) => [k, parseJson(v) ?? v]));
  }
  return parseJson(text) ?? text;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Authorization values are always hidden: Basic auth encodes the key with a colon no redactor knows. */
function redactHeaders(call: PlannedCall): PlannedCall {
  const headers = Object.fromEntries(Object.entries(call.headers).map(([k, v]) => [k, k === 'authorization' ? `${v.split(' ')[0] ?? ''} [redacted]` : v]));
  return { ...call, headers };
}

function formatCall(raw: PlannedCall, n: number, where: Map<string, StepPlace>): string {
  const call = redactHeaders(raw);
  const lines = [`#${n} ${label(call.step, call.item, where)}  ${call.action}`, `  ${call.method} ${call.url}`];
  for (const [k, v] of Object.entries(call.headers)) lines.push(`  ${k}: ${v}`);
  if (call.body !== undefined) {
    const text = typeof call.body === 'string' ? call.body : JSON.stringify(call.body, null, 2);
    lines.push(...text.split('\n').map((l) => `    ${l}`));
  }
  return `${lines.join('\n')}\n\n`;
}

/** What each provider answers a successful call, so that later steps see realistic outputs. */
function successAnswer(pathname: string, body: unknown): { statusCode: number; data: string; responseOptions: { headers: Record<string, string> } } {
  const json = (data: unknown, status = 200) => ({ statusCode: status, data: JSON.stringify(data), responseOptions: { headers: { 'content-type': 'application/json' } } });
  if (pathname.endsWith('/identify') && !pathname.startsWith('/v1/')) return { statusCode: 200, data: 'success', responseOptions: { headers: { 'content-type': 'text/plain' } } };
  if (pathname.endsWith('/2/httpapi') || pathname === '/batch') {
    const events = (body as { events?: unknown[] } | undefined)?.events;
    return json({ code: 200, events_ingested: Array.isArray(events) ? events.length : 1, payload_size_bytes: 0, server_upload_time: Date.now() });
  }
  // Export: "no data in this range", so nothing is downloaded or written.
  if (pathname.endsWith('/api/2/export')) return { statusCode: 404, data: 'No data for the requested range (dry run)', responseOptions: { headers: { 'content-type': 'text/plain' } } };
  if (pathname.startsWith('/v1/')) return json({ success: true });
  return json({});
}
