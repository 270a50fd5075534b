import { describe, expect, it } from 'vitest';
import { runWorkflow } from '../../src/engine/run.js';
import { createFerry } from '../../src/engine/runtime.js';
import { defineAction, defineProvider, type BatchDeclaration } from '../../src/providers/define.js';
import { registryWith, workflowFrom } from '../helpers/workflow.js';

/**
 * A provider that declares its hosts and one batch declaration, and records what the engine
 * hands it: the account's URLs, the signal, and each spec it is asked to make.
 */
function crm() {
  const specs: { urls: Record<string, string>; signal: AbortSignal | undefined; variant: string | undefined; timeoutMs: number }[] = [];
  const seen: { urls: Record<string, string>; signal: AbortSignal | undefined }[] = [];
  const upsert: BatchDeclaration<number, string, Record<string, unknown>, 'api', string | undefined> = {
    spec(context, variant) {
      specs.push({ urls: { ...context.urls }, signal: context.signal, variant, timeoutMs: context.timeoutMs });
      return {
        key: `${context.urls.api} ${variant ?? ''}`,
        maxItems: 100,
        maxBytes: 1_000_000,
        sizeOf: () => 1,
        send: async (items) => items.map((n) => ({ kind: 'ok' as const, value: `${context.urls.api}/upsert/${variant ?? '-'}/${n}` })),
      };
    },
  };
  const action = defineAction<{ n: number; mode?: string }, string, Record<string, unknown>, 'api'>({
    name: 'upsert',
    description: 'batched upsert',
    input: { type: 'object', required: ['n'], additionalProperties: false, properties: { n: { type: 'integer' }, mode: { type: 'string' } } },
    run(input, context) {
      seen.push({ urls: { ...context.urls }, signal: context.signal });
      return context.batch(upsert, input.n, input.mode);
    },
  });
  const provider = defineProvider({
    name: 'crm',
    description: 'a test CRM',
    hosts: { api: { us: 'https://us.crm.example', eu: 'https://eu.crm.example' } },
    defaults: { concurrency: 20 },
    actions: [action],
  });
  return { provider, specs, seen };
}

const loop = (provider: string) => `
name: seam
timeout: 7s
providers:
  crm:
${provider}
steps:
  - id: each
    loop: { over: "<<inputs.items>>", as: it, concurrency: 10 }
    steps:
      - id: up
        action: crm.upsert
        with: { n: "<<it.n>>", mode: "<<it.mode>>" }
  - id: once
    action: crm.upsert
    with: { n: 99 }
`;

describe('what the engine hands an action', () => {
  it('gives the region’s URL of each declared host, and no signal', async () => {
    const { provider, seen } = crm();
    const registry = registryWith(provider);
    const summary = await runWorkflow(workflowFrom(loop('    region: eu'), registry), { ferry: createFerry({ registry }), inputs: { items: [{ n: 1, mode: 'odd' }] } });
    expect(summary.status).toBe('succeeded');
    expect(seen.map((s) => s.urls)).toEqual([{ api: 'https://eu.crm.example' }, { api: 'https://eu.crm.example' }]);
    expect(seen.every((s) => s.signal === undefined)).toBe(true);
    expect(summary.steps.once?.output).toBe('https://eu.crm.example/upsert/-/99');
  });

  it('makes a batch declaration’s spec once per step and variant of a run, from the step’s base_url and timeout', async () => {
    const { provider, specs } = crm();
    const registry = registryWith(provider);
    const items = Array.from({ length: 40 }, (_, n) => ({ n, mode: n % 2 === 0 ? 'even' : 'odd' }));
    const summary = await runWorkflow(workflowFrom(loop('    base_url: http://127.0.0.1:9/crm/'), registry), { ferry: createFerry({ registry }), inputs: { items } });
    expect(summary.status).toBe('succeeded');
    expect(specs).toEqual([
      // The loop step `up`: one spec per mode its 40 calls named; then step `once`, its own.
      { urls: { api: 'http://127.0.0.1:9/crm' }, signal: undefined, variant: 'even', timeoutMs: 7000 },
      { urls: { api: 'http://127.0.0.1:9/crm' }, signal: undefined, variant: 'odd', timeoutMs: 7000 },
      { urls: { api: 'http://127.0.0.1:9/crm' }, signal: undefined, variant: undefined, timeoutMs: 7000 },
    ]);
  });
});
