import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Limiter } from '../../src/engine/limiter.js';

const dist = path.resolve(__dirname, '../../dist/index.js');

/** Runs a script as its own process (a real event loop that may run out of work); stdout and exit code. */
function script(body: string): Promise<{ code: number | null; stdout: string }> {
  return scriptWithStderr(body).then(({ code, stdout }) => ({ code, stdout }));
}

function scriptWithStderr(body: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const source = `import { Limiter } from ${JSON.stringify(dist)};\n${body}`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', source], (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }));
  });
}

describe('a provider pause', () => {
  it('keeps the process alive while a call waits in the paused queue, and then runs it', async () => {
    // Nothing else holds the event loop: the call must still run once the pause ends.
    const result = await script(`
const queue = new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 });
queue.pause(200, '429');
const t0 = Date.now();
await queue.add(async () => console.log('ran after', Date.now() - t0 >= 195 ? 'the pause' : 'too early'));
`);
    expect(result).toEqual({ code: 0, stdout: 'ran after the pause\n' });
  });

  it('does not keep a finished process alive', async () => {
    const started = Date.now();
    const result = await script(`new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 }).pause(30_000, '429'); console.log('done');`);
    expect(result).toEqual({ code: 0, stdout: 'done\n' });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('runs a call added after the deadline even if the pause timer has not fired yet', async () => {
    const queue = new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 });
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

describe('a provider pause and a stopping run', () => {
  it('lets a waiting call leave the paused queue unsent when its run stops, and keeps the pause for other runs', async () => {
    const queue = new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 });
    queue.pause(60_000, '429');
    const mine = new AbortController();
    const other = new AbortController();
    const sent: string[] = [];
    const waiting = queue.add(async () => void sent.push('mine'), mine.signal);
    const others = queue.add(async () => void sent.push('other'), other.signal);
    mine.abort('SIGTERM');
    await expect(waiting).rejects.toMatchObject({ code: 'FERRY_ABORTED', provider: 'amplitude' });
    expect(queue.pausedForMs).toBeGreaterThan(50_000);
    other.abort('SIGTERM');
    await expect(others).rejects.toMatchObject({ code: 'FERRY_ABORTED' });
    expect(sent).toEqual([]);
  });

  it('sends the calls of other runs once the pause ends, and never those of the stopped run', async () => {
    const queue = new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 });
    queue.pause(100, '429');
    const mine = new AbortController();
    const sent: string[] = [];
    const waiting = queue.add(async () => void sent.push('mine'), mine.signal);
    const others = [queue.add(async () => void sent.push('other'), new AbortController().signal), queue.add(async () => void sent.push('plain'))];
    mine.abort('SIGTERM');
    await expect(waiting).rejects.toMatchObject({ code: 'FERRY_ABORTED' });
    await Promise.all(others);
    await queue.add(async () => void sent.push('later'), mine.signal).catch(() => sent.push('later refused'));
    expect(sent).toEqual(['other', 'plain', 'later refused']);
  });

  it('does not start a call whose run stopped before it was added', async () => {
    const queue = new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 });
    const stop = new AbortController();
    stop.abort('SIGINT');
    let ran = false;
    await expect(queue.add(async () => void (ran = true), stop.signal)).rejects.toMatchObject({ code: 'FERRY_ABORTED' });
    expect(ran).toBe(false);
  });

  it('ends a wait for the pause when the run stops, without ending the pause', async () => {
    const queue = new Limiter().scope({ provider: 'segment' }, { concurrency: 1 });
    queue.pause(60_000, '429');
    const stop = new AbortController();
    const waited = queue.whenRunning(stop.signal);
    stop.abort('SIGTERM');
    await waited;
    expect(queue.pausedForMs).toBeGreaterThan(50_000);
  });

  it('lets the process exit once the stopped run has nothing waiting in the paused queue', async () => {
    // A pause of ten minutes: the process ends only if the stop released the queue's hold.
    const result = await script(`
const queue = new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 });
queue.pause(600_000, '429');
const stop = new AbortController();
const call = queue.add(async () => console.log('sent'), stop.signal).catch((e) => console.log(e.code));
setTimeout(() => stop.abort('SIGTERM'), 20);
await call;
`);
    expect(result).toEqual({ code: 0, stdout: 'FERRY_ABORTED\n' });
  }, 20_000);

  it('arms no timer past Node\'s limit: a pause of 31 years neither spins nor warns', async () => {
    const result = await scriptWithStderr(`
const queue = new Limiter().scope({ provider: 'amplitude' }, { concurrency: 1 });
queue.pause(1_000_000_000_000, '429');
const stop = new AbortController();
let sent = 0;
const call = queue.add(async () => sent++, stop.signal).catch((e) => e.code);
const waited = queue.whenRunning(stop.signal);
setTimeout(() => stop.abort('SIGTERM'), 300);
console.log(await call, sent, queue.pausedForMs > 900_000_000_000);
await waited;
`);
    expect(result.stderr).not.toContain('TimeoutOverflowWarning');
    expect(result).toMatchObject({ code: 0, stdout: 'FERRY_ABORTED 0 true\n' });
  }, 20_000);
});
