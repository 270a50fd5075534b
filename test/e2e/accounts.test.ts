import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry, spawnFerry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

// Two workflows in one folder name the same Amplitude project (same base_url, same key) with
// different `concurrency`: `ferry serve` runs both at the stricter, and it and `ferry validate`
// say so once, naming both files and lines.
const AMP_KEY = 'amp-project-key-4c1d9e';
let sandbox: Sandbox;
let root: string;

beforeAll(async () => {
  assertBuilt();
  // Latency keeps requests in flight long enough for any excess to show at the emulator.
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY], latencyMs: 40 });
  root = await tempDir('ferry-accounts-');
  await mkdir(path.join(root, 'flows'));
  await writeFile(path.join(root, 'flows', 'loose.yaml'), workflow('loose', '/hooks/loose', 20));
  await writeFile(path.join(root, 'flows', 'strict.yaml'), workflow('strict', '/hooks/strict', 2));
});
afterAll(async () => {
  await sandbox?.close();
});

function workflow(name: string, hookPath: string, concurrency: number): string {
  return `name: ${name}
triggers:
  - type: webhook
    path: ${hookPath}
secrets: [AMP_KEY]
providers:
  amplitude:
    api_key: <<secrets.AMP_KEY>>
    base_url: ${sandbox.amplitude.url}
    batch: false
    concurrency: ${concurrency}
steps:
  - id: each
    loop: { over: <<trigger.body.ids>>, as: id, concurrency: 20 }
    steps:
      - id: send
        action: amplitude.send_event
        with: { user_id: <<id>>, event_type: ${name} }
`;
}

/** The warning, once the sandbox runs; `concurrency:` is on line 11 of both files. */
const expectedWarning = (): string =>
  `amplitude account ${sandbox.amplitude.url} is named with different limits by flows/loose.yaml:11 (concurrency 20) and flows/strict.yaml:11 (concurrency 2); runs of all of them get the stricter: concurrency 2`;

const count = (text: string, part: string): number => text.split(part).length - 1;

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('two workflows naming one provider account with different limits', () => {
  it('run at the stricter concurrency under ferry serve, which warns once naming both files and lines', async () => {
    const { child, done } = spawnFerry(['serve', '--dir', 'flows', '--port', '0'], { cwd: root, env: { AMP_KEY, FERRY_STATE_DIR: path.join(root, 'state') } });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    try {
      await until(() => /listening on http:\/\/\S+/.test(stderr), 'ferry serve to listen');
      const url = /listening on (http:\/\/\S+)/.exec(stderr)?.[1] as string;
      const ids = (from: number) => Array.from({ length: 30 }, (_, i) => `user_${from + i}`);
      // The loose workflow first: its 20 would be in flight before the strict one starts.
      const loose = await fetch(`${url}/hooks/loose`, { method: 'POST', body: JSON.stringify({ ids: ids(10_000) }) });
      const strict = await fetch(`${url}/hooks/strict`, { method: 'POST', body: JSON.stringify({ ids: ids(20_000) }) });
      expect([loose.status, strict.status]).toEqual([202, 202]);
      await until(() => sandbox.amplitude.events.size === 60, 'both runs to send their 60 events');
      expect(sandbox.amplitude.maxInFlight).toBe(2);
      expect(count(stderr, expectedWarning()), stderr).toBe(1);
      expect(stderr).not.toContain(AMP_KEY);
    } finally {
      child.kill('SIGTERM');
      await done;
    }
  });

  it('are reported by ferry validate of the folder as a warning, not an error', async () => {
    const result = await ferry(['validate', 'flows'], { cwd: root });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toBe(`warning: ${expectedWarning()}\n`);
  });

  it('are reported when one writes `region: us` and the other leaves the region out: one account', async () => {
    const regions = path.join(root, 'regions');
    await mkdir(regions);
    const block = (name: string, region: string, concurrency: number): string =>
      `name: ${name}\nsecrets: [AMP_KEY]\nproviders:\n  amplitude:\n    api_key: <<secrets.AMP_KEY>>\n${region}    concurrency: ${concurrency}\nsteps:\n  - { id: send, action: amplitude.send_event, with: { user_id: user_00001, event_type: x } }\n`;
    await writeFile(path.join(regions, 'a.yaml'), block('a', '    region: us\n', 2));
    await writeFile(path.join(regions, 'b.yaml'), block('b', '', 20));
    const result = await ferry(['validate', 'regions'], { cwd: root });
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('amplitude account https://api2.amplitude.com is named with different limits by regions/a.yaml:7 (concurrency 2) and regions/b.yaml:6 (concurrency 20)');
  });

  it('are not reported when the two name different accounts', async () => {
    const other = path.join(root, 'other');
    await mkdir(other);
    await writeFile(path.join(other, 'a.yaml'), workflow('a', '/a', 2));
    await writeFile(path.join(other, 'b.yaml'), workflow('b', '/b', 20).replace('<<secrets.AMP_KEY>>', '<<secrets.OTHER_KEY>>').replace('secrets: [AMP_KEY]', 'secrets: [OTHER_KEY]'));
    const result = await ferry(['validate', 'other'], { cwd: root });
    expect(result).toMatchObject({ code: 0, stderr: '' });
  });
});
