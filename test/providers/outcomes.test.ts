import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { eventOutcomes } from '../../src/providers/amplitude/send-event.js';
import { refusedField } from '../../src/providers/amplitude/identify-user.js';
import { exportWorkflow, fastRetry, runAgainst, sandboxProviders, userIds } from '../helpers/sandbox.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let sandbox: Sandbox;
beforeAll(async () => {
  sandbox = await startSandbox();
});
afterAll(async () => sandbox.close());
beforeEach(() => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
});

const ids = userIds;
/** Items per request, in the order the emulator received them. */
const sizes = (key: 'events' | 'identification') => sandbox.amplitude.requests.map((r) => {
  const body = (r.body as Record<string, unknown>)[key];
  return Array.isArray(body) ? body.length : 1;
});

function loop(action: string, withBlock: string, extra = ''): string {
  return `
name: outcomes
${fastRetry}
${sandboxProviders(sandbox, { amplitude: extra })}
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 200 }
    steps:
      - id: call
        action: ${action}
        with: ${withBlock}
`;
}
const sendEvent = (extra = '') => loop('amplitude.send_event', '{ user_id: <<id>>, event_type: Typed }', extra);
const identifyUser = (extra = '') => loop('amplitude.identify_user', '{ user_id: <<id>>, user_properties: { n: <<loop.index>> } }', extra);

describe('batches follow the outcome a provider reads from its answer, never its message text', () => {
  it('splits an Amplitude 400 that names no event even when its text mentions an api key', async () => {
    sandbox.amplitude.inject({ kind: 'status', status: 400, times: 1, path: '/2/httpapi', body: { code: 400, error: 'Request rejected: an event property looks like an api key' } });
    const summary = await runAgainst(sendEvent(), { inputs: { ids: ids(40) } });
    expect(summary.status).toBe('succeeded');
    const [first, ...halves] = sizes('events');
    expect(first).toBe(40);
    expect(halves.reduce((a, b) => a + b, 0)).toBe(40);
    expect(sandbox.amplitude.events.size).toBe(40);
    expect(sandbox.amplitude.duplicateInsertIds).toBe(0);
  });

  it('fails only the events a 400 names as invalid, even when its text says "Invalid API key", and sends the rest again', async () => {
    sandbox.amplitude.inject({
      kind: 'status', status: 400, times: 1, path: '/2/httpapi',
      body: { code: 400, error: 'Invalid API key usage in event properties', events_with_invalid_fields: { 'event_properties.api_key': [3] } },
    });
    const summary = await runAgainst(sendEvent(), { inputs: { ids: ids(40) } });
    expect(summary.status).toBe('failed');
    expect(summary.error).toMatchObject({ step: 'call', item: 3, status: 400 });
    expect(summary.error?.message).toContain('this event has invalid `event_properties.api_key`');
    expect(summary.steps.each?.steps?.call).toMatchObject({ succeeded: 39, failed: 1 });
    expect(sizes('events')).toEqual([40, 39]);
  });

  it('fails every event at once on a refused api key: never split, never retried', async () => {
    const summary = await runAgainst(sendEvent().replace(/api_key: .*/, 'api_key: not-a-known-key'), { inputs: { ids: ids(40) } });
    expect(summary.status).toBe('failed');
    expect(summary.error?.provider?.error).toMatch(/^Invalid API key: /);
    // Every event was sent once: one request for the batch, no halves, no retries.
    expect(sizes('events').reduce((a, b) => a + b, 0)).toBe(40);
    expect(summary.steps.each?.steps?.call?.calls.attempts).toBe(40);
  });

  it('ends a batch whose 400 names only events it does not hold by halves, not by endless free resends', async () => {
    sandbox.amplitude.inject({ kind: 'status', status: 400, times: 1000, path: '/2/httpapi', body: { code: 400, error: 'Invalid field values on some events', events_with_invalid_fields: { time: [4000] } } });
    const summary = await runAgainst(sendEvent(), { inputs: { ids: ids(20) } });
    expect(summary.status).toBe('failed');
    expect(summary.error?.provider?.error).toBe('Invalid field values on some events');
    expect(sizes('events')[0]).toBe(20);
    // Halving 20 events down to single ones takes at most 2 * 20 - 1 requests.
    expect(sandbox.amplitude.requests.length).toBeLessThanOrEqual(39);
  });

  it("splits an Identify 400 whose plain text names an identification, even when its reason mentions the api_key", async () => {
    sandbox.amplitude.inject({ kind: 'status', status: 400, times: 1, path: '/identify', body: 'invalid identification[2].user_properties: api_key is a reserved property name' });
    const summary = await runAgainst(identifyUser(), { inputs: { ids: ids(30) } });
    expect(summary.status).toBe('succeeded');
    const [first, ...halves] = sizes('identification');
    expect(first).toBe(30);
    expect(halves.reduce((a, b) => a + b, 0)).toBe(30);
    expect(sandbox.amplitude.identifications).toHaveLength(30);
  });

  it('fails every identification at once when Identify refuses the api key', async () => {
    const summary = await runAgainst(identifyUser().replace(/api_key: .*/, 'api_key: not-a-known-key'), { inputs: { ids: ids(30) } });
    expect(summary.status).toBe('failed');
    expect(sizes('identification').reduce((a, b) => a + b, 0)).toBe(30);
    expect(summary.steps.each?.steps?.call?.calls.attempts).toBe(30);
  });
});

describe("Amplitude's HTTP V2 answers, read field by field", () => {
  const answer = (status: number, body: unknown, headers: Record<string, string> = {}) => ({ status, headers, text: typeof body === 'string' ? body : JSON.stringify(body) });
  const kinds = (outcome: ReturnType<typeof eventOutcomes>) => (Array.isArray(outcome) ? outcome.map((o) => o.kind) : outcome.kind);

  it.each([
    ['413', answer(413, { code: 413, error: 'Payload too large' }), 'split'],
    ['400 "Invalid API key: …"', answer(400, { code: 400, error: 'Invalid API key: abc123' }), 'auth'],
    ['400 with missing_field api_key', answer(400, { code: 400, error: 'Request missing required field', missing_field: 'api_key' }), 'auth'],
    ['400 that names no event', answer(400, { code: 400, error: 'Invalid request body: unknown field api_keys' }), 'split'],
    ['400 that is not JSON (a proxy page)', answer(400, '<html>Bad Request</html>'), 'final'],
    ['429 without throttled_events', answer(429, { code: 429, error: 'Too many requests for some devices and users' }), 'throttled'],
    ['400 naming event 1 of 3', answer(400, { code: 400, error: 'Invalid API key usage', events_with_missing_fields: { event_type: [1] } }), ['resend', 'item-fault', 'resend']],
    ['429 naming event 2 of 3', answer(429, { code: 429, error: 'Too many requests', throttled_events: [2] }), ['ok', 'ok', 'throttled']],
  ])('%s', (_name, a, expected) => {
    expect(kinds(eventOutcomes(a, 3))).toEqual(expected);
  });

  it("waits Amplitude's documented 30 s after a 429 that names no wait, or the Retry-After it sends", () => {
    expect(eventOutcomes(answer(429, { code: 429, throttled_events: [0] }), 1)).toMatchObject([{ kind: 'throttled', afterMs: 30_000 }]);
    expect(eventOutcomes(answer(429, { code: 429 }, { 'retry-after': '2' }), 1)).toMatchObject({ kind: 'throttled', afterMs: 2000 });
  });

  it('leaves a 503 to the engine, which judges it by its status', () => {
    expect(() => eventOutcomes(answer(503, { code: 503, error: 'Service Unavailable' }), 3)).toThrow(expect.objectContaining({ status: 503 }));
  });

  it('reads the field an Identify 400 names from its fixed leading words', () => {
    expect(refusedField('invalid api_key: Invalid API key: abc')).toBe('api_key');
    expect(refusedField('missing api_key: the form field api_key is required')).toBe('api_key');
    expect(refusedField('invalid identification[0].user_properties: the api_key property is reserved')).toBe('identification[0].user_properties');
    expect(refusedField('Bad api_key: nope')).toBeUndefined();
    expect(refusedField('no colon here about the api_key')).toBeUndefined();
  });
});

describe('amplitude.export_events splits by status, not by the words of the answer', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await tempDir('ferry-outcomes-');
  });
  const exportFlow = (start: string, end: string, out: string): string => exportWorkflow(sandbox, dir, start, end, out);

  it('splits a multi-hour range on a 400 whatever its text says', async () => {
    const hours = new Map<string, object[]>();
    for (let h = 0; h < 4; h++) hours.set(`20261103T0${h}`, [{ event_type: 'x', n: h }]);
    sandbox.amplitude.setExportData(hours);
    sandbox.amplitude.inject({ kind: 'status', status: 400, times: 1, path: '/api/2/export', body: 'Please ask for fewer hours' });
    const summary = await runAgainst(exportFlow('20261103T00', '20261103T03', 'worded.ndjson'));
    expect(summary.status).toBe('succeeded');
    expect(summary.steps.exp?.output).toMatchObject({ count: 4 });
  });

  it('gives up on a lasting 400 of a year-long range after one request per halving, at its first hour', async () => {
    sandbox.amplitude.setExportData(new Map());
    sandbox.amplitude.inject({ kind: 'status', status: 400, times: 1000, path: '/api/2/export', body: 'Export is not enabled for this project' });
    const summary = await runAgainst(exportFlow('20250101T00', '20251231T23', 'never.ndjson'));
    expect(summary.status).toBe('failed');
    expect(summary.error?.message).toContain('Export is not enabled for this project');
    // 8760 hours: log2 rounds up to 14 halvings, plus the first request.
    expect(sandbox.amplitude.requests.length).toBeLessThanOrEqual(15);
  });
});
