import { describe, expect, it } from 'vitest';
import { TemplateError } from '../../src/errors.js';
import { compileTemplate, inspectTemplate } from '../../src/template/compile.js';

const row = {
  amount: '12.50',
  qty: '3',
  half: '2.5',
  paying: 'Yes',
  off: '0',
  empty: '',
  props: '{"plan":"pro","seats":2}',
  id: 42,
  signed_up: '2024-05-01 10:30:00',
  hourly: '20240501T10',
  epoch: '1714559400000',
  zoned: '2024-05-01T12:30:00+02:00',
};
const render = (source: string, context: Record<string, unknown> = { row }): unknown => compileTemplate(source).render(context);

/** The error a render throws, for its code and message. */
function renderError(source: string, context: Record<string, unknown> = { row }): TemplateError {
  try {
    render(source, context);
  } catch (error) {
    if (error instanceof TemplateError) return error;
    throw error;
  }
  throw new Error(`${source} rendered without an error`);
}

describe('helpers for data that arrives as text', () => {
  it.each<[string, unknown]>([
    ['<<number row.amount>>', 12.5],
    ['<<number row.id>>', 42],
    ['<<number " -3e2 ">>', -300],
    ['<<int row.qty>>', 3],
    ['<<int "12.0">>', 12],
    ['<<bool row.paying>>', true],
    ['<<bool row.off>>', false],
    ['<<bool "ON">>', true],
    ['<<string row.id>>', '42'],
    ['<<string row.amount>>', '12.50'],
    ['<<parse_json row.props>>', { plan: 'pro', seats: 2 }],
    ['<<parse_json "[1,2]">>', [1, 2]],
    // An empty cell is no value: null, which leaves an optional action input out.
    ['<<number row.empty>>', null],
    ['<<int row.empty>>', null],
    ['<<bool row.empty>>', null],
    ['<<parse_json row.empty>>', null],
    ['total <<number row.amount>>', 'total 12.5'],
  ])('%s renders to %j', (source, expected) => {
    expect(render(source)).toEqual(expected);
  });

  it.each<[string, string]>([
    ['<<number "abc">>', '`number` got the string "abc", which is not a number'],
    ['<<number row.paying>>', '`number` got the string "Yes", which is not a number'],
    ['<<number "0x1f">>', '`number` got the string "0x1f", which is not a number'],
    ['<<int row.half>>', '`int` got the string "2.5", which is not a whole number; use `number` to keep the fraction'],
    ['<<bool "maybe">>', '`bool` got the string "maybe", which is not true or false'],
    ['<<parse_json "{plan">>', '`parse_json` got the string "{plan", which is not JSON; the parser says:'],
    ['<<date_add "yesterday" "-1d">>', '`date_add` got the string "yesterday", which is not a time'],
    ['<<date_add row.signed_up "-1y">>', '`date_add` got the string "-1y", which is not an offset'],
    ['<<now "1 day">>', '`now` got the string "1 day", which is not an offset'],
  ])('%s fails with FERRY_TEMPLATE_VALUE quoting the value', (source, message) => {
    const error = renderError(source, { row: { ...row, half: '2.5' } });
    expect(error.code).toBe('FERRY_TEMPLATE_VALUE');
    expect(error.message).toContain(message);
    expect(error.template).toBe(source);
  });
});

describe('times', () => {
  it.each<[string, unknown]>([
    ['<<format_date row.signed_up "YYYYMMDDTHH">>', '20240501T10'],
    ['<<format_date row.signed_up "YYYY-MM-DD HH:mm:ss.SSS">>', '2024-05-01 10:30:00.000'],
    ['<<format_date row.hourly "YYYY-MM-DD[T]HH">>', '2024-05-01T10'],
    ['<<format_date row.epoch "YYYY-MM-DDTHH:mm">>', '2024-05-01T10:30'],
    ['<<format_date row.zoned "HH:mm">>', '10:30'],
    ['<<format_date row.signed_up "x">>', 1714559400000],
    ['<<format_date row.signed_up "X">>', 1714559400],
    ['<<date_add row.signed_up "-1h">>', '2024-05-01T09:30:00.000Z'],
    ['<<date_add row.signed_up "+1d12h">>', '2024-05-02T22:30:00.000Z'],
    ['<<date_add "2024-05-01" "90m">>', '2024-05-01T01:30:00.000Z'],
    ['<<format_date (date_add row.hourly "-1w") "YYYYMMDDTHH">>', '20240424T10'],
  ])('%s renders to %j (times without a zone are UTC)', (source, expected) => {
    expect(render(source)).toEqual(expected);
  });

  it('`now` takes an offset, so that yesterday\'s hour can be written as Amplitude wants it', () => {
    const hour = (ms: number): string => new Date(ms).toISOString().slice(0, 13).replace(/-/g, '');
    const before = Date.now() - 86_400_000;
    const rendered = render('<<format_date (now "-1d") "YYYYMMDDTHH">>');
    const after = Date.now() - 86_400_000;
    expect([hour(before), hour(after)]).toContain(rendered);
    const plain = Date.parse(String(render('<<now>>')));
    const ahead = Date.parse(String(render('<<now "+2h">>')));
    expect(ahead - plain).toBeGreaterThanOrEqual(2 * 3_600_000);
    expect(ahead - plain).toBeLessThan(2 * 3_600_000 + 60_000);
  });
});

describe('mistakes found before a run', () => {
  it.each<[string, string, string]>([
    ['<<number "abc">>', 'FERRY_TEMPLATE_VALUE', '`number` got the string "abc", which is not a number'],
    ['<<format_date (now "-1q") "YYYY">>', 'FERRY_TEMPLATE_VALUE', '`now` got the string "-1q", which is not an offset'],
    ['<<date_add row.t "tomorrow">>', 'FERRY_TEMPLATE_VALUE', '`date_add` got the string "tomorrow", which is not an offset'],
    ['<<numbr row.amount>>', 'FERRY_TEMPLATE_SYNTAX', 'unknown helper `numbr`; did you mean `number`?'],
    ['<<format_dat row.t "YYYY">>', 'FERRY_TEMPLATE_SYNTAX', 'unknown helper `format_dat`; did you mean `format_date`?'],
    ['<<date_add row.t>>', 'FERRY_TEMPLATE_ARITY', 'helper `date_add` takes 2 arguments, got 1'],
    ['<<now "-1d" "+1h">>', 'FERRY_TEMPLATE_ARITY', 'helper `now` takes 0 or 1 arguments, got 2'],
  ])('%s: %s', (source, code, message) => {
    const { errors } = inspectTemplate(source);
    expect(errors.map((e) => [e.code, e.message])).toEqual([[code, expect.stringContaining(message)]]);
  });

  it('leaves arguments read from data to the run', () => {
    expect(inspectTemplate('<<number row.amount>> <<date_add row.t row.offset>>').errors).toEqual([]);
  });
});

describe('a path the data does not have', () => {
  const context = { user: { email: 'a@b.c', traits: { plan: 'pro' } }, items: [{ name: 'x' }] };
  it.each<[string, string]>([
    ['<<user.emial>>', 'did you mean `user.email`?'],
    ['hi <<user.traits.plna>>', 'did you mean `user.traits.plan`?'],
    ['<<lower user.emial>>', 'did you mean `user.email`?'],
    ['<<usr.email>>', 'did you mean `user.email`?'],
    ['<<#each items>><<nmae>><</each>>', 'did you mean `name`?'],
  ])('%s suggests the nearest path the data has', (source, suggestion) => {
    const error = renderError(source, context);
    expect(error.code).toBe('FERRY_TEMPLATE_MISSING_PATH');
    expect(error.message).toContain(suggestion);
  });

  it('suggests nothing when no name is near', () => {
    expect(renderError('<<user.zzzzzzzz>>', context).message).not.toContain('did you mean');
  });
});
