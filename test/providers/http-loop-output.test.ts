import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWorkflow } from '../../src/engine/run.js';
import { createFerry } from '../../src/engine/runtime.js';
import type { RunSummary } from '../../src/types.js';
import { registryWith, workflowFrom } from '../helpers/workflow.js';
import { startServer } from '../helpers/server.js';

// What a loop keeps of each http.request answer (README, "What a loop keeps"): the status
// always; headers and body only when a template of the workflow reads them.
const registry = registryWith();
let server: Awaited<ReturnType<typeof startServer>>;
beforeAll(async () => {
  server = await startServer((req, res) => {
    const n = Number(new URL(req.url, 'http://x').searchParams.get('n'));
    res.writeHead(200, { 'content-type': 'application/json', 'x-trace': `t${n}` });
    res.end(JSON.stringify({ id: n * 10, name: `user ${n}` }));
  });
});
afterAll(() => server.close());

async function run(steps: string, after = ''): Promise<RunSummary> {
  const wf = workflowFrom(`
name: lean
steps:
  - id: each
    loop: { over: [0, 1, 2], as: n, concurrency: 3 }
    steps:
      - id: call
        action: http.request
        with: { url: "${server.url}/users?n=<<n>>" }
${steps}
${after}`, registry);
  const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
  expect(summary.status, JSON.stringify(summary.error)).toBe('succeeded');
  return summary;
}

const items = (summary: RunSummary, loop = 'each'): Record<string, unknown>[] => (summary.steps[loop]?.output as { items: Record<string, unknown>[] }).items;

describe('what a loop keeps of http.request answers', () => {
  it('keeps only the status of each answer when no template reads the answers', async () => {
    const summary = await run('');
    expect(items(summary)).toEqual([{ call: { status: 200 } }, { call: { status: 200 } }, { call: { status: 200 } }]);
  });

  it('gives a later step of the item the body it reads, and keeps the body but not the headers', async () => {
    const summary = await run(`
      - id: use
        action: core.log
        with: { message: "<<steps.call.output.body.name>> is <<steps.call.output.body.id>>" }`);
    expect(items(summary)).toEqual([0, 1, 2].map((n) => ({ call: { status: 200, body: { id: n * 10, name: `user ${n}` } }, use: null })));
  });

  it('keeps the headers a later step reads, and an `if:` counts as reading', async () => {
    const summary = await run(`
      - id: use
        action: core.log
        if: <<eq steps.call.output.headers.x-trace "t1">>
        with: { message: traced }`);
    expect(items(summary)[1]).toEqual({ call: { status: 200, headers: expect.objectContaining({ 'x-trace': 't1' }) }, use: null });
  });

  it.each([
    ['an item of the loop by position', '<<steps.each.output.items.[2].call.body.name>>', 'user 2'],
    ['the items as a whole', '<<length steps.each.output.items>>', '3'],
    ['the loop output as a whole', '<<json steps.each.output>>', '"x-trace":"t0"'],
    ['the items in an #each block', '<<#each steps.each.output.items>><<this.call.body.id>>,<</each>>', '0,10,20,'],
  ])('keeps whole answers when a step after the loop reads %s', async (_what, template, expected) => {
    const logged: string[] = [];
    const wf = workflowFrom(`
name: lean
steps:
  - id: each
    loop: { over: [0, 1, 2], as: n }
    steps:
      - id: call
        action: http.request
        with: { url: "${server.url}/users?n=<<n>>" }
  - id: report
    action: core.log
    with: { message: '${template}' }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), observer: { log: (_level, message) => logged.push(message) } });
    expect(summary.status, JSON.stringify(summary.error)).toBe('succeeded');
    expect(logged.join('\n')).toContain(expected);
    expect(items(summary)[2]).toEqual({ call: { status: 200, headers: expect.objectContaining({ 'x-trace': 't2' }), body: { id: 20, name: 'user 2' } } });
  });

  it('keeps only the status when a step after the loop reads only the loop count', async () => {
    const summary = await run('', `
  - id: report
    action: core.log
    with: { message: "<<steps.each.output.count>> calls" }`);
    expect(items(summary)[0]).toEqual({ call: { status: 200 } });
  });

  it('keeps whole answers of an inner loop whose outer loop items are read', async () => {
    const wf = workflowFrom(`
name: nested
steps:
  - id: outer
    loop: { over: [[0, 1], [2]], as: group }
    steps:
      - id: inner
        loop: { over: <<group>>, as: n }
        steps:
          - id: call
            action: http.request
            with: { url: "${server.url}/users?n=<<n>>" }
  - id: report
    action: core.log
    with: { message: "<<json steps.outer.output.items>>" }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    const outer = items(summary, 'outer') as { inner: { items: { call: { body: unknown } }[] } }[];
    expect(outer[1]?.inner.items[0]?.call.body).toEqual({ id: 20, name: 'user 2' });
  });

  it('keeps whole answers when a template reads through `@root`, whose paths it cannot follow', async () => {
    const summary = await run(`
      - id: use
        action: core.log
        with: { message: "<<#each (lookup @root 'steps')>>x<</each>>" }`);
    expect(items(summary)[0]).toMatchObject({ call: { status: 200, body: { id: 0 } } });
  });

  it('keeps the whole answer of a step outside any loop', async () => {
    const wf = workflowFrom(`
name: top
steps:
  - id: get
    action: http.request
    with: { url: "${server.url}/users?n=4" }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.steps.get?.output).toEqual({ status: 200, headers: expect.objectContaining({ 'x-trace': 't4' }), body: { id: 40, name: 'user 4' } });
  });
});
