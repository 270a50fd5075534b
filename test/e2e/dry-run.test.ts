import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { startServer } from '../helpers/server.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

let dir: string;
let server: Awaited<ReturnType<typeof startServer>>;
const realKeys = { AMPLITUDE_API_KEY: 'amp-live-key-93be1', SEGMENT_WRITE_KEY: 'seg-live-key-77c0a', CRM_TOKEN: 'crm-live-token-5d2' };

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-dry-');
  // Every provider of the workflow points here: a dry run must send it nothing.
  server = await startServer((_req, res) => {
    res.writeHead(500);
    res.end();
  });
  await writeFile(
    path.join(dir, 'sync.yaml'),
    `name: sync
triggers:
  - type: manual
    inputs:
      users:
        type: array
        default:
          - { id: user_0001, email: ada@example.com, plan: pro }
          - { id: user_0002, plan: free }
          - { id: user_0003, email: linus@example.com, plan: team }
secrets: [AMPLITUDE_API_KEY, SEGMENT_WRITE_KEY, CRM_TOKEN]
providers:
  amplitude: { api_key: <<secrets.AMPLITUDE_API_KEY>>, base_url: ${server.url} }
  segment: { write_key: <<secrets.SEGMENT_WRITE_KEY>>, base_url: ${server.url} }
steps:
  - id: each_user
    loop: { over: <<inputs.users>>, as: user, concurrency: 8 }
    steps:
      - id: amp
        action: amplitude.identify_user
        with: { user_id: <<user.id>>, user_properties: { plan: <<user.plan>> } }
      - id: seg
        action: segment.identify_user
        if: <<user.email>>
        with: { userId: <<user.id>>, email: <<user.email>> }
      - id: crm
        action: http.request
        with:
          method: PUT
          url: ${server.url}/crm/<<user.id>>
          headers: { authorization: "Bearer <<secrets.CRM_TOKEN>>" }
          json: { plan: <<user.plan>>, token_hint: "<<secrets.CRM_TOKEN>>" }
  - id: report
    action: core.log
    with: { message: "synced <<steps.each_user.output.count>> users" }
`,
  );
});

afterAll(async () => {
  await server?.close();
});

describe('ferry run --dry-run', () => {
  it('prints every call of the first N loop items, in order, with secrets redacted, and sends nothing', async () => {
    const result = await ferry(['run', 'sync.yaml', '--dry-run', '--limit', '2'], { cwd: dir, env: realKeys });
    expect(result.code).toBe(0);
    const out = result.stdout;
    const headers = [...out.matchAll(/^#(\d+) (.+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
    expect(headers).toEqual([
      '1 each_user#0 › amp  amplitude.identify_user',
      '2 each_user#0 › seg  segment.identify_user',
      '3 each_user#0 › crm  http.request',
      '4 each_user#1 › amp  amplitude.identify_user',
      '5 each_user#1 › crm  http.request',
    ]);
    expect(out).toContain(`  POST ${server.url}/identify\n  content-type: application/x-www-form-urlencoded\n    {\n      "api_key": "[redacted]",\n      "identification": {\n        "user_id": "user_0001",`);
    expect(out).toContain(`  POST ${server.url}/v1/identify\n  content-type: application/json\n  authorization: Basic [redacted]`);
    expect(out).toContain(`  PUT ${server.url}/crm/user_0001\n  authorization: Bearer [redacted]\n  content-type: application/json`);
    expect(out).toContain('"token_hint": "[redacted]"');
    expect(out).toContain('- each_user#1 › seg  skipped (`if:` is false)');
    expect(out).not.toContain('user_0003');
    // Neither the real keys from the environment nor the placeholders that stand in for them.
    for (const value of [...Object.values(realKeys), 'sandbox-amplitude-api-key', 'sandbox-crm-token']) expect(out + result.stderr).not.toContain(value);
    expect(result.stderr).toContain('each_user: showing the first 2 of 3 items (--limit 2)');
    expect(result.stderr).toContain('[report] synced 2 users');
    expect(result.stderr).toContain('dry run: 5 provider calls (amplitude 2, segment 1, http 2) rendered; nothing was sent');
    expect(server.seen).toEqual([]);
  });

  it('gives the planned calls as JSON with --json, every loop item without --limit', async () => {
    const result = await ferry(['run', 'sync.yaml', '--dry-run', '--json'], { cwd: dir });
    expect(result.code).toBe(0);
    const plan = JSON.parse(result.stdout) as { status: string; calls: { step: string; item: number[]; method: string; url: string; body: Record<string, unknown> }[] };
    expect(plan.status).toBe('succeeded');
    expect(plan.calls.map((c) => `${c.step}@${c.item.join('.')}`)).toEqual(['amp@0', 'seg@0', 'crm@0', 'amp@1', 'crm@1', 'amp@2', 'seg@2', 'crm@2']);
    expect(plan.calls[7]).toMatchObject({ method: 'PUT', url: `${server.url}/crm/user_0003`, body: { plan: 'team', token_hint: '[redacted]' } });
    expect(server.seen).toEqual([]);
  });

  it('exits 2 with the template error, naming the step and the loop item, after the calls before it', async () => {
    await writeFile(path.join(dir, 'broken.yaml'), 'name: broken\nsteps:\n  - id: each\n    loop: { over: [{ id: a }, { name: b }], as: row }\n    steps:\n      - id: say\n        action: core.log\n        with: { message: "<<row.id>>" }\n');
    const result = await ferry(['run', 'broken.yaml', '--dry-run'], { cwd: dir });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/dry run stopped after 0 calls: step `say`, loop item 1: template in `with.message` "<<row.id>>": `row.id` is not defined/);
  });

  it('exits 2 for an invalid workflow, and for --limit without --dry-run', async () => {
    await writeFile(path.join(dir, 'invalid.yaml'), 'name: invalid\nsteps:\n  - id: a\n    action: core.lgo\n');
    const invalid = await ferry(['run', 'invalid.yaml', '--dry-run'], { cwd: dir });
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain('invalid.yaml:4:13: unknown action `core.lgo`');
    const limit = await ferry(['run', 'sync.yaml', '--limit', '2'], { cwd: dir, env: realKeys });
    expect(limit.code).toBe(2);
    expect(limit.stderr).toContain('--limit goes with --dry-run');
    expect(server.seen).toEqual([]);
  });
});
