import { describe, expect, it } from 'vitest';
import { builtinRegistry } from '../../src/providers/index.js';
import type { ServedWorkflow } from '../../src/server/handler.js';
import { Scheduler, type TickOutcome, type TickService } from '../../src/server/schedules.js';
import { loadWorkflowText } from '../../src/workflow/validate.js';

const registry = builtinRegistry();

function served(cron: string, timezone = 'UTC'): ServedWorkflow {
  const text = `name: ticking
triggers:
  - type: schedule
    cron: "${cron}"
    timezone: ${timezone}
steps:
  - id: hello
    action: core.log
    with: { message: hi }
`;
  return { workflow: loadWorkflowText('/tmp/ticking.yaml', text, registry), file: 'ticking.yaml', secrets: {} };
}

/** The seam the listener's RunManager and the pool's PoolRuns fill: here it only notes the ticks. */
function recorder(): TickService & { ticks: string[] } {
  const ticks: string[] = [];
  return {
    ticks,
    tick(_served, at): Promise<TickOutcome> {
      ticks.push(at);
      return Promise.resolve({ runId: `run-${ticks.length}` });
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Scheduler', () => {
  it('says the next tick in UTC and in the trigger\'s zone', () => {
    const scheduler = new Scheduler({ served: [served('17 3 * * *', 'Europe/Berlin')], ticks: recorder(), log: () => undefined, now: () => Date.parse('2030-07-01T12:00:00Z') });
    expect(scheduler.describe()).toEqual(['  schedule ticking  "17 3 * * *" Europe/Berlin  next 2030-07-02T01:17:00.000Z (2030-07-02 03:17:00 Europe/Berlin)  (ticking.yaml)']);
  });

  it('arms a tick months away in pieces no longer than 2^31-1 ms, so it does not fire early', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(w.name);
    process.on('warning', onWarning);
    const service = recorder();
    // 300 days before the tick: one timer for all of it would overflow and fire after 1 ms.
    const scheduler = new Scheduler({ served: [served('0 0 1 1 *')], ticks: service, log: () => undefined, now: () => Date.parse('2030-03-07T00:00:00Z') });
    scheduler.start();
    await sleep(100);
    await scheduler.stop();
    process.off('warning', onWarning);
    expect(service.ticks).toEqual([]);
    expect(warnings).not.toContain('TimeoutOverflowWarning');
  });

  it('starts one run for a late tick and does not replay the ticks missed meanwhile', async () => {
    let offset = 0;
    const service = recorder();
    const lines: string[] = [];
    const scheduler = new Scheduler({ served: [served('*/1 * * * * *')], ticks: service, log: (l) => lines.push(l), now: () => Date.now() + offset });
    scheduler.start();
    while (service.ticks.length < 1) await sleep(10);
    // The clock jumps 5 s (a suspended laptop): the next wake-up finds its tick late.
    offset = 5000;
    while (service.ticks.length < 3) await sleep(10);
    await scheduler.stop();
    const [first, late, next] = service.ticks.map((t) => Date.parse(t));
    expect(late).toBe((first as number) + 1000);
    expect(next).toBeGreaterThanOrEqual((first as number) + 6000);
    expect(lines[0]).toBe(`tick ${service.ticks[0]} of ticking: run run-1`);
  });

  it('starts nothing once stopped', async () => {
    const service = recorder();
    const scheduler = new Scheduler({ served: [served('*/1 * * * * *')], ticks: service, log: () => undefined });
    scheduler.start();
    await scheduler.stop();
    await sleep(1100);
    expect(service.ticks).toEqual([]);
  });

  it('logs a skipped tick with the run that still runs, and a failed one without stopping the schedule', async () => {
    const lines: string[] = [];
    let calls = 0;
    const service: TickService = {
      tick: () => (++calls === 1 ? Promise.resolve({ skipped: 'run-0' }) : Promise.reject(new Error('disk full'))),
    };
    const scheduler = new Scheduler({ served: [served('*/1 * * * * *')], ticks: service, log: (l) => lines.push(l) });
    scheduler.start();
    while (lines.length < 2) await sleep(10);
    await scheduler.stop();
    expect(lines[0]).toMatch(/^tick \S+ of ticking skipped: run run-0 still running$/);
    expect(lines[1]).toMatch(/^tick \S+ of ticking failed: disk full; the next tick tries again$/);
  });
});
