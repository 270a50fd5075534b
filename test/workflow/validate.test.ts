import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { WorkflowIssue } from '../../src/errors.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { validateSource } from '../../src/workflow/validate.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const invalidDir = path.join(root, 'test/fixtures/invalid');
const validDir = path.join(root, 'test/fixtures/valid');
const examplesDir = path.join(root, 'workflows');

interface Expected {
  line: number;
  col: number;
  code: string;
  substring: string;
}

interface Fixture {
  name: string;
  file: string;
  text: string;
  expected: Expected[];
}

const EXPECT_LINE = /^# expect: (\d+):(\d+) (FERRY_[A-Z0-9_]+) (.+)$/;

/** Reads every `NN-name.yaml` of a folder with its `# expect:` header. */
function readFixtures(dir: string): Fixture[] {
  return readdirSync(dir)
    .filter((name) => name.endsWith('.yaml'))
    .sort()
    .map((name) => {
      const file = path.join(dir, name);
      const text = readFileSync(file, 'utf8');
      const header = text.split('\n').filter((line) => line.startsWith('# expect:'));
      const expected = header.map((line) => {
        const match = EXPECT_LINE.exec(line);
        if (!match) throw new Error(`${name}: malformed header line: ${line}`);
        return { line: Number(match[1]), col: Number(match[2]), code: match[3] as string, substring: match[4] as string };
      });
      return { name, file, text, expected };
    });
}

const listYaml = (dir: string): string[] =>
  readdirSync(dir)
    // `*.test.yaml` beside the workflows are `ferry test` files, not workflows.
    .filter((name) => name.endsWith('.yaml') && !name.endsWith('.test.yaml'))
    .sort()
    .map((name) => path.join(dir, name));

const registry = builtinRegistry();
const validate = (text: string, file = 'test.yaml'): ReturnType<typeof validateSource> => validateSource(file, text, registry);
const where = (issue: Pick<WorkflowIssue, 'line' | 'col' | 'code'>): string => `${issue.line}:${issue.col} ${issue.code}`;

/** Throws unless the issues are exactly the expected `line:col code` set, each message holding its substring. */
function assertMatches(fixture: Fixture, issues: WorkflowIssue[]): void {
  expect(issues.map(where).sort(), `${fixture.name}: line:col code of the issues`).toEqual(fixture.expected.map(where).sort());
  for (const e of fixture.expected) {
    const messages = issues.filter((i) => where(i) === where(e)).map((i) => i.message);
    expect(
      messages.some((m) => m.includes(e.substring)),
      `${fixture.name}: an issue at ${where(e)} whose message contains ${JSON.stringify(e.substring)}; got ${JSON.stringify(messages)}`,
    ).toBe(true);
  }
}

const fixtures = readFixtures(invalidDir);

describe('invalid fixtures', () => {
  it('there are at least 45 of them, each with an expectation header and a distinct name', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(45);
    for (const f of fixtures) {
      expect(f.name, 'named NN-short-name.yaml').toMatch(/^\d{2,3}-[a-z0-9-]+\.yaml$/);
      expect(f.expected.length, `${f.name} has # expect: lines`).toBeGreaterThan(0);
      expect(f.text.startsWith('# expect: '), `${f.name} starts with its header`).toBe(true);
    }
    const numbers = fixtures.map((f) => f.name.split('-')[0]);
    expect(new Set(numbers).size).toBe(numbers.length);
  });

  it.each(fixtures.map((f) => [f.name, f] as const))('%s reports exactly the issues named in its header', (_name, fixture) => {
    const { workflow, issues } = validate(fixture.text, fixture.file);
    expect(workflow).toBeUndefined();
    assertMatches(fixture, issues);
    for (const issue of issues) expect(issue.file).toBe(fixture.file);
  });

  it('at least three fixtures hold several independent mistakes, and every one of them is reported', () => {
    const several = fixtures.filter((f) => f.expected.length >= 3);
    expect(several.length).toBeGreaterThanOrEqual(3);
    for (const fixture of several) assertMatches(fixture, validate(fixture.text, fixture.file).issues);
  });
});

describe('valid workflows', () => {
  it('a valid workflow returns no issues and a workflow object', () => {
    const { workflow, issues } = validate(
      [
        'name: greet',
        'triggers:',
        '  - type: manual',
        '    inputs:',
        '      names: { type: array, items: { type: string } }',
        'retry: { attempts: 3 }',
        'timeout: 5s',
        'steps:',
        '  - id: each_name',
        '    loop: { over: <<inputs.names>>, as: who }',
        '    steps:',
        '      - id: hello',
        '        action: core.log',
        '        with: { message: "hello <<who>>", level: info }',
        '  - id: report',
        '    action: core.log',
        '    with: { message: "<<steps.each_name.output.count>> greeted" }',
        '',
      ].join('\n'),
    );
    expect(issues).toEqual([]);
    expect(workflow).toBeDefined();
    expect(workflow?.name).toBe('greet');
    expect(workflow?.timeoutMs).toBe(5000);
    expect(workflow?.retry.attempts).toBe(3);
    expect(workflow?.triggers).toEqual([{ type: 'manual', inputs: { names: { type: 'array', items: { type: 'string' } } } }]);
    expect(workflow?.steps.map((s) => [s.id, s.kind])).toEqual([
      ['each_name', 'loop'],
      ['report', 'action'],
    ]);
    const loop = workflow?.steps[0];
    expect(loop?.kind === 'loop' ? [loop.as, loop.steps.map((s) => s.id)] : undefined).toEqual(['who', ['hello']]);
  });

  it.each(listYaml(examplesDir).map((f) => [path.basename(f), f] as const))('the example workflows/%s is valid', (_name, file) => {
    const { workflow, issues } = validate(readFileSync(file, 'utf8'), file);
    expect(issues).toEqual([]);
    expect(workflow).toBeDefined();
  });

  it('there are at least five valid fixtures', () => {
    expect(listYaml(validDir).length).toBeGreaterThanOrEqual(5);
  });

  it.each(listYaml(validDir).map((f) => [path.basename(f), f] as const))('the valid fixture %s has no issues', (_name, file) => {
    const { workflow, issues } = validate(readFileSync(file, 'utf8'), file);
    expect(issues).toEqual([]);
    expect(workflow).toBeDefined();
  });
});

describe('how issues are reported', () => {
  it('a file with 5 independent errors reports 5', () => {
    const { issues } = validate(
      [
        'name: Bad Name', //                               1: pattern
        'steps:',
        '  - id: first',
        '    action: core.log',
        '    with: { message: hi, level: loud }', //      5: enum
        '  - id: second',
        '    action: http.get', //                         7: unknown action
        '    with: { url: "https://example.com" }',
        '  - id: third',
        '    action: core.log',
        '    timeout: 10', //                             11: duration
        '    with: { message: "<<secrets.TOKEN>>" }', //  12: undeclared secret
        '',
      ].join('\n'),
    );
    expect(issues.map((i) => `${i.line} ${i.code}`)).toEqual([
      '1 FERRY_SCHEMA_PATTERN',
      '5 FERRY_SCHEMA_ENUM',
      '7 FERRY_UNKNOWN_ACTION',
      '11 FERRY_SCHEMA_TYPE',
      '12 FERRY_REF_SECRET',
    ]);
  });

  it('issues come sorted by line, then by column', () => {
    // The semantic checks run after the schema ones: the reference error on line 3 is
    // found last but must come first.
    const { issues } = validate(
      [
        'name: sorted',
        'triggers:',
        '  - { type: webhook, path: /a, secret: "<<secrets.NOPE>>" }',
        'timeout: 1 minute',
        'steps:',
        '  - id: a',
        '    action: core.log',
        '    with: { message: "<<steps.b.output>> <<steps.c.output>>", level: nope }',
        '  - id: b',
        '    action: core.lgo',
        '',
      ].join('\n'),
    );
    expect(issues.length).toBe(6);
    const keys = issues.map((i) => [i.line, i.col]);
    const sorted = [...keys].sort((x, y) => (x[0] as number) - (y[0] as number) || (x[1] as number) - (y[1] as number));
    expect(keys).toEqual(sorted);
    expect(issues[0]?.code).toBe('FERRY_REF_SECRET');
  });

  it('every fixture lists its issues in line and column order', () => {
    for (const fixture of fixtures) {
      const { issues } = validate(fixture.text, fixture.file);
      const positions = issues.map((i) => i.line * 100_000 + i.col);
      expect(positions, fixture.name).toEqual([...positions].sort((a, b) => a - b));
    }
  });
});

describe('positions inside YAML scalars', () => {
  // The template `<<usr.x>>` is always an unknown name; the issue must sit on its `<<`.
  const step = ['name: positions', 'steps:', '  - id: a', '    action: core.log'];
  it.each([
    ['a single-quoted scalar with a doubled quote', ['    with:', "      message: 'it''s <<usr.x>>'"], '6:23'],
    ['a double-quoted scalar with \\u, \\x and \\U escapes', ['    with:', '      message: "\\u00e9\\x41 \\U0001F600 <<usr.x>>"'], '6:39'],
    ['the second line of a double-quoted scalar', ['    with:', '      message: "first line', '        second \\"q\\" <<usr.x>>"'], '7:22'],
    ['a double-quoted scalar after an escaped line break', ['    with:', '      message: "first \\', '        <<usr.x>>"'], '7:9'],
    ['a folded block scalar after a blank line', ['    with:', '      message: >-', '        one', '', '          more <<usr.x>>'], '9:16'],
    ['a literal block scalar with an indentation indicator and a comment', ['    with:', '      message: |2 # note', '          x <<usr.x>>'], '7:13'],
    ['a multi-line double-quoted scalar in a flow mapping', ['    with: { message: "a', '      b <<usr.x>>" }'], '6:9'],
  ])('in %s', (_name, lines, at) => {
    const text = [...step, ...lines, ''].join('\n');
    const { issues } = validate(text);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.code}`)).toEqual([`${at} FERRY_REF_UNKNOWN`]);
  });
});

describe('YAML aliases', () => {
  it('an alias of an anchor defined before it is fine', () => {
    const { issues, workflow } = validate(
      ['name: aliases', 'steps:', '  - id: a', '    action: core.log', '    with: &hello { message: hi }', '  - id: b', '    action: core.log', '    with: *hello', ''].join('\n'),
    );
    expect(issues).toEqual([]);
    expect(workflow?.steps.map((s) => s.id)).toEqual(['a', 'b']);
  });

  it('an alias inside the value it names is one issue, not a crash', () => {
    const { issues } = validate(['name: cycle', 'steps:', '  - id: a', '    action: http.request', '    with: { url: "https://x", json: &loop [1, *loop] }', ''].join('\n'));
    expect(issues.map((i) => `${i.line}:${i.col} ${i.code}`)).toEqual(['5:47 FERRY_YAML_BAD_ALIAS']);
  });

  it('nesting that only aliases make too deep is reported at the alias', () => {
    const text = `name: deep\nx: &a ${'['.repeat(60)}1${']'.repeat(60)}\ny: ${'['.repeat(50)}*a${']'.repeat(50)}\nsteps:\n  - id: a\n    action: core.log\n    with: { message: hi }\n`;
    const { issues } = validate(text);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.code}`)).toEqual(['3:54 FERRY_YAML_TOO_DEEP']);
  });
});

/** A small seeded generator: the "random" inputs are the same on every run. */
function randomBytes(seed: number, length: number): Buffer {
  let state = seed >>> 0;
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
    out[i] = state >>> 24;
  }
  return out;
}

describe('garbage input', () => {
  const garbage: [string, string][] = [
    ['an empty file', ''],
    ['only a comment', '# nothing here\n'],
    ['an empty list', '[]'],
    ['a number', '42'],
    ['a string', 'hello'],
    ['null', '~'],
    ['a 2000-level nested flow list', `${'['.repeat(2000)}${']'.repeat(2000)}`],
    ['a 2000-level nested flow mapping', `${'{a: '.repeat(2000)}1${'}'.repeat(2000)}`],
    // 1000 levels: 2000 indented lines would pass the 1 MiB a workflow file may hold.
    ['a 1000-level nested block mapping', `${Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i)}k:`).join('\n')} 1\n`],
    ['a 1000-level nested block list', `${Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i * 2)}-`).join('\n')} 1\n`],
    ['a NUL byte', '\u0000'],
    ['a workflow with a 2000-level nested `with`', `name: deep\nsteps:\n  - id: a\n    action: core.log\n    with: ${'{m: '.repeat(2000)}1${'}'.repeat(2000)}\n`],
    ...Array.from({ length: 20 }, (_, i): [string, string] => [`random bytes #${i}`, randomBytes(i + 1, 64 + i * 97).toString('latin1')]),
    ...Array.from({ length: 10 }, (_, i): [string, string] => [`random UTF-8 #${i}`, randomBytes(1000 + i, 400).toString('utf8')]),
  ];

  it.each(garbage.filter(([name]) => /\d+-level/.test(name)))('%s gives one issue: nesting is too deep', (_name, text) => {
    const { issues } = validate(text);
    expect(issues.map((i) => i.code)).toEqual(['FERRY_YAML_TOO_DEEP']);
    expect(issues[0]?.message).toMatch(/^nesting is too deep/);
  });

  it.each(garbage)('the validator does not throw on %s; it returns issues', (_name, text) => {
    let result: ReturnType<typeof validateSource> | undefined;
    expect(() => {
      result = validate(text);
    }).not.toThrow();
    expect(result?.workflow).toBeUndefined();
    expect(result?.issues.length).toBeGreaterThan(0);
    for (const issue of result?.issues ?? []) {
      expect(issue.line).toBeGreaterThanOrEqual(1);
      expect(issue.col).toBeGreaterThanOrEqual(1);
      expect(issue.code).toMatch(/^FERRY_[A-Z0-9_]+$/);
      expect(issue.message.length).toBeGreaterThan(0);
    }
  });
});
