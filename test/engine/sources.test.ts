import { mkdir, readdir, readlink, realpath, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { confineDataPath, dataRoots } from '../../src/engine/data-paths.js';
import { fingerprint, openRows, readItems, readRows, sourceChange } from '../../src/engine/sources.js';
import { resumeStateFrom, runWorkflow } from '../../src/engine/run.js';
import type { JournalEntry, RunJournal } from '../../src/store/journal.js';
import { createFerry } from '../../src/engine/runtime.js';
import { registryWith, workflowFrom } from '../helpers/workflow.js';
import { startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;
beforeAll(async () => {
  dir = await tempDir('ferry-sources-');
});

async function collect(file: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const item of readItems(file)) out.push(item);
  return out;
}

describe('loop.file sources', () => {
  it('reads CSV rows as objects keyed by the header row, quotes and BOM included', async () => {
    const file = path.join(dir, 'users.csv');
    await writeFile(file, '\uFEFFid,name,note\nu1,Ada,"likes, commas"\nu2,Grace,"says ""hi"""\n\n');
    expect(await collect(file)).toEqual([
      { id: 'u1', name: 'Ada', note: 'likes, commas' },
      { id: 'u2', name: 'Grace', note: 'says "hi"' },
    ]);
  });

  it.each([
    ['blank lines between rows', 'id,v\n1,a\n\n2,b\n\n\n3,c\n', [2, 4, 7]],
    ['line breaks inside quoted values, a blank one too', 'id,v\n1,"a\nb"\n2,"c\n\nd"\n3,e\n', [2, 4, 7]],
    ['CRLF line ends and a quoted CRLF', 'id,v\r\n1,a\r\n2,"b\r\nc"\r\n3,d\r\n', [2, 3, 5]],
    ['blank lines before the header and escaped quotes', '\n\nid,v\n1,"x""y"\n2,"""q"""\n', [4, 5]],
    ['a BOM and no final line break', '\uFEFFid,v\n1,a\n2,b', [2, 3]],
  ])('gives each CSV row the line it starts on (the header is line 1): %s', async (_name, text, lines) => {
    const file = path.join(dir, 'lines.csv');
    await writeFile(file, text);
    const seen: (number | undefined)[] = [];
    for await (const row of readRows(file)) seen.push(row.line);
    expect(seen).toEqual(lines);
  });

  it('gives each JSONL item its line, blank lines counted', async () => {
    const file = path.join(dir, 'lines.jsonl');
    await writeFile(file, '{"a":1}\n\n{"a":2}\n\n\n{"a":3}\n');
    const seen: unknown[] = [];
    for await (const row of readRows(file)) seen.push([row.value, row.line]);
    expect(seen).toEqual([[{ a: 1 }, 1], [{ a: 2 }, 3], [{ a: 3 }, 6]]);
  });

  it('reads JSONL line by line and names the line of a bad one', async () => {
    const file = path.join(dir, 'events.jsonl');
    await writeFile(file, '{"a":1}\n\n{"a":2}\n{oops}\n');
    const seen: unknown[] = [];
    await expect(async () => {
      for await (const item of readItems(file)) seen.push(item);
    }).rejects.toThrow(/events.jsonl, line 4: not JSON/);
    expect(seen).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('hands JSONL rows out without a promise while the chunk in hand holds them, across chunk edges and multi-byte characters', async () => {
    const file = path.join(dir, 'many.jsonl');
    // Multi-byte characters and a 100 KB line put line ends and characters across the 64 KB chunks;
    // CRLF endings, blank lines and a last line without a newline are rows as before.
    const rows = Array.from({ length: 5000 }, (_, i) => ({ id: `row_${i}`, text: i % 7 === 0 ? 'ü€😀'.repeat(i % 50) : 'plain' }));
    rows.splice(2500, 0, { id: 'long', text: 'x€'.repeat(50_000) });
    const text = rows.map((r, i) => `${JSON.stringify(r)}${i % 3 === 0 ? '\r\n' : '\n'}${i % 11 === 0 ? '\n  \n' : ''}`).join('');
    await writeFile(file, `${text}${JSON.stringify({ id: 'last' })}`);
    const source = openRows(file);
    const seen: unknown[] = [];
    let promises = 0;
    for (;;) {
      const pulled = source.next();
      if (pulled instanceof Promise) promises++;
      const next = pulled instanceof Promise ? await pulled : pulled;
      if (next.done) break;
      seen.push(next.value);
    }
    expect(seen).toEqual([...rows, { id: 'last' }]);
    // One promise per chunk read (and one at the end), not one per row.
    const { size } = await fingerprint(file);
    expect(promises).toBeLessThanOrEqual(Math.ceil(size / (64 * 1024)) + 2);
  });

  it('names the line of a bad JSONL row past the first chunk', async () => {
    const file = path.join(dir, 'late.jsonl');
    await writeFile(file, `${Array.from({ length: 3000 }, (_, i) => JSON.stringify({ id: i, pad: 'p'.repeat(40) })).join('\n')}\n\n{"id": oops}\n`);
    const seen: unknown[] = [];
    await expect(async () => {
      for await (const item of readItems(file)) seen.push(item);
    }).rejects.toThrow(/late.jsonl, line 3002: not JSON/);
    expect(seen).toHaveLength(3000);
  });

  it('reads a JSONL file through one buffer and leaves it closed when the rows end, when a row is bad and when the loop stops early', async () => {
    const file = path.join(dir, 'closed.jsonl');
    await writeFile(file, `${Array.from({ length: 5000 }, (_, i) => JSON.stringify({ id: i, pad: 'q'.repeat(i % 90) })).join('\n')}\n{bad}\n`);
    const whole = path.join(dir, 'whole.jsonl');
    await writeFile(whole, Array.from({ length: 5000 }, (_, i) => JSON.stringify({ id: i })).join('\n'));
    // The descriptors this process holds on the file, from /proc (Linux).
    const open = async (): Promise<number> => {
      const fds = await readdir('/proc/self/fd');
      const targets = await Promise.all(fds.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
      return targets.filter((t) => t === file || t === whole).length;
    };
    const drain = async (source: ReturnType<typeof openRows>, limit = Infinity): Promise<number> => {
      let n = 0;
      while (n < limit) {
        const pulled = source.next();
        if ((pulled instanceof Promise ? await pulled : pulled).done) break;
        n++;
      }
      return n;
    };
    await expect(drain(openRows(file))).rejects.toThrow(/closed.jsonl, line 5001: not JSON/);
    expect(await drain(openRows(whole))).toBe(5000);
    const early = openRows(file);
    expect(await drain(early, 2500)).toBe(2500);
    expect(early.line).toBe(2500);
    early.close();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await open()).toBe(0);
  });

  it('streams the elements of a JSON array, with strings holding brackets and commas', async () => {
    const file = path.join(dir, 'items.json');
    const items = [{ s: 'a,]b}[{', n: [1, [2, 3]] }, 'plain "quoted" \\ text', 42, null, { deep: { x: [{}] } }];
    await writeFile(file, `  ${JSON.stringify(items, null, 2)}\n`);
    expect(await collect(file)).toEqual(items);
  });

  it('rejects, rather than ending the process, when a CSV file cannot be opened', async () => {
    await expect(collect(path.join(dir, 'missing.csv'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses a JSON file that is not an array', async () => {
    const file = path.join(dir, 'obj.json');
    await writeFile(file, '{"a": 1}');
    await expect(collect(file)).rejects.toThrow(/must hold an array/);
  });

  it('marks progress only below rows that all finished, when items finish out of order far above the mark', async () => {
    // Every fifth row answers late: thousands of rows finish above an unfinished one.
    const server = await startServer((req, res) => {
      setTimeout(() => res.end('{}'), req.url.endsWith('0') || req.url.endsWith('5') ? 40 : 0);
    });
    try {
      await writeFile(path.join(dir, 'order.jsonl'), Array.from({ length: 2000 }, (_, i) => JSON.stringify({ id: i })).join('\n'));
      const registry = registryWith();
      const wf = workflowFrom(`
name: order
providers:
  http: { concurrency: 1000 }
steps:
  - id: each
    loop: { file: order.jsonl, as: row, concurrency: 1500 }
    steps:
      - { id: call, action: http.request, with: { url: "${server.url}/r/<<row.id>>" } }
`, registry, path.join(dir, 'order.yaml'));
      const entries: JournalEntry[] = [];
      const journal: RunJournal = { append: (e) => entries.push(e), close: () => undefined };
      const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), journal });
      expect(summary.status).toBe('succeeded');
      const finished = new Set<number>();
      const marks: number[] = [];
      for (const e of entries) {
        if (e.t === 'step' && e.id === 'call' && e.status === 'succeeded') finished.add(e.item[0] as number);
        if (e.t === 'progress') {
          marks.push(e.done);
          for (let row = 0; row < e.done; row++) expect(finished.has(row)).toBe(true);
        }
      }
      expect(marks.at(-1)).toBe(2000);
    } finally {
      await server.close();
    }
  });

  it('runs a loop over a file with a count-only output, the path relative to the workflow file', async () => {
    await writeFile(path.join(dir, 'rows.jsonl'), Array.from({ length: 250 }, (_, i) => JSON.stringify({ id: `row_${i}` })).join('\n'));
    const registry = registryWith();
    const seen: string[] = [];
    const wf = workflowFrom(`
name: fileloop
steps:
  - id: each
    loop: { file: rows.jsonl, as: row, concurrency: 7 }
    steps:
      - { id: say, action: core.log, with: { message: "<<row.id>>" } }
`, registry, path.join(dir, 'wf.yaml'));
    const summary = await runWorkflow(wf, { ferry: createFerry({ registry }), observer: { log: (_l, m) => seen.push(m) } });
    expect(summary.status).toBe('succeeded');
    expect(summary.steps.each?.output).toEqual({ count: 250 });
    expect(new Set(seen).size).toBe(250);
  });
});

describe('loop file fingerprints', () => {
  it('tells a small file by its bytes alone: a touch is no change, one changed byte is', async () => {
    const file = path.join(dir, 'small.csv');
    await writeFile(file, 'id\nu1\nu2\n');
    const before = await fingerprint(file);
    await utimes(file, new Date(), new Date(Date.now() + 60_000));
    expect(await sourceChange(before)).toBeUndefined();
    await writeFile(file, 'id\nu1\nu3\n');
    expect(await sourceChange(before)).toMatch(/small.csv changed since the run read it \(same size, other content\)/);
  });

  it('tells a large file by its size, its ends and its mtime', async () => {
    const file = path.join(dir, 'large.jsonl');
    const text = Array.from({ length: 40_000 }, (_, i) => JSON.stringify({ id: `row_${String(i).padStart(6, '0')}` })).join('\n');
    await writeFile(file, text);
    const before = await fingerprint(file);
    expect(before.size).toBeGreaterThan(512 * 1024);
    const middle = text.replace('row_020000', 'row_02000X');
    // Same size and same ends: only the mtime tells this edit in the middle.
    await writeFile(file, middle);
    await utimes(file, new Date(), new Date(before.mtimeMs + 5000));
    expect(await sourceChange(before)).toMatch(/large.jsonl was modified since the run read it \(mtime /);
    await writeFile(file, `${text}\n{"id":"extra"}`);
    expect(await sourceChange(before)).toMatch(/changed since the run read it \(\d+ bytes then, \d+ now\)/);
  });

  it('fails a resumed file loop whose file changed, before running any row', async () => {
    const file = path.join(dir, 'resume.jsonl');
    await writeFile(file, '{"id":"a"}\n{"id":"b"}\n');
    const registry = registryWith();
    const wf = workflowFrom(`
name: resumed
steps:
  - id: each
    loop: { file: resume.jsonl, as: row }
    steps:
      - { id: say, action: core.log, with: { message: "<<row.id>>" } }
`, registry, path.join(dir, 'resume.yaml'));
    const entries: JournalEntry[] = [];
    const journal: RunJournal = { append: (e) => entries.push(e), close: () => undefined };
    const first = await runWorkflow(wf, { ferry: createFerry({ registry }), journal, runId: 'R1' });
    expect(first.status).toBe('succeeded');
    expect(entries.filter((e) => e.t === 'source')).toEqual([expect.objectContaining({ id: 'each', item: [], path: file, size: 22 })]);
    await writeFile(file, '{"id":"c"}\n');
    const seen: string[] = [];
    const again = await runWorkflow(wf, { ferry: createFerry({ registry }), runId: 'R1', resume: resumeStateFrom(entries), observer: { log: (_l, m) => seen.push(m) } });
    expect(again.status).toBe('failed');
    expect(again.error).toMatchObject({ step: 'each', code: 'FERRY_LOOP_FILE_CHANGED' });
    expect(again.error?.message).toContain(`cannot resume run R1: ${file} changed since the run read it (22 bytes then, 11 now)`);
    expect(seen).toEqual([]);
  });
});

describe('paths from data', () => {
  it('follows a dangling symlink to where writing through it would land', async () => {
    const folder = path.join(dir, 'confined');
    await mkdir(folder, { recursive: true });
    const away = await tempDir('ferry-away-');
    await symlink(path.join(away, 'not-yet.ndjson'), path.join(folder, 'out.ndjson'));
    const roots = await dataRoots(path.join(folder, 'wf.yaml'), undefined);
    await expect(confineDataPath('out.ndjson', '`with.output`', folder, roots)).rejects.toThrow(
      `\`with.output\` "out.ndjson" resolves to ${path.join(away, 'not-yet.ndjson')}, outside the workflow's folder (${folder});`,
    );
    expect(await confineDataPath('new/dir/file.ndjson', '`with.output`', folder, roots)).toBe(path.join(await realpath(folder), 'new/dir/file.ndjson'));
  });
});
