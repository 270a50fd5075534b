import { afterEach, describe, expect, it } from 'vitest';
import { Agent } from 'undici';
import { runWorkflow } from '../../src/engine/run.js';
import { createFerry, type Ferry } from '../../src/engine/runtime.js';
import { scopeKey, type PauseEvent } from '../../src/engine/queue.js';
import { accountOf } from '../../src/engine/accounts.js';
import { amplitude } from '../../src/providers/amplitude/index.js';
import type { RunSummary } from '../../src/types.js';
import { defineAction, defineProvider } from '../../src/providers/define.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { workflowFrom } from '../helpers/workflow.js';
import { json, startServer } from '../helpers/server.js';
import { FerryError } from '../../src/errors.js';
import { noJournal, type RunJournal } from '../../src/store/journal.js';

let sandbox: Sandbox | undefined;
const runtimes: Ferry[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((f) => f.close()));
  await sandbox?.close();
  sandbox = undefined;
});

function runtime(options: Parameters<typeof createFerry>[0] = {}): Ferry {
  const ferry = createFerry(options);
  runtimes.push(ferry);
  return ferry;
}

/** A loop of `amplitude.send_event`, one request per item, for the project with `key`. */
function events(url: string, key: string, name: string) {
  return `
name: ${name.toLowerCase()}
retry: { attempts: 3, backoff: { initial: 5ms, factor: 2, max: 20ms } }
providers:
  amplitude: { api_key: ${key}, base_url: "${url}", batch: false }
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 4 }
    steps:
      - id: send
        action: amplitude.send_event
        with: { user_id: <<id>>, event_type: ${name} }
`;
}

const ids = (n: number, from: number): string[] => Array.from({ length: n }, (_, i) => `user_${from + i}`);

/** The scope of `ferry` that a 429 paused, once one is. */
async function pausedScope(ferry: Ferry): Promise<{ scope: string; pausedForMs: number }> {
  for (;;) {
    const paused = ferry.limits.scopes.find((s) => s.pausedForMs > 0);
    if (paused) return paused;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Starts a run that gets a 429 with Retry-After: 5 on its first request; resolves once its account is paused. */
async function throttledRun(ferry: Ferry, url: string, key: string, stop: AbortSignal): Promise<{ done: Promise<RunSummary>; settled: () => boolean; scope: string }> {
  (sandbox as Sandbox).amplitude.inject({ kind: 'status', status: 429, retryAfter: 5, path: '/2/httpapi', times: 1 });
  let settled = false;
  const done = runWorkflow(workflowFrom(events(url, key, 'Throttled'), ferry.registry), { ferry, inputs: { ids: ids(3, 10_000) }, signal: stop }).finally(() => (settled = true));
  const { scope } = await pausedScope(ferry);
  return { done, settled: () => settled, scope };
}

describe('two runtimes in one process', () => {
  it('share no pause: a Retry-After in runtime A does not hold runtime B\'s calls to the same account', async () => {
    sandbox = await startSandbox();
    const url = sandbox.amplitude.url;
    const a = runtime();
    const b = runtime();
    const stopA = new AbortController();
    const throttled = await throttledRun(a, url, 'sandbox-amplitude-key', stopA.signal);

    const summary = await runWorkflow(workflowFrom(events(url, 'sandbox-amplitude-key', 'Free'), b.registry), { ferry: b, inputs: { ids: ids(20, 20_000) } });
    expect(summary.status).toBe('succeeded');
    // B finished while A still waits out its pause, on the very same account.
    expect(throttled.settled()).toBe(false);
    expect(a.limits.scopes.find((s) => s.scope === throttled.scope)?.pausedForMs).toBeGreaterThan(0);
    expect(b.limits.scopes.map((s) => s.pausedForMs)).toEqual(b.limits.scopes.map(() => 0));
    expect([...sandbox.amplitude.events.values()].filter((e) => e.event_type === 'Free')).toHaveLength(20);

    stopA.abort('SIGTERM');
    expect((await throttled.done).status).toBe('failed');
  });

  it('have separate registries: a provider registered in one is unknown to the other', () => {
    const a = runtime();
    const b = runtime();
    const ping = defineAction({ name: 'ping', description: 'answers pong', input: { type: 'object' }, run: async () => 'pong' });
    a.registry.register(defineProvider({ name: 'extra', description: 'only in A', defaults: { concurrency: 1 }, actions: [ping] }));
    expect(a.registry.action('extra.ping')).toBeDefined();
    expect(b.registry.action('extra.ping')).toBeUndefined();
    expect(builtinRegistry()).not.toBe(builtinRegistry());
  });

  it('have separate dispatchers: closing one runtime leaves the other sending, and a dispatcher passed in stays open', async () => {
    sandbox = await startSandbox();
    const given = new Agent();
    const a = runtime();
    const b = runtime();
    const c = runtime({ dispatcher: given });
    expect(a.dispatcher).not.toBe(b.dispatcher);
    expect(c.dispatcher).toBe(given);
    await a.close();
    await c.close();
    expect(() => a.dispatcher).toThrow(/closed/);
    const yaml = events(sandbox.amplitude.url, 'sandbox-amplitude-key', 'After');
    expect((await runWorkflow(workflowFrom(yaml, b.registry), { ferry: b, inputs: { ids: ids(2, 30_000) } })).status).toBe('succeeded');
    // `given` is still open: a runtime only closes what it made.
    const again = runtime({ dispatcher: given });
    expect((await runWorkflow(workflowFrom(yaml, again.registry), { ferry: again, inputs: { ids: ids(2, 40_000) } })).status).toBe('succeeded');
    await given.close();
  });
});

describe('limit scopes per provider account', () => {
  it('pause only the project that was throttled: project B keeps sending while project A waits out Retry-After: 5', async () => {
    sandbox = await startSandbox({ amplitudeApiKeys: ['project-a-key', 'project-b-key'] });
    const url = sandbox.amplitude.url;
    const ferry = runtime();
    const pauses: PauseEvent[] = [];
    ferry.limits.onPause((event) => pauses.push(event));
    const stopA = new AbortController();
    const throttled = await throttledRun(ferry, url, 'project-a-key', stopA.signal);

    const summary = await runWorkflow(workflowFrom(events(url, 'project-b-key', 'ProjectB'), ferry.registry), { ferry, inputs: { ids: ids(20, 50_000) } });
    expect(summary.status).toBe('succeeded');
    expect(throttled.settled()).toBe(false);
    const scopes = ferry.limits.scopes.filter((s) => s.provider === 'amplitude');
    expect(scopes).toHaveLength(2);
    expect(scopes.map((s) => s.pausedForMs > 0).sort()).toEqual([false, true]);
    // A scope's key names the account by URL and a hash, never by its key.
    for (const s of scopes) expect(s.scope).not.toMatch(/project-[ab]-key/);
    expect(scopes.every((s) => s.scope.includes(url))).toBe(true);
    // The pause names the provider and the account's URL, never its key.
    expect(pauses).toEqual([expect.objectContaining({ provider: 'amplitude', account: url, scope: throttled.scope, reason: '429' })]);
    expect(JSON.stringify(pauses)).not.toContain('project-a-key');
    expect([...sandbox.amplitude.events.values()].filter((e) => e.event_type === 'ProjectB')).toHaveLength(20);

    stopA.abort('SIGTERM');
    await throttled.done;
  });

  it('gives two workflows naming the same account the stricter limits, whichever came first', () => {
    const ferry = runtime();
    const account = { provider: 'amplitude', baseUrl: 'http://127.0.0.1:1', credentialHash: 'abc' };
    const scope = ferry.limits.scope(account, { concurrency: 20, rate: { limit: 100, intervalMs: 1000 } });
    expect(ferry.limits.scope(account, { concurrency: 2 })).toBe(scope);
    expect(scope.concurrency).toBe(2);
    expect(scope.rate).toEqual({ limit: 100, intervalMs: 1000 });
    ferry.limits.scope(account, { concurrency: 5, rate: { limit: 20, intervalMs: 1000 } });
    expect([scope.concurrency, scope.rate]).toEqual([2, { limit: 20, intervalMs: 1000 }]);
    // Looser limits later never loosen the scope again.
    ferry.limits.scope(account, { concurrency: 50, rate: { limit: 500, intervalMs: 1000 } });
    expect([scope.concurrency, scope.rate]).toEqual([2, { limit: 20, intervalMs: 1000 }]);
    // Another key, another scope with its own limits.
    expect(ferry.limits.scope({ ...account, credentialHash: 'def' }, { concurrency: 7 }).concurrency).toBe(7);
  });

  it('runs every call that waited in a scope when a stricter rate replaced its queue', async () => {
    const ferry = runtime();
    const account = { provider: 'http' };
    const scope = ferry.limits.scope(account, { concurrency: 1 });
    const order: number[] = [];
    let release!: () => void;
    const first = scope.add(() => new Promise<void>((r) => (release = r)));
    const waiting = [1, 2, 3].map((n) => scope.add(async () => void order.push(n)));
    ferry.limits.scope(account, { concurrency: 1, rate: { limit: 2, intervalMs: 50 } });
    const later = scope.add(async () => void order.push(4));
    release();
    await Promise.all([first, ...waiting, later]);
    expect(order).toEqual([1, 2, 3, 4]);
  });
});

describe('an account', () => {
  it('is the same whether the block writes `region: us`, leaves the region out, or names that host as `base_url`', () => {
    const key = (config: Record<string, unknown>) => scopeKey(accountOf(amplitude, 'amplitude', config));
    const plain = key({ api_key: 'project-key-1' });
    expect(key({ api_key: 'project-key-1', region: 'us' })).toBe(plain);
    expect(key({ api_key: 'project-key-1', base_url: 'https://api2.amplitude.com/' })).toBe(plain);
    expect(key({ api_key: 'project-key-1', region: 'eu' })).not.toBe(plain);
    expect(key({ api_key: 'project-key-2' })).not.toBe(plain);
  });
});

describe('journals of the runs of one runtime', () => {
  it("keep only their own run's calls back when they cannot be written: another run goes on sending", async () => {
    const upstream = await startServer((_req, res) => json(res, 200, { ok: true }));
    const ferry = createFerry({ registry: builtinRegistry() });
    try {
      const flow = (name: string) =>
        workflowFrom(`name: ${name}\nretry: { attempts: 1 }\nsteps:\n  - id: call\n    action: http.request\n    with: { method: POST, url: "${upstream.url}/${name}" }\n`, ferry.registry);
      const broken: RunJournal = {
        append: () => undefined,
        close: () => undefined,
        flush: () => {
          throw new FerryError('FERRY_DISK_FULL', 'journal of run A could not be written');
        },
      };
      const [a, b] = await Promise.all([runWorkflow(flow('a'), { ferry, journal: broken }), runWorkflow(flow('b'), { ferry, journal: noJournal })]);
      expect(a.status).toBe('failed');
      expect(a.error?.message).toContain('journal of run A could not be written');
      expect(b.status).toBe('succeeded');
      expect(upstream.seen.map((r) => r.url)).toEqual(['/b']);
    } finally {
      await ferry.close();
      await upstream.close();
    }
  });
});
