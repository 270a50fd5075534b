import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// `ferry run --json` of a large http.request loop prints each item's status, not every answer.
const ITEMS = 2_000;
let dir: string;
let server: Awaited<ReturnType<typeof startServer>>;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-http-loop-');
  await writeFile(path.join(dir, 'ids.json'), JSON.stringify({ ids: Array.from({ length: ITEMS }, (_, i) => i) }));
  // An everyday API answer: a few headers and a JSON record of some 300 bytes.
  server = await startServer((req, res) => {
    const id = Number(req.url.split('/').pop());
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'x-request-id': `req-${id}-7f3c9a1e2b4d`, 'cache-control': 'no-store' });
    res.end(JSON.stringify({ id, email: `user${id}@example.com`, name: `User ${id}`, plan: 'pro', created_at: '2026-11-01T10:00:00Z', tags: ['alpha', 'beta'], notes: 'x'.repeat(160) }));
  });
});
afterAll(() => server.close());

const workflow = (after: string): string => `
name: http-loop
triggers:
  - type: manual
    inputs:
      ids: { type: array }
providers:
  http: { concurrency: 32 }
steps:
  - id: each
    loop: { over: <<inputs.ids>>, as: id, concurrency: 64 }
    steps:
      - id: fetch
        action: http.request
        with: { url: "${server.url}/users/<<id>>" }
${after}`;

async function runJson(name: string, text: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = path.join(dir, name);
  await writeFile(file, text.replace(/^\n/, ''));
  return ferry(['run', file, '--input-json', path.join(dir, 'ids.json'), '--json', '--state-dir', path.join(dir, '.ferry')], { cwd: dir });
}

describe('ferry run --json of a 2,000-item http.request loop', () => {
  it('prints a summary that grows by a status per item when no template reads the answers', async () => {
    const result = await runJson('plain.yaml', workflow(''));
    expect(result.code, result.stderr).toBe(0);
    // About 90 bytes per item as `--json` prints it (indented); with every answer whole, over 1 KB.
    expect(Buffer.byteLength(result.stdout)).toBeLessThan(100 * ITEMS);
    const summary = JSON.parse(result.stdout) as { steps: { each: { output: { count: number; items: unknown[] } } } };
    expect(summary.steps.each.output.count).toBe(ITEMS);
    expect(summary.steps.each.output.items[1999]).toEqual({ fetch: { status: 200 } });
    // The journal holds what the loop keeps, too.
    const runDir = path.join(dir, '.ferry', 'runs', (JSON.parse(result.stdout) as { runId: string }).runId);
    expect((await readFile(path.join(runDir, 'journal.jsonl'), 'utf8')).includes('"notes"')).toBe(false);
  });

  it('gives the answers to a workflow that reads `steps.each.output.items[i]…body`', async () => {
    const result = await runJson(
      'reads.yaml',
      workflow(`  - id: report
    action: core.log
    with: { message: "last: <<steps.each.output.items.[1999].fetch.body.email>>" }
`),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain('last: user1999@example.com');
    const summary = JSON.parse(result.stdout) as { steps: { each: { output: { items: { fetch: { body: { email: string }; headers: Record<string, string> } }[] } } } };
    expect(summary.steps.each.output.items[7]?.fetch.body.email).toBe('user7@example.com');
    expect(summary.steps.each.output.items[7]?.fetch.headers['x-request-id']).toBe('req-7-7f3c9a1e2b4d');
  });
});
