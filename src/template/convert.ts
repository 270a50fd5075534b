import { TemplateError } from '../errors.js';

/**
 * The helpers for data that arrives as text (a CSV cell, a query string, an `--input`):
 * `number`, `int`, `bool`, `string`, `parse_json`, and the time helpers `now`, `date_add`,
 * `format_date`. Each takes the value as it comes and either converts it or throws a
 * FERRY_TEMPLATE_VALUE error that quotes the value; the render wrapper adds the template,
 * the run adds the step and the input. An empty cell (`""`, null) converts to null, which
 * leaves an optional action input out of the call.
 */

/** A helper that cannot convert its value: the message names the helper and quotes the value. */
export function valueError(helper: string, value: unknown, what: string, hint = ''): TemplateError {
  return new TemplateError('FERRY_TEMPLATE_VALUE', `\`${helper}\` got ${describe(value)}, which is not ${what}${hint ? `; ${hint}` : ''}`, '');
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing (undefined)';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

const empty = (value: unknown): boolean => value === null || value === undefined || (typeof value === 'string' && value.trim() === '');

export function toNumber(value: unknown, helper = 'number'): number | null {
  if (empty(value)) return null;
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  // Number('') and Number(' ') are 0 and Number('0x1f') is 31: only decimal text is a number here.
  if (typeof value === 'string' && /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i.test(value)) {
    const n = Number(value);
    if (Number.isFinite(n)) return n;
  }
  throw valueError(helper, value, 'a number', 'write digits with an optional `.` and sign, like `-12.5`');
}

export function toInt(value: unknown): number | null {
  const n = toNumber(value, 'int');
  if (n !== null && !Number.isInteger(n)) throw valueError('int', value, 'a whole number', 'use `number` to keep the fraction');
  return n;
}

const TRUE = new Set(['true', 'yes', 'y', 'on', '1']);
const FALSE = new Set(['false', 'no', 'n', 'off', '0']);

export function toBool(value: unknown): boolean | null {
  if (empty(value)) return null;
  if (typeof value === 'boolean') return value;
  if (value === 1 || value === 0) return value === 1;
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    if (TRUE.has(word)) return true;
    if (FALSE.has(word)) return false;
  }
  throw valueError('bool', value, 'true or false', 'write true/false, yes/no, on/off or 1/0');
}

export function toText(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function parseJson(value: unknown): unknown {
  if (empty(value)) return null;
  // A value that is already data (a JSON body's field) needs no parsing.
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value) as unknown;
  } catch (error) {
    throw valueError('parse_json', value, 'JSON', `the parser says: ${(error as Error).message}`);
  }
}

// ISO dates and times; a time without a zone is UTC, so that a run gives the same result on every machine.
const ISO = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)(Z|[+-]\d{2}:?\d{2})?)?$/i;
// Amplitude's export format, `YYYYMMDDTHH`, read as UTC.
const HOURLY = /^(\d{4})(\d{2})(\d{2})T(\d{2})$/;

/** A time: a Date, epoch milliseconds (a number or digits), an ISO date or time, or `YYYYMMDDTHH`. */
export function toDate(value: unknown, helper: string): Date {
  let ms = Number.NaN;
  if (value instanceof Date) ms = value.getTime();
  else if (typeof value === 'number') ms = value;
  else if (typeof value === 'string') {
    const text = value.trim();
    const iso = ISO.exec(text);
    const hourly = HOURLY.exec(text);
    if (iso) ms = Date.parse(iso[2] === undefined ? `${iso[1]}T00:00:00Z` : `${iso[1]}T${iso[2]}${iso[3] ?? 'Z'}`);
    else if (hourly) ms = Date.parse(`${hourly[1]}-${hourly[2]}-${hourly[3]}T${hourly[4]}:00:00Z`);
    else if (/^\d{9,}$/.test(text)) ms = Number(text);
  }
  const date = new Date(ms);
  if (Number.isNaN(date.getTime())) throw valueError(helper, value, 'a time', 'write an ISO time (`2024-05-01T10:00:00Z`, `2024-05-01`), `YYYYMMDDTHH` or epoch milliseconds');
  return date;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const OFFSET = /^([+-]?)((?:\d+(?:ms|s|m|h|d|w))+)$/;

/** `-1d`, `+2h`, `90m`, `-1d12h`: milliseconds to add. Months and years vary in length and are not offered. */
export function parseOffset(value: unknown, helper: string): number {
  const match = typeof value === 'string' ? OFFSET.exec(value.trim()) : null;
  if (!match) throw valueError(helper, value, 'an offset', 'write a signed number of ms, s, m, h, d or w, like `"-1d"`, `"+2h"` or `"-1d12h"`');
  let ms = 0;
  for (const [, n, unit] of (match[2] as string).matchAll(/(\d+)(ms|s|m|h|d|w)/g)) ms += Number(n) * (UNIT_MS[unit as string] as number);
  return match[1] === '-' ? -ms : ms;
}

export function now(offset?: unknown): string {
  const ms = offset === undefined ? 0 : parseOffset(offset, 'now');
  return new Date(Date.now() + ms).toISOString();
}

export function dateAdd(value: unknown, offset: unknown): string {
  const date = toDate(value, 'date_add');
  return new Date(date.getTime() + parseOffset(offset, 'date_add')).toISOString();
}

const TOKEN = /\[([^\]]*)\]|YYYY|MM|DD|HH|mm|ss|SSS/g;

/**
 * A time in UTC, as `format`: `YYYY MM DD HH mm ss SSS`, text in `[brackets]` as it is,
 * other characters as they are; the whole format `x` is epoch milliseconds and `X` epoch
 * seconds, as numbers.
 */
export function formatDate(value: unknown, format: unknown): string | number {
  if (typeof format !== 'string' || format === '') throw valueError('format_date', format, 'a format', 'write one like `"YYYY-MM-DD"`, `"YYYYMMDDTHH"` or `"x"` (epoch ms)');
  const date = toDate(value, 'format_date');
  if (format === 'x') return date.getTime();
  if (format === 'X') return Math.floor(date.getTime() / 1000);
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  return format.replace(TOKEN, (token, literal: string | undefined) => {
    if (literal !== undefined) return literal;
    switch (token) {
      case 'YYYY': return pad(date.getUTCFullYear(), 4);
      case 'MM': return pad(date.getUTCMonth() + 1);
      case 'DD': return pad(date.getUTCDate());
      case 'HH': return pad(date.getUTCHours());
      case 'mm': return pad(date.getUTCMinutes());
      case 'ss': return pad(date.getUTCSeconds());
      default: return pad(date.getUTCMilliseconds(), 3);
    }
  });
}

/**
 * For `ferry validate`: per helper, a check of each argument written as a literal (`number
 * "abc"`, `now "-1x"`), so that a mistake in the file is found before any run.
 */
const literalArgumentChecks: Record<string, readonly (((value: unknown) => unknown) | undefined)[]> = {
  number: [toNumber],
  int: [toInt],
  bool: [toBool],
  parse_json: [parseJson],
  now: [(v) => parseOffset(v, 'now')],
  date_add: [(v) => toDate(v, 'date_add'), (v) => parseOffset(v, 'date_add')],
  format_date: [(v) => toDate(v, 'format_date'), (v) => formatDate(0, v)],
};

const LITERALS: Record<string, (node: { value?: unknown }) => unknown> = {
  StringLiteral: (n) => n.value,
  NumberLiteral: (n) => n.value,
  BooleanLiteral: (n) => n.value,
  NullLiteral: () => null,
  UndefinedLiteral: () => undefined,
};

/** The error helper `name` gives for its argument `index` when it is written as a literal (a template AST node), if any. */
export function literalArgumentProblem(name: string, index: number, node: { type: string; value?: unknown }): TemplateError | undefined {
  const check = Object.hasOwn(literalArgumentChecks, name) ? literalArgumentChecks[name]?.[index] : undefined;
  const literal = Object.hasOwn(LITERALS, node.type) ? LITERALS[node.type] : undefined;
  if (!check || !literal) return undefined;
  try {
    check(literal(node));
    return undefined;
  } catch (error) {
    if (error instanceof TemplateError) return error;
    throw error;
  }
}
