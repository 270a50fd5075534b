import { randomUUID } from 'node:crypto';
import { dateAdd, formatDate, now, parseJson, toBool, toInt, toNumber, toText } from './convert.js';

/**
 * The helpers of DESIGN.md §2. Handlebars passes its `options` object as the last argument
 * of every helper call, so variadic helpers drop it first.
 */
type Helper = (...args: unknown[]) => unknown;

const variadic = (args: unknown[]): unknown[] => args.slice(0, -1);

export const helpers: Record<string, Helper> = {
  json: (value, ...rest) => JSON.stringify(value, null, rest.length > 1 ? Number(rest[0]) || 0 : 0),
  default: (value, fallback) => (value === undefined || value === null || value === '' ? fallback : value),
  eq: (a, b) => a === b,
  ne: (a, b) => a !== b,
  and: (...args) => variadic(args).every(Boolean),
  or: (...args) => variadic(args).find(Boolean) ?? false,
  not: (value) => !value,
  length: (value) => {
    if (typeof value === 'string' || Array.isArray(value)) return value.length;
    if (value !== null && typeof value === 'object') return Object.keys(value).length;
    return 0;
  },
  lower: (value) => String(value ?? '').toLowerCase(),
  upper: (value) => String(value ?? '').toUpperCase(),
  now: (...args) => now(variadic(args)[0]),
  uuid: () => randomUUID(),
  number: (value) => toNumber(value),
  int: (value) => toInt(value),
  bool: (value) => toBool(value),
  string: (value) => toText(value),
  parse_json: (value) => parseJson(value),
  date_add: (value, offset) => dateAdd(value, offset),
  format_date: (value, format) => formatDate(value, format),
};

/** Helpers whose arguments may be missing paths: they are how a template says "optional". */
export const lenientHelpers = new Set(['default', 'if', 'unless']);

/** Block and utility helpers Handlebars itself provides. */
export const builtinHelpers = new Set(['if', 'unless', 'each', 'with', 'lookup']);

export function isKnownHelper(name: string): boolean {
  return Object.hasOwn(helpers, name) || builtinHelpers.has(name);
}

/**
 * How many arguments each helper takes, `[least, most]`, and a call to show: Handlebars
 * calls a helper with whatever it is given (`<<json>>` alone would print the whole run
 * context), so validation checks the count.
 */
export const helperArity: Record<string, { args: readonly [number, number]; example: string; /** For the workflow reference. */ does: string }> = {
  json: { args: [1, 2], example: 'json user.traits', does: 'The value as JSON text; a second argument indents by that many spaces.' },
  default: { args: [2, 2], example: 'default user.phone "n/a"', does: 'The value, or the fallback when it is missing, null or empty; missing paths are allowed inside it. `null` as the fallback leaves an optional action input out.' },
  eq: { args: [2, 2], example: 'eq user.plan "pro"', does: 'True when both are the same value.' },
  ne: { args: [2, 2], example: 'ne user.plan "free"', does: 'True when they differ.' },
  and: { args: [2, Infinity], example: 'and user.email user.consent', does: 'True when every argument is truthy.' },
  or: { args: [2, Infinity], example: 'or user.email user.phone', does: 'The first truthy argument, else false.' },
  not: { args: [1, 1], example: 'not user.deleted', does: 'True when the value is falsy.' },
  length: { args: [1, 1], example: 'length inputs.users', does: 'Characters of a string, items of a list, keys of a mapping.' },
  lower: { args: [1, 1], example: 'lower user.email', does: 'The text in lower case.' },
  upper: { args: [1, 1], example: 'upper user.country', does: 'The text in upper case.' },
  now: { args: [0, 1], example: 'now "-1d"', does: 'The current time as ISO text, moved by an optional offset: `"-1d"`, `"+2h"`, `"-1d12h"` (units ms, s, m, h, d, w).' },
  uuid: { args: [0, 0], example: 'uuid', does: 'A random UUID.' },
  number: { args: [1, 1], example: 'number row.amount', does: 'Text as a number (`"12.50"` → 12.5); an empty cell gives null; other text is an error quoting it.' },
  int: { args: [1, 1], example: 'int row.quantity', does: 'Text as a whole number (`"3"` → 3); `"2.5"` is an error; an empty cell gives null.' },
  bool: { args: [1, 1], example: 'bool row.paying', does: '`true/false`, `yes/no`, `y/n`, `on/off`, `1/0` (any case) as true or false; an empty cell gives null.' },
  string: { args: [1, 1], example: 'string user.id', does: 'The value as text (numbers as digits, mappings and lists as JSON); null stays null.' },
  parse_json: { args: [1, 1], example: 'parse_json row.traits', does: 'JSON text as its value (a mapping, a list…); a value that is already data is kept; an empty cell gives null.' },
  date_add: { args: [2, 2], example: 'date_add row.signed_up "-1h"', does: 'A time moved by an offset, as ISO text. A time is ISO text (no zone means UTC), `YYYYMMDDTHH`, or epoch milliseconds.' },
  format_date: { args: [2, 2], example: 'format_date (now "-1d") "YYYYMMDDTHH"', does: 'A time as text in UTC: `YYYY MM DD HH mm ss SSS` are replaced, `[text]` and other characters kept; `"x"` gives epoch milliseconds and `"X"` epoch seconds, as numbers.' },
  lookup: { args: [2, 2], example: 'lookup user.traits "plan"', does: 'The key of a mapping (or the index of a list) named by the second argument.' },
  if: { args: [1, 1], example: '#if user.email', does: 'Renders the block when the value is truthy; missing paths are allowed.' },
  unless: { args: [1, 1], example: '#unless user.email', does: 'Renders the block when the value is falsy; missing paths are allowed.' },
  each: { args: [1, 1], example: '#each inputs.users', does: 'Renders the block once per item, with `this` the item.' },
  with: { args: [1, 1], example: '#with user.traits', does: 'Renders the block with `this` the value.' },
};

/** "helper `json` takes 1 or 2 arguments, got 0: …", or undefined when `count` fits. */
export function arityProblem(name: string, count: number): string | undefined {
  const arity = Object.hasOwn(helperArity, name) ? helperArity[name] : undefined;
  if (!arity) return undefined;
  const [least, most] = arity.args;
  if (count >= least && count <= most) return undefined;
  const plural = (n: number): string => (n === 1 ? 'argument' : 'arguments');
  const takes =
    most === 0 ? 'no arguments'
    : least === most ? `${least} ${plural(least)}`
    : most === Infinity ? `at least ${least} ${plural(least)}`
    : `${least} or ${most} arguments`;
  return `helper \`${name}\` takes ${takes}, got ${count}: write \`<<${arity.example}>>\``;
}
