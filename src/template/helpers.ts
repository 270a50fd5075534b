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
export const helperArity: Record<string, { args: readonly [number, number]; example: string }> = {
  json: { args: [1, 2], example: 'json user.traits' },
  default: { args: [2, 2], example: 'default user.phone "n/a"' },
  eq: { args: [2, 2], example: 'eq user.plan "pro"' },
  ne: { args: [2, 2], example: 'ne user.plan "free"' },
  and: { args: [2, Infinity], example: 'and user.email user.consent' },
  or: { args: [2, Infinity], example: 'or user.email user.phone' },
  not: { args: [1, 1], example: 'not user.deleted' },
  length: { args: [1, 1], example: 'length inputs.users' },
  lower: { args: [1, 1], example: 'lower user.email' },
  upper: { args: [1, 1], example: 'upper user.country' },
  now: { args: [0, 1], example: 'now "-1d"' },
  uuid: { args: [0, 0], example: 'uuid' },
  number: { args: [1, 1], example: 'number row.amount' },
  int: { args: [1, 1], example: 'int row.quantity' },
  bool: { args: [1, 1], example: 'bool row.paying' },
  string: { args: [1, 1], example: 'string user.id' },
  parse_json: { args: [1, 1], example: 'parse_json row.traits' },
  date_add: { args: [2, 2], example: 'date_add row.signed_up "-1h"' },
  format_date: { args: [2, 2], example: 'format_date (now "-1d") "YYYYMMDDTHH"' },
  lookup: { args: [2, 2], example: 'lookup user.traits "plan"' },
  if: { args: [1, 1], example: '#if user.email' },
  unless: { args: [1, 1], example: '#unless user.email' },
  each: { args: [1, 1], example: '#each inputs.users' },
  with: { args: [1, 1], example: '#with user.traits' },
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
