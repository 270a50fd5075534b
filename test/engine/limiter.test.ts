import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Limiter } from '../../src/engine/limiter.js';

const dist = path.resolve(__dirname, '../../dist/index.js');

/** Runs a script as its own process (a real event loop that may run out of work); stdout and exit code. */
function script(body: string): Promise<{ code: number | null; stdout: string }> {
  const source = `import { Limiter } from ${JSON.stringify(dist)};\n${body}`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', source], (error, stdout) => resolve({ code: error ? (error.code as number) : 0, stdout }));
  });
}

describe('a provider pause', () => {
  it('keeps the process alive while a call waits in the paused queue, and then runs it', async () => {
    // Nothing else holds the event loop: the call must still run once the pause ends.
    const result = await script(`
const queue = new Limiter().queue('amplitude', { concurrency: 1 });
queue.pause(200, '429');
const t0 = Date.now();
await queue.add(async () => console.log('ran after', Date.now() - t0 >= 195 ? 'the pause' : 'too early'));
`);
    expect(result).toEqual({ code: 0, stdout: 'ran after the pause\n' });
  });

  it('does not keep a finished process alive', async () => {
    const started = Date.now();
    const result = await script(`new Limiter().queue('amplitude', { concurrency: 1 }).pause(30_000, '429'); console.log('done');`);
    expect(result).toEqual({ code: 0, stdout: 'done\n' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('runs a call added after the deadline even if the pause timer has not fired yet', async () => {
    const queue = new Limiter().queue('amplitude', { concurrency: 1 });
    queue.pause(50, '429');
    const deadline = Date.now() + 50;
    while (Date.now() < deadline) {
      // Busy: the pause timer cannot fire while this loop holds the thread.
    }
    let ran = false;
    const call = queue.add(async () => {
      ran = true;
    });
    await Promise.resolve();
    await Promise.resolve();
    expect(ran).toBe(true);
    await call;
  });
});
