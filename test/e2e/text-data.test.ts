import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { assertBuilt, ferry } from '../helpers/cli.js';

// Issue 16, points 3 and 4: data that arrives as text (a CSV, `--input`) converted by
// helpers and by the inputs' declared types; optional inputs that render null left out.

const AMP_KEY = 'amp-key-0123456789abcdef';
let sandbox: Sandbox;
let dir: string;

beforeAll(async () => {
  assertBuilt();
  sandbox = await startSandbox({ amplitudeApiKeys: [AMP_KEY], segmentWriteKeys: ['seg-key'] });
});
afterAll(async () => sandbox.close());
beforeEach(async () => {
  sandbox.amplitude.reset();
  sandbox.segment.reset();
  dir = await mkdtemp(path.join(tmpdir(), 'ferry-text-'));
  return () => rm(dir, { recursive: true, force: true });
});

const env = (): Record<string, string> => ({ AMP_KEY, SEG_KEY: 'seg-key', FERRY_STATE_DIR: path.join(dir, 'state') });
const providers = (): string => `secrets: [AMP_KEY, SEG_KEY]
providers:
  amplitude: { api_key: "<<secrets.AMP_KEY>>", secret_key: sandbox-amplitude-secret, base_url: ${sandbox.amplitude.url} }
  segment: { write_key: "<<secrets.SEG_KEY>>", base_url: ${sandbox.segment.url} }
`;

async function workflow(name: string, text: string): Promise<string> {
  const file = path.join(dir, `${name}.yaml`);
  await writeFile(file, text);
  return file;
}

/** A CSV of purchases sent as Amplitude events, its text cells converted by helpers. */
async function purchases(csv: string): Promise<string> {
  await writeFile(path.join(dir, 'purchases.csv'), csv);
  return workflow(
    'purchases',
    `name: purchases
${providers()}steps:
  - id: rows
    loop: { file: purchases.csv, as: row }
    steps:
      - id: send
        action: amplitude.send_event
        with:
          user_id: <<row.user>>
          event_type: purchase
          time: <<format_date (date_add row.at "-1h") "x">>
          event_properties:
            amount: <<number row.amount>>
            quantity: <<int row.quantity>>
            gift: <<bool row.gift>>
            cart: <<parse_json row.cart>>
            hour: <<format_date row.at "YYYYMMDDTHH">>
`,
  );
}

describe('CSV text sent as the types a provider wants', () => {
  it('converts cells to numbers, booleans, JSON and times before sending', async () => {
    const wf = await purchases('user,amount,quantity,gift,cart,at\nuser-0001,12.50,3,yes,"{""sku"":""a1""}",2024-05-01 10:30:00\nuser-0002,7,1,no,[],2024-05-02T00:15:00Z\n');
    const result = await ferry(['run', wf], { env: env() });
    expect(result.stderr).not.toContain('failed');
    expect(result.code).toBe(0);
    const events = [...sandbox.amplitude.events.values()].sort((a, b) => String(a.user_id).localeCompare(String(b.user_id)));
    expect(events.map((e) => [e.user_id, e.time, e.event_properties])).toEqual([
      ['user-0001', Date.parse('2024-05-01T09:30:00Z'), { amount: 12.5, quantity: 3, gift: true, cart: { sku: 'a1' }, hour: '20240501T10' }],
      ['user-0002', Date.parse('2024-05-01T23:15:00Z'), { amount: 7, quantity: 1, gift: false, cart: [], hour: '20240502T00' }],
    ]);
  });

  it('fails an item whose cell does not convert, naming the step, the item, the input and the value', async () => {
    const wf = await purchases('user,amount,quantity,gift,cart,at\nuser-0001,12.50,3,yes,{},2024-05-01\nuser-0002,abc,1,no,{},2024-05-01\n');
    const result = await ferry(['run', wf], { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('step `send`, loop item 1');
    expect(result.stderr).toContain('template in `with.event_properties.amount` "<<number row.amount>>": `number` got the string "abc", which is not a number');
  });

  it('suggests the column meant by a misspelt path', async () => {
    await writeFile(path.join(dir, 'users.csv'), 'user_id,email\nuser-0001,a@example.com\n');
    const wf = await workflow(
      'typo',
      `name: typo
steps:
  - id: rows
    loop: { file: users.csv, as: row }
    steps:
      - id: say
        action: core.log
        with: { message: "<<row.emial>>" }
`,
    );
    const result = await ferry(['run', wf], { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('`row.emial` is not defined in the run context; did you mean `row.email`?');
  });

  it('exports yesterday\'s hour with start: <<format_date (now "-1d") "YYYYMMDDTHH">>', async () => {
    const hour = (ms: number): string => new Date(ms).toISOString().slice(0, 13).replace(/-/g, '');
    const hours = [hour(Date.now() - 86_400_000), hour(Date.now() - 86_400_000 + 120_000)];
    sandbox.amplitude.setExportData(new Map(hours.map((h) => [h, [{ event_type: 'x', user_id: 'user-0001' }]])));
    const wf = await workflow(
      'nightly',
      `name: nightly
${providers()}steps:
  - id: export
    action: amplitude.export_events
    with:
      start: <<format_date (now "-1d") "YYYYMMDDTHH">>
      end: <<format_date (now "-1d") "YYYYMMDDTHH">>
      output: exports/events.ndjson
`,
    );
    const result = await ferry(['run', wf, '--json'], { env: env() });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout).steps.export.output.count).toBe(1);
    const query = sandbox.amplitude.requests.find((r) => r.path.startsWith('/api/2/export'))?.query;
    expect(hours).toContain(query?.start);
  });
});

describe('optional values', () => {
  async function identify(): Promise<string> {
    return workflow(
      'identify',
      `name: identify
triggers:
  - type: manual
    inputs: { users: { type: array } }
${providers()}steps:
  - id: each
    loop: { over: <<inputs.users>>, as: user }
    steps:
      - id: seg
        action: segment.identify_user
        with:
          userId: <<user.id>>
          anonymousId: <<default user.device_id null>>
          email: <<default user.email null>>
`,
    );
  }

  it('leaves an optional input out of the call when its template renders null', async () => {
    const wf = await identify();
    const users = [{ id: 'user-0001', device_id: 'dev-1', email: 'a@example.com' }, { id: 'user-0002' }];
    const result = await ferry(['run', wf, '--input', `users=${JSON.stringify(users)}`], { env: env() });
    expect(result.stderr).not.toContain('failed');
    expect(result.code).toBe(0);
    const messages = [...sandbox.segment.messages.values()].sort((a, b) => String(a.userId).localeCompare(String(b.userId)));
    expect(messages.map((m) => [m.userId, m.anonymousId, m.traits])).toEqual([
      ['user-0001', 'dev-1', { email: 'a@example.com' }],
      ['user-0002', undefined, {}],
    ]);
    expect(messages[1]).not.toHaveProperty('anonymousId');
  });

  it('names the input, the expected type and the value when a template renders the wrong type', async () => {
    const wf = await identify();
    const result = await ferry(['run', wf, '--input', 'users=[{"id":12345}]'], { env: env() });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('step `seg`, loop item 0: invalid input: segment.identify_user: `userId` must be string, got number 12345');
  });
});

describe('--input takes the type the trigger declares', () => {
  const declared = `name: typed
triggers:
  - type: manual
    inputs:
      count: { type: integer }
      ratio: { type: number }
      dry: { type: boolean }
      day: { type: string }
      tags: { type: array }
      options: { type: object, default: {} }
      loose: { default: null }
steps:
  - id: show
    action: core.log
    with: { message: "inputs <<json inputs>>" }
`;

  it('converts each text to its input\'s type', async () => {
    const wf = await workflow('typed', declared);
    const args = ['count=42', 'ratio=0.5', 'dry=yes', 'day=20240501', 'tags=["a","b"]', 'options={"k":1}', 'loose=7'].flatMap((a) => ['--input', a]);
    const result = await ferry(['run', wf, ...args, '--verbose'], { env: env() });
    expect(result.code).toBe(0);
    const shown = JSON.parse(/inputs (\{.*\})/.exec(result.stderr)?.[1] ?? 'null') as unknown;
    expect(shown).toEqual({ count: 42, ratio: 0.5, dry: true, day: '20240501', tags: ['a', 'b'], options: { k: 1 }, loose: 7 });
  });

  it('reports every input error at once', async () => {
    const wf = await workflow('typed', declared);
    const result = await ferry(['run', wf, '--input', 'count=many', '--input', 'ratio=0.5', '--input', 'dry=perhaps', '--input', 'tags=a,b', '--input', 'dya=x'], { env: env() });
    expect(result.code).toBe(2);
    for (const line of [
      'invalid inputs:',
      'unknown input `dya` (declared: count, ratio, dry, day, tags, options, loose); did you mean `day`?',
      'missing required input `day`',
      '`count` must be integer, got the string "many"',
      '`dry` must be boolean, got the string "perhaps"',
      '`tags` must be array, got the string "a,b"',
    ]) expect(result.stderr).toContain(line);
  });
});

describe('ferry validate', () => {
  it('points at misspelt helpers and paths, and at literal arguments that cannot convert', async () => {
    const wf = await workflow(
      'typos',
      `name: typos
triggers:
  - type: manual
    inputs: { users: { type: array } }
steps:
  - id: first
    action: core.log
    with: { message: '<<numbr inputs.users>> <<int "2.5">> <<format_date (now "-1y") "YYYY">>' }
  - id: each
    loop: { over: <<inputs.usres>>, as: user }
    steps:
      - id: say
        action: core.log
        with: { message: "<<usr.id>> <<steps.frist.output>> <<uuidd>>" }
`,
    );
    const result = await ferry(['validate', wf]);
    expect(result.code).toBe(2);
    const lines = result.stdout.trim().split('\n').map((l) => l.replace(`${wf}:`, ''));
    expect(lines).toEqual([
      expect.stringMatching(/^8:23: template: unknown helper `numbr`; did you mean `number`\? known helpers: /),
      '8:46: template: `int` got the string "2.5", which is not a whole number; use `number` to keep the fraction',
      expect.stringMatching(/^8:60: template: `now` got the string "-1y", which is not an offset/),
      '10:19: `inputs.usres`: input `usres` is not declared by any trigger (declared: users); did you mean `inputs.users`?',
      expect.stringMatching(/^14:27: `usr.id`: unknown name `usr`; .*; did you mean `user.id`\?$/),
      '14:38: `steps.frist.output`: there is no step `frist`; did you mean `steps.first.output`?',
      expect.stringMatching(/^14:61: `uuidd`: unknown name `uuidd`; .*; did you mean `uuid`\?$/),
    ]);
  });

  it('accepts every helper used as documented', async () => {
    const wf = await workflow(
      'helpers',
      `name: helpers
steps:
  - id: say
    action: core.log
    with:
      message: '<<format_date (now "-1d") "YYYYMMDDTHH">> <<date_add (now) "+2h">> <<number "1.5">> <<int "3">> <<bool "yes">> <<string 5>> <<json (parse_json "[1]")>> <<format_date "2024-05-01" "x">>'
`,
    );
    const result = await ferry(['validate', wf]);
    expect(result.stdout + result.stderr).not.toContain(':');
    expect(result.code).toBe(0);
  });
});
