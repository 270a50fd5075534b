import { describe, expect, it } from 'vitest';
import { defineAction, defineProvider } from '../../src/providers/define.js';
import { runWorkflow } from '../../src/engine/run.js';
import { createFerry } from '../../src/engine/runtime.js';
import { ActionInputError } from '../../src/errors.js';
import { registryWith, workflowFrom } from '../helpers/workflow.js';

/** A provider whose `echo` action records calls, can wait, and fails for chosen values. */
function recorder() {
  const calls: { step: string; item: readonly number[]; value: unknown; key: string }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const echo = defineAction<{ value: unknown; delay?: number; fail?: boolean }, unknown>({
    name: 'echo',
    description: 'returns its value',
    input: { type: 'object', required: ['value'], additionalProperties: false, properties: { value: {}, delay: { type: 'integer' }, fail: { type: 'boolean' } } },
    async run(input, ctx) {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      calls.push({ step: ctx.stepId, item: ctx.item, value: input.value, key: ctx.idempotencyKey() });
      await new Promise((r) => setTimeout(r, input.delay ?? 0));
      inFlight--;
      if (input.fail) throw new ActionInputError(`value ${JSON.stringify(input.value)} is refused`, 'value');
      return input.value;
    },
  });
  const provider = defineProvider({ name: 'test', description: 'test', defaults: { concurrency: 100 }, actions: [echo] });
  return { provider, calls, maxInFlight: () => maxInFlight };
}

describe('runWorkflow', () => {
  it('runs steps in order and exposes earlier outputs to later templates', async () => {
    const rec = recorder();
    const registry = registryWith(rec.provider);
    const wf = workflowFrom(`
name: order
steps:
  - id: a
    action: test.echo
    with: { value: 1 }
  - id: b
    action: test.echo
    with: { value: "after <<steps.a.output>>" }
  - id: c
    action: test.echo
    with: { value: <<steps.b.output>> }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(summary.status).toBe('succeeded');
    expect(rec.calls.map((c) => c.step)).toEqual(['a', 'b', 'c']);
    expect(summary.steps.c?.output).toBe('after 1');
    expect(Object.keys(summary.steps)).toEqual(['a', 'b', 'c']);
  });

  it('runs loop items with `concurrency` in flight and keeps item order in the output', async () => {
    const rec = recorder();
    const registry = registryWith(rec.provider);
    const wf = workflowFrom(`
name: loop
steps:
  - id: each
    loop: { over: <<inputs.items>>, as: it, concurrency: 4 }
    steps:
      - id: e
        action: test.echo
        with: { value: "<<it>>-<<loop.index>>", delay: <<it>> }
`, registry);
    const items = [30, 5, 20, 1, 15, 2, 25, 3, 10, 4];
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), inputs: { items } });
    expect(summary.status).toBe('succeeded');
    expect(rec.maxInFlight()).toBe(4);
    expect(summary.steps.each?.output).toEqual({ count: 10, items: items.map((it, i) => ({ e: `${it}-${i}` })) });
    expect(summary.steps.each?.steps?.e).toMatchObject({ succeeded: 10, failed: 0, skipped: 0 });
  });

  it('skips a step whose `if` is falsy, including a missing path', async () => {
    const rec = recorder();
    const registry = registryWith(rec.provider);
    const wf = workflowFrom(`
name: cond
steps:
  - id: each
    loop: { over: <<inputs.users>>, as: user }
    steps:
      - id: mail
        action: test.echo
        if: <<user.email>>
        with: { value: <<user.email>> }
  - id: never
    action: test.echo
    if: false
    with: { value: 1 }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), inputs: { users: [{ email: 'a@x.io' }, {}, { email: '' }] } });
    expect(rec.calls.map((c) => c.value)).toEqual(['a@x.io']);
    expect(summary.steps.never?.status).toBe('skipped');
    expect(summary.steps.each?.steps?.mail).toMatchObject({ succeeded: 1, skipped: 2 });
  });

  it('stops at a failing loop item and names the step, the item and the cause', async () => {
    const rec = recorder();
    const registry = registryWith(rec.provider);
    const wf = workflowFrom(`
name: fail
steps:
  - id: each
    loop: { over: <<inputs.items>>, as: it, concurrency: 1 }
    steps:
      - id: e
        action: test.echo
        with: { value: <<it>>, fail: <<eq it 3>> }
  - id: after
    action: test.echo
    with: { value: done }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), inputs: { items: [1, 2, 3, 4, 5] } });
    expect(summary.status).toBe('failed');
    expect(summary.error).toMatchObject({ step: 'e', item: 2 });
    expect(summary.error?.message).toMatch(/step `e`, loop item 2: .*value 3 is refused/);
    expect(rec.calls.map((c) => c.value)).toEqual([1, 2, 3]);
    expect(summary.steps.after).toBeUndefined();
    expect(summary.steps.each?.status).toBe('failed');
  });

  it('reports a template that reads a missing path with the step, field and template', async () => {
    const rec = recorder();
    const registry = registryWith(rec.provider);
    const wf = workflowFrom(`
name: tpl
triggers: [{ type: manual, inputs: { user: { type: object } } }]
steps:
  - id: e
    action: test.echo
    with: { value: { email: <<inputs.user.email>> } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), inputs: { user: { id: 1 } } });
    expect(summary.error?.step).toBe('e');
    expect(summary.error?.message).toContain('with.value.email');
    expect(summary.error?.message).toContain('"<<inputs.user.email>>"');
    expect(rec.calls).toHaveLength(0);
  });

  it('checks rendered inputs against the action schema at run time', async () => {
    const registry = registryWith();
    const wf = workflowFrom(`
name: rt
steps:
  - id: say
    action: core.log
    with: { message: hi, level: <<inputs.level>> }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), inputs: { level: 'loud' } });
    expect(summary.status).toBe('failed');
    expect(summary.error?.message).toMatch(/`level` must be one of/);
  });

  it('fails with a clear message when loop.over is not an array', async () => {
    const registry = registryWith();
    const wf = workflowFrom(`
name: notarray
steps:
  - id: each
    loop: { over: <<inputs.users>> }
    steps:
      - { id: say, action: core.log, with: { message: x } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), inputs: { users: { a: 1 } } });
    expect(summary.error).toMatchObject({ step: 'each', item: null });
    expect(summary.error?.message).toMatch(/loop.over must render to an array, got object/);
  });

  it('gives each loop item a stable idempotency key that differs between items and runs', async () => {
    const rec = recorder();
    const registry = registryWith(rec.provider);
    const wf = workflowFrom(`
name: keys
steps:
  - id: each
    loop: { over: [1, 2] }
    steps:
      - { id: e, action: test.echo, with: { value: <<item>> } }
`, registry);
    await runWorkflow(wf, { ferry: createFerry({ registry }), runId: 'RUN1' });
    await runWorkflow(wf, { ferry: createFerry({ registry }), runId: 'RUN1' });
    await runWorkflow(wf, { ferry: createFerry({ registry }), runId: 'RUN2' });
    const keys = rec.calls.map((c) => c.key);
    expect(keys[0]).toBe(keys[2]);
    expect(keys[1]).toBe(keys[3]);
    expect(keys[0]).not.toBe(keys[1]);
    expect(keys[4]).not.toBe(keys[0]);
  });

  it('runs nested loops with loop.index of the innermost loop', async () => {
    const rec = recorder();
    const registry = registryWith(rec.provider);
    const wf = workflowFrom(`
name: nested
steps:
  - id: outer
    loop: { over: [[a, b], [c]], as: group }
    steps:
      - id: inner
        loop: { over: <<group>>, as: letter }
        steps:
          - { id: e, action: test.echo, with: { value: "<<letter>><<loop.index>>" } }
`, registry);
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }) });
    expect(rec.calls.map((c) => [c.value, c.item])).toEqual([['a0', [0, 0]], ['b1', [0, 1]], ['c0', [1, 0]]]);
    expect(summary.steps.outer?.output).toEqual({ count: 2, items: [{ inner: { count: 2, items: [{ e: 'a0' }, { e: 'b1' }] } }, { inner: { count: 1, items: [{ e: 'c0' }] } }] });
  });
});
