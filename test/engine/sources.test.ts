import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readItems } from '../../src/engine/sources.js';
import { runWorkflow } from '../../src/engine/run.js';
import { Limiter } from '../../src/engine/limiter.js';
import { registryWith, workflowFrom } from '../helpers/workflow.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ferry-sources-'));
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

  it('reads JSONL line by line and names the line of a bad one', async () => {
    const file = path.join(dir, 'events.jsonl');
    await writeFile(file, '{"a":1}\n\n{"a":2}\n{oops}\n');
    const seen: unknown[] = [];
    await expect(async () => {
      for await (const item of readItems(file)) seen.push(item);
    }).rejects.toThrow(/events.jsonl, line 4: not JSON/);
    expect(seen).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('streams the elements of a JSON array, with strings holding brackets and commas', async () => {
    const file = path.join(dir, 'items.json');
    const items = [{ s: 'a,]b}[{', n: [1, [2, 3]] }, 'plain "quoted" \\ text', 42, null, { deep: { x: [{}] } }];
    await writeFile(file, `  ${JSON.stringify(items, null, 2)}\n`);
    expect(await collect(file)).toEqual(items);
  });

  it('refuses a JSON file that is not an array', async () => {
    const file = path.join(dir, 'obj.json');
    await writeFile(file, '{"a": 1}');
    await expect(collect(file)).rejects.toThrow(/must hold an array/);
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
    const summary = await runWorkflow(wf, { registry, limiter: new Limiter(), observer: { log: (_l, m) => seen.push(m) } });
    expect(summary.status).toBe('succeeded');
    expect(summary.steps.each?.output).toEqual({ count: 250 });
    expect(new Set(seen).size).toBe(250);
  });
});
