import { describe, expect, it } from 'vitest';
import { parseTestFile } from '../../src/testing/spec.js';

const parse = (text: string) => parseTestFile('t.test.yaml', '/tmp/t.test.yaml', text.replace(/^\n/, ''));

describe('test files', () => {
  it('turn faults into the emulator faults, with a zero Retry-After for a 429 so that tests stay fast', () => {
    const { test, issues } = parse(`
workflow: w.yaml
cases:
  - name: one
    faults:
      amplitude: [{ status: 429, times: 3 }, { reject_user: u_9 }, { throttle_user: u_7, times: 2 }, { reset: true, path: /identify }]
      segment: [{ status: 503, retry_after: 2 }]
`);
    expect(issues).toEqual([]);
    expect(test?.workflow).toBe('/tmp/w.yaml');
    expect(test?.cases[0]?.faults).toEqual({
      amplitude: [
        { kind: 'status', status: 429, times: 3, retryAfter: 0 },
        { kind: 'reject-user', userId: 'u_9' },
        { kind: 'throttle-user', userId: 'u_7', times: 2, retryAfter: 0 },
        { kind: 'reset', times: 1, path: '/identify' },
      ],
      segment: [{ kind: 'status', status: 503, times: 1, retryAfter: 2 }],
    });
  });

  it('report every mistake at its line and column, in the terms of the file', () => {
    const { test, issues } = parse(`
workflow: w.yaml
cases:
  - name: one
    inputs: {}
    body: {}
    faults:
      http: [{ status: 500, reset: true }, { reject_user: u_1 }]
      segment: [{ throttle_user: u_2 }]
    expect:
      stauts: failed
      error: boom
  - name: one
    expect: { calls: { amplitude: { count: many } } }
`);
    expect(test).toBeUndefined();
    expect(issues.map((i) => `${i.line}:${i.col} ${i.code} ${i.message}`)).toEqual([
      '5:5 FERRY_TEST_INVALID use either `inputs` (manual trigger) or `body` (webhook trigger), not both',
      '7:14 FERRY_TEST_INVALID a fault needs exactly one of `status`, `reset`, `reject_user` or `throttle_user`, got `status` and `reset`',
      '7:46 FERRY_TEST_INVALID `reject_user` needs a provider that knows users (amplitude or segment)',
      '8:19 FERRY_TEST_INVALID `throttle_user` is an Amplitude answer (a 429 naming the throttled users); use `status: 429` here',
      '10:7 FERRY_SCHEMA_UNKNOWN_KEY unknown key `stauts`; did you mean `status`?',
      '11:7 FERRY_TEST_INVALID an `error` expectation needs `status: failed`',
      '12:11 FERRY_TEST_INVALID case 2 has the same name as case 1; names tell cases apart in reports',
      '13:44 FERRY_SCHEMA_TYPE `count` must be a whole number, got the string "many"',
    ]);
  });

  it('must name a workflow and hold at least one case', () => {
    const { issues } = parse('cases: []\n');
    expect(issues.map((i) => i.message)).toEqual(['the workflow is missing the required key `workflow`', '`cases` needs at least 1 item']);
  });
});
