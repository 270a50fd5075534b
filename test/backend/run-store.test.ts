import { execFileSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { hostname } from 'node:os';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openBackend, type Backend } from '../../src/backend/connection.js';
import { APPEND } from '../../src/backend/run-journal.js';
import { RedisRunStore, type LeaseHolder, type RunLease } from '../../src/backend/run-store.js';
import { newRunId } from '../../src/engine/run-id.js';
import type { FerryError } from '../../src/errors.js';
import { Redactor } from '../../src/redact.js';
import { FileJournal, readJournal, type JournalEntry, type StepShape } from '../../src/store/journal.js';
import { JOURNAL_FILE, runDir } from '../../src/store/paths.js';
import { readRunRecord } from '../../src/store/record.js';
import { loadRun, recordOf, stateOf, summarize } from '../../src/store/runs.js';
import { redisContents, startRedis, type TestRedis } from '../helpers/redis.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let redis: TestRedis;
let backend: Backend;
let store: RedisRunStore;
beforeAll(async () => {
  redis = await startRedis();
  backend = await openBackend(redis.url);
  store = new RedisRunStore(backend);
});
afterAll(async () => {
  await backend.close();
  await redis.close();
});
beforeEach(async () => {
  await backend.redis.flushdb();
});

type RunEntry = Extract<JournalEntry, { t: 'run' }>;

const SHAPE: StepShape[] = [{ id: 'fetch' }, { id: 'each', steps: [{ id: 'send' }] }, { id: 'notify' }];

let clock = Date.parse('2025-03-01T10:00:00.000Z');
function runEntry(overrides: Partial<RunEntry> = {}): RunEntry {
  clock += 1000;
  const startedAt = new Date(clock).toISOString();
  return { t: 'run', v: 1, runId: newRunId(clock), workflow: 'sync', file: '/w/sync.yaml', startedAt, pid: 4242, mode: 'live', inputs: { n: 2 }, trigger: { type: 'manual' }, shape: SHAPE, ...overrides };
}

const workflowOf = (start: RunEntry) => ({ file: start.file, source: `name: ${start.workflow}\nsteps: []\n` });

function entriesOf(start: RunEntry, secret = 'nothing'): JournalEntry[] {
  const at = (ms: number) => new Date(Date.parse(start.startedAt) + ms).toISOString();
  return [
    { t: 'step', id: 'fetch', item: [], status: 'succeeded', output: { rows: 2, token: secret, basic: Buffer.from(secret).toString('base64') }, calls: { calls: 1, attempts: 2, failures: { '429': 1 }, waitedMs: 5 }, ms: 12 },
    { t: 'step', id: 'send', item: [0], status: 'succeeded', output: 'ok', ms: 3 },
    { t: 'step', id: 'send', item: [1], status: 'failed', error: { step: 'send', item: 1, message: `rejected ${secret}` }, ms: 4 },
    { t: 'step', id: 'each', item: [], status: 'failed', output: { count: 2 }, ms: 9 },
    { t: 'end', status: 'failed', at: at(40), ms: 40, error: { step: 'send', item: 1, message: `send failed: ${secret}` } },
  ];
}

async function createRun(start: RunEntry, redactor?: Redactor): Promise<void> {
  expect(await store.create(start.runId, workflowOf(start), start, redactor)).toBe(true);
}

describe('runs in Redis', () => {
  it('creates a run, appends and flushes its journal, and reads it back as the state dir would', async () => {
    const start = runEntry();
    await createRun(start);
    expect(await store.create(start.runId, workflowOf(start), start)).toBe(false);
    const journal = store.journal(start.runId);
    for (const e of entriesOf(start)) journal.append(e);
    await journal.flush();
    journal.close();
    await journal.closed();

    const run = await store.load(start.runId);
    expect(run).toBeDefined();
    const loaded = run!;
    expect(stateOf(loaded)).toBe('failed');
    expect(loaded.journalBytes).toBe(await backend.redis.llen(`ferry:run:${start.runId}:journal`));

    // The same entries in a FileJournal give the same summary and record.
    const stateDir = await tempDir('ferry-runstore-');
    try {
      const file = FileJournal.create(stateDir, start.runId, 'x', undefined);
      for (const e of [start, ...entriesOf(start)]) file.append(e);
      file.close();
      const fromFile = (await loadRun(stateDir, start.runId))!;
      expect(summarize(loaded)).toEqual(summarize(fromFile));
      // Entry for entry what the file journal reads back (fields at their defaults filled in).
      const streamed: JournalEntry[] = [];
      for await (const e of store.entries(start.runId)) streamed.push(e);
      expect(streamed).toEqual((await readJournal(path.join(runDir(stateDir, start.runId), JOURNAL_FILE))).entries);
      const { journalBytes: _a, ...fileRecord } = recordOf(fromFile);
      const { journalBytes: _b, ...redisRecord } = recordOf(loaded);
      expect(redisRecord).toEqual(fileRecord);
      // The record kept in Redis says what the journal says, with the chunk count as its journalBytes.
      const kept = JSON.parse((await backend.redis.get(`ferry:run:${start.runId}:record`))!) as Record<string, unknown>;
      const { journalBytes: _c, ...onDisk } = readRunRecord(stateDir, start.runId)!;
      expect({ ...kept, journalBytes: undefined }).toEqual({ ...onDisk, journalBytes: undefined });
      expect(kept.journalBytes).toBe(loaded.journalBytes);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }

    expect(await store.exists(start.runId)).toBe(true);
    expect(await store.exists(newRunId())).toBe(false);
    expect(await store.load(newRunId())).toBeUndefined();
    expect(await store.workflow(start.runId)).toEqual(workflowOf(start));
    await store.setWorkflow(start.runId, { file: '/w/sync.yaml', source: 'name: sync\n# changed\n' });
    expect(await store.workflow(start.runId)).toEqual({ file: '/w/sync.yaml', source: 'name: sync\n# changed\n' });
  });

  it('carries the record on at a resume entry and ends it again', async () => {
    const start = runEntry();
    await createRun(start);
    const first = store.journal(start.runId);
    for (const e of entriesOf(start)) first.append(e);
    first.close();
    await first.closed();
    const again = store.journal(start.runId, { resume: true });
    again.append({ t: 'resume', at: new Date(clock + 60_000).toISOString(), pid: 777 });
    await again.flush();
    const running = JSON.parse((await backend.redis.get(`ferry:run:${start.runId}:record`))!) as Record<string, unknown>;
    expect(running).toMatchObject({ status: 'running', pid: 777, endedAt: null, steps: { fetch: 'succeeded', each: 'failed' } });
    again.append({ t: 'step', id: 'each', item: [], status: 'succeeded', output: { count: 2 }, ms: 5 });
    again.append({ t: 'end', status: 'succeeded', at: new Date(clock + 61_000).toISOString(), ms: 1000, error: null });
    again.close();
    await again.closed();
    const [listing] = await store.list();
    expect(listing).toMatchObject({ runId: start.runId, status: 'succeeded', failedStep: null, durationMs: 61_000 });
    expect(stateOf((await store.load(start.runId))!)).toBe('succeeded');
  });

  it('refuses to resume a run that is not in Redis', async () => {
    const failures: FerryError[] = [];
    const journal = store.journal(newRunId(), { resume: true, onFailure: (e) => failures.push(e) });
    journal.append({ t: 'resume', at: new Date().toISOString(), pid: 1 });
    await expect(journal.flush()).rejects.toMatchObject({ code: 'FERRY_JOURNAL_WRITE', message: expect.stringContaining('is not in the backend') as unknown });
    expect(failures).toHaveLength(1);
  });

  it('writes concurrent flushes as few chunks, every entry once and in order (group commit)', async () => {
    const start = runEntry();
    await createRun(start);
    const journal = store.journal(start.runId);
    const flushes: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) {
      journal.append({ t: 'step', id: 'send', item: [i], status: 'succeeded', output: i, ms: 1 });
      if (i % 10 === 9) flushes.push(journal.flush());
    }
    await Promise.all(flushes);
    const chunks = await backend.redis.llen(`ferry:run:${start.runId}:journal`);
    // The run entry, the write the first flush started, and one write shared by the 99 flushes after it.
    expect(chunks).toBeLessThanOrEqual(4);
    const items: number[] = [];
    for await (const e of store.entries(start.runId)) if (e.t === 'step') items.push(e.item[0]!);
    expect(items).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    journal.close();
    await journal.closed();
  });

  it('reads a journal of many chunks page by page, counting lines that are not entries', async () => {
    const start = runEntry();
    await createRun(start);
    const journal = store.journal(start.runId);
    for (let i = 0; i < 150; i++) {
      journal.append({ t: 'step', id: 'send', item: [i], status: 'succeeded', ms: 1 });
      await journal.flush();
    }
    await backend.redis.rpush(`ferry:run:${start.runId}:journal`, '{"t":"step","id":"se\nnot json\n');
    const run = (await store.load(start.runId))!;
    expect(run.journalBytes).toBe(152);
    expect(run.skipped).toBe(2);
    expect(run.fold.inner.get('each')?.get('send')).toMatchObject({ succeeded: 150, failed: 0 });
  });

  it('tells a journal that is not a run from a run that is not there', async () => {
    const id = newRunId();
    await backend.redis.rpush(`ferry:run:${id}:journal`, '{"t":"step","id":"a","item":[],"status":"succeeded","ms":1}\n');
    await backend.redis.zadd('ferry:runs', Date.now(), id);
    expect(await store.read(id)).toEqual({ runId: id, corrupt: expect.stringContaining('has no readable `run` entry') as unknown });
    expect(await store.list()).toEqual([expect.objectContaining({ runId: id, status: 'corrupt' })]);
    expect(await store.read(newRunId())).toBeUndefined();
    expect(await store.read('../etc')).toBeUndefined();
  });

  it('keeps a secret added to the redactor out of every key and value', async () => {
    const secret = 'sk_live_9f8e7d6c5b4a';
    const redactor = new Redactor();
    redactor.add(secret);
    const start = runEntry({ inputs: { token: secret }, trigger: { type: 'webhook', body: { key: secret }, headers: { authorization: `Bearer ${secret}` } } });
    expect(await store.create(start.runId, workflowOf(start), start, redactor, { path: '/hook', delivery: 'd-1' })).toBe(true);
    const journal = store.journal(start.runId, { redactor });
    for (const e of entriesOf(start, secret)) journal.append(e);
    journal.close();
    await journal.closed();
    await store.dedupe(`/hook:${secret}`, start.runId, 60);
    const lease = (await store.lease(start.runId, { pid: 1, host: 'h', id: 'x' }, 10_000)) as RunLease;

    const found = (await redisContents(backend.redis)).flatMap(({ key, values }) => [key, ...values]);
    await lease.release();
    expect(found).toEqual(expect.arrayContaining([`ferry:run:${start.runId}:journal`, `ferry:run:${start.runId}:record`, 'ferry:runs']));
    const all = found.join('\n');
    expect(all).toContain('[redacted]');
    expect(all).not.toContain(secret);
    expect(all).not.toContain(Buffer.from(secret).toString('base64'));
    expect(all.toLowerCase()).not.toContain(secret.toLowerCase());
  });

  it('lists runs newest first, with their state, filtered by status and workflow, up to a limit', async () => {
    const done = runEntry({ workflow: 'sync' });
    const failed = runEntry({ workflow: 'export' });
    const running = runEntry({ workflow: 'sync', pid: 999_999 });
    const died = runEntry({ workflow: 'sync' });
    const noRecord = runEntry({ workflow: 'export' });
    for (const start of [done, failed, running, died, noRecord]) await createRun(start);
    const end = (start: RunEntry, status: 'succeeded' | 'failed') => {
      const j = store.journal(start.runId);
      j.append({ t: 'end', status, at: new Date(Date.parse(start.startedAt) + 500).toISOString(), ms: 500, error: status === 'failed' ? { step: 'fetch', item: null, message: 'no' } : null });
      j.close();
      return j.closed();
    };
    await end(done, 'succeeded');
    await end(failed, 'failed');
    await end(noRecord, 'succeeded');
    await backend.redis.del(`ferry:run:${noRecord.runId}:record`);
    const lease = (await store.lease(running.runId, { pid: 999_999, host: 'worker-2', id: 'w2' }, 10_000)) as RunLease;
    try {
      const all = await store.list();
      expect(all.map((l) => [l.runId, l.status])).toEqual([
        [noRecord.runId, 'succeeded'],
        [died.runId, 'interrupted'],
        [running.runId, 'running'],
        [failed.runId, 'failed'],
        [done.runId, 'succeeded'],
      ]);
      expect(all[3]).toMatchObject({ workflow: 'export', failedStep: 'fetch', durationMs: 500, file: '/w/sync.yaml', startedAt: failed.startedAt });
      expect((await store.list({ status: 'running' })).map((l) => l.runId)).toEqual([running.runId]);
      expect((await store.list({ workflow: 'export' })).map((l) => l.runId)).toEqual([noRecord.runId, failed.runId]);
      expect((await store.list({ workflow: 'sync', limit: 2 })).map((l) => l.runId)).toEqual([died.runId, running.runId]);
      expect(await store.list({ limit: 0 })).toEqual([]);
      // The same answers from a full read: a live lease of another process is running, none is interrupted.
      expect(stateOf((await store.load(running.runId))!)).toBe('running');
      expect(stateOf((await store.load(died.runId))!)).toBe('interrupted');
      expect((await store.load(running.runId))!.lock).toMatchObject({ pid: 999_999, host: 'worker-2', lease: true });
    } finally {
      await lease.release();
    }
    expect(stateOf((await store.load(running.runId))!)).toBe('interrupted');
  });

  it('lists more runs than one page holds', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 230; i++) {
      const start = runEntry();
      await createRun(start);
      ids.push(start.runId);
    }
    const listed = await store.list();
    expect(listed.map((l) => l.runId)).toEqual(ids.reverse());
    expect((await store.list({ limit: 150 })).length).toBe(150);
  });

  it('claims a delivery key once; later claims get the first run', async () => {
    const [a, b] = [newRunId(), newRunId()];
    expect(await store.dedupe('gh:delivery-1', a, 60)).toBe(a);
    expect(await store.dedupe('gh:delivery-1', b, 60)).toBe(a);
    expect(await store.dedupe('gh:delivery-2', b, 60)).toBe(b);
    const keys = await backend.redis.keys('ferry:delivery:*');
    expect(keys).toHaveLength(2);
    expect(await backend.redis.ttl(keys[0]!)).toBeGreaterThan(0);
  });
});

describe('the owner lease', () => {
  const owner = { pid: 101, host: hostname(), id: 'one' };
  let leases: RunLease[] = [];
  afterEach(async () => {
    for (const l of leases) await l.release();
    leases = [];
  });
  const take = async (runId: string, who = owner, ttl = 10_000): Promise<RunLease | LeaseHolder> => {
    const got = await store.lease(runId, who, ttl);
    if ('release' in got) leases.push(got);
    return got;
  };

  it('gives the second taker the holder', async () => {
    const id = newRunId();
    const first = await take(id);
    expect('release' in first).toBe(true);
    const second = await take(id, { pid: 202, host: 'other', id: 'two' });
    expect(second).toMatchObject({ pid: 101, host: hostname(), id: 'one' });
    expect('release' in second).toBe(false);
    expect(await store.leaseHolder(id)).toMatchObject({ id: 'one' });
  });

  it('lets another process take a lease whose holder stopped renewing it', async () => {
    const id = newRunId();
    // What a killed process leaves: its lease, no longer renewed.
    await backend.redis.set(`ferry:run:${id}:owner`, JSON.stringify({ pid: 55, host: 'gone', id: 'dead', at: new Date().toISOString() }), 'PX', 300);
    expect(await take(id)).toMatchObject({ id: 'dead' });
    await waitFor(async () => (await backend.redis.exists(`ferry:run:${id}:owner`)) === 0);
    const mine = await take(id);
    expect('release' in mine && mine.holder).toMatchObject({ id: 'one' });
  });

  it('renews itself while held, and gives up only its own key', async () => {
    const id = newRunId();
    const lease = (await take(id, owner, 300)) as RunLease;
    await new Promise((r) => setTimeout(r, 1000));
    expect(lease.lost.aborted).toBe(false);
    expect(await take(id, { pid: 202, host: 'other', id: 'two' })).toMatchObject({ id: 'one' });
    await lease.release();
    expect(await backend.redis.exists(`ferry:run:${id}:owner`)).toBe(0);

    const again = (await take(id, owner, 10_000)) as RunLease;
    await backend.redis.set(`ferry:run:${id}:owner`, 'someone else');
    await again.release();
    expect(await backend.redis.get(`ferry:run:${id}:owner`)).toBe('someone else');
  });

  it('aborts `lost` when its key is gone', async () => {
    const id = newRunId();
    const lease = (await take(id, owner, 300)) as RunLease;
    await backend.redis.del(`ferry:run:${id}:owner`);
    await new Promise((resolve) => lease.lost.addEventListener('abort', resolve));
    expect(lease.lost.reason).toMatchObject({ code: 'FERRY_RUN_BUSY' });
  });
});

describe('Redis trouble', () => {
  it('waits through a pause of Redis, then writes everything', async () => {
    const start = runEntry();
    await createRun(start);
    const journal = store.journal(start.runId);
    journal.append({ t: 'step', id: 'send', item: [0], status: 'succeeded', ms: 1 });
    await journal.flush();
    execFileSync('redis-cli', ['-p', String(redis.port), 'client', 'pause', '1500', 'all']);
    let settled = false;
    const flushes: Promise<void>[] = [];
    for (let i = 1; i <= 200; i++) {
      journal.append({ t: 'step', id: 'send', item: [i], status: 'succeeded', ms: 1 });
      if (i % 20 === 0) flushes.push(journal.flush());
    }
    const all = Promise.all(flushes).then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false);
    await all;
    const items: number[] = [];
    for await (const e of store.entries(start.runId)) if (e.t === 'step') items.push(e.item[0]!);
    expect(items).toEqual(Array.from({ length: 201 }, (_, i) => i));
    expect(journal.failure).toBeUndefined();
  });

  it('writes every entry once when its connection is cut while a write waits', async () => {
    const start = runEntry();
    await createRun(start);
    const journal = store.journal(start.runId);
    journal.append({ t: 'step', id: 'send', item: [0], status: 'succeeded', ms: 1 });
    await journal.flush();
    const cli = (...args: string[]) => execFileSync('redis-cli', ['-p', String(redis.port), ...args], { encoding: 'utf8' });
    cli('client', 'pause', '5000', 'write');
    journal.append({ t: 'step', id: 'send', item: [1], status: 'succeeded', ms: 1 });
    const written = journal.flush();
    await new Promise((r) => setTimeout(r, 200));
    // The write sits in Redis, paused; its connection goes, then the pause ends: ioredis reconnects and sends it again.
    cli('client', 'kill', 'type', 'normal', 'skipme', 'yes');
    cli('client', 'unpause');
    await written;
    const items: number[] = [];
    for await (const e of store.entries(start.runId)) if (e.t === 'step') items.push(e.item[0]!);
    expect(items).toEqual([0, 1]);
    expect(journal.failure).toBeUndefined();
  });

  it('does not append a chunk twice when ioredis sends a write again after a reconnection', async () => {
    const id = newRunId();
    const keys = [`ferry:run:${id}:journal`, `ferry:run:${id}:record`, 'ferry:runs'];
    const append = (chunk: string, expected: number) => backend.redis.eval(APPEND, 3, ...keys, chunk, '', String(expected), '', id);
    expect(await append('a\n', 0)).toBe(1);
    // The same command again (its reply was lost with the connection): already there.
    expect(await append('a\n', 0)).toBe(1);
    expect(await append('b\n', 1)).toBe(2);
    expect(await backend.redis.lrange(keys[0]!, 0, -1)).toEqual(['a\n', 'b\n']);
    // Another writer's chunk, or a journal shorter than this writer left it, is refused.
    expect(await append('c\n', 1)).toBe(-1);
    expect(await append('c\n', 5)).toBe(-2);
  });

  it('stops the journal once, with a clear error, when Redis refuses writes', async () => {
    const start = runEntry();
    await createRun(start);
    const failures: FerryError[] = [];
    const journal = store.journal(start.runId, { onFailure: (e) => failures.push(e) });
    journal.append({ t: 'step', id: 'send', item: [0], status: 'succeeded', ms: 1 });
    await journal.flush();
    await backend.redis.config('SET', 'maxmemory', '1');
    try {
      journal.append({ t: 'step', id: 'send', item: [1], status: 'succeeded', ms: 1 });
      await expect(journal.flush()).rejects.toMatchObject({ code: 'FERRY_JOURNAL_WRITE', message: expect.stringContaining('OOM') as unknown });
      journal.append({ t: 'step', id: 'send', item: [2], status: 'succeeded', ms: 1 });
      await expect(journal.flush()).rejects.toBe(failures[0]);
    } finally {
      await backend.redis.config('SET', 'maxmemory', '0');
    }
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toContain(start.runId);
    expect(failures[0]!.message).toContain('ferry retry');
  });

  it('stops a journal whose run another process wrote to meanwhile', async () => {
    const start = runEntry();
    await createRun(start);
    const mine = store.journal(start.runId);
    const theirs = store.journal(start.runId);
    mine.append({ t: 'step', id: 'send', item: [0], status: 'succeeded', ms: 1 });
    await mine.flush();
    theirs.append({ t: 'step', id: 'send', item: [0], status: 'failed', ms: 1 });
    await theirs.flush();
    mine.append({ t: 'step', id: 'send', item: [1], status: 'succeeded', ms: 1 });
    await expect(mine.flush()).rejects.toMatchObject({ code: 'FERRY_JOURNAL_WRITE', message: expect.stringContaining('another process took the run over') as unknown });
  });
});

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('condition not met within 5 s');
}
