import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, ferry } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

/*
 * A Segment message Segment answers 200 to and then drops (here a timestamp it cannot read,
 * which ferry's segment.track passes on as written): production loses it without a word;
 * `ferry test` fails the case and `ferry run --sandbox --verbose` says which and why.
 */
let dir: string;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-segment-drops-');
  await mkdir(path.join(dir, 'flows'));
  await writeFile(
    path.join(dir, 'flows/signup.yaml'),
    `name: signup
triggers:
  - type: manual
    inputs:
      when: { type: string }
secrets: [SEGMENT_WRITE_KEY]
providers:
  segment: { write_key: <<secrets.SEGMENT_WRITE_KEY>> }
steps:
  - id: seg
    action: segment.track
    with: { userId: user_0001, event: Signed Up, timestamp: <<inputs.when>> }
`,
  );
  await writeFile(
    path.join(dir, 'flows/signup.test.yaml'),
    `workflow: signup.yaml
cases:
  - name: sends an ISO-8601 timestamp
    inputs: { when: "2026-11-25T10:00:00Z" }
    expect:
      messages: { count: 1 }
  - name: sends a timestamp Segment cannot read
    inputs: { when: yesterday }
`,
  );
});

describe('a message Segment would drop', () => {
  it('fails its `ferry test` case at the case name, saying which message and why, and passes the valid case', async () => {
    const result = await ferry(['test', 'flows'], { cwd: dir });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('✓ sends an ISO-8601 timestamp');
    expect(result.stdout).toContain('flows/signup.test.yaml:7:11: Segment would drop message 1: timestamp: must be an ISO-8601 string');
    expect(result.stdout).toContain('Segment answers 200 to it and drops it without a word: {"userId":"user_0001","event":"Signed Up","timestamp":"yesterday"');
    expect(result.stdout).toContain('1 passed, 1 failed');
  });

  it('succeeds under `ferry run --sandbox`, as Segment answers 200, and --verbose prints the dropped message with why', async () => {
    const verbose = await ferry(['run', 'flows/signup.yaml', '--sandbox', '--input', 'when=yesterday', '--verbose', '--state-dir', 'state'], { cwd: dir });
    expect(verbose.code).toBe(0);
    expect(verbose.stderr).toContain('Segment: 1 message Segment would drop (answered 200, not stored) (1 request)');
    expect(verbose.stderr).toMatch(/^ *Segment would drop message 1: timestamp: must be an ISO-8601 string \(messageId ferry-\S+\)$/m);

    const quiet = await ferry(['run', 'flows/signup.yaml', '--sandbox', '--input', 'when=yesterday', '--state-dir', 'state'], { cwd: dir });
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).not.toContain('Segment would drop message');
    expect(quiet.stderr).toContain('(--verbose says which Segment messages would be dropped, and why)');
  });
});
