import { randomUUID } from 'node:crypto';

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
  now: () => new Date().toISOString(),
  uuid: () => randomUUID(),
};

/** Helpers whose arguments may be missing paths: they are how a template says "optional". */
export const lenientHelpers = new Set(['default', 'if', 'unless']);

/** Block and utility helpers Handlebars itself provides. */
export const builtinHelpers = new Set(['if', 'unless', 'each', 'with', 'lookup']);

export function isKnownHelper(name: string): boolean {
  return Object.hasOwn(helpers, name) || builtinHelpers.has(name);
}
