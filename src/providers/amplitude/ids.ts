import { ActionInputError } from '../../errors.js';

/** Values Amplitude rejects as user or device ids (PROVIDERS.md), compared case-insensitively. */
const BLOCKED_IDS = new Set(['anonymous', 'null', 'none', 'undefined', '0', '-1', 'nil', 'lmy47d', 'unknown', '00000000-0000-0000-0000-000000000000']);

export const DEFAULT_MIN_ID_LENGTH = 5;

/**
 * Checks the user_id/device_id given, before sending, so a bad id is an input error, not a
 * provider 400. (That one of them is given is the input schema's `anyOf`.)
 */
export function checkIds(input: { user_id?: string | undefined; device_id?: string | undefined }, minIdLength = DEFAULT_MIN_ID_LENGTH): void {
  for (const field of ['user_id', 'device_id'] as const) {
    const value = input[field];
    if (value === undefined) continue;
    if (BLOCKED_IDS.has(value.trim().toLowerCase())) {
      throw new ActionInputError(`\`${field}\` ${JSON.stringify(value)} is a value Amplitude rejects as an id (${[...BLOCKED_IDS].join(', ')})`, field);
    }
    if (value.length < minIdLength) {
      throw new ActionInputError(`\`${field}\` ${JSON.stringify(value)} is shorter than ${minIdLength} characters; Amplitude rejects it (set \`min_id_length\` to allow shorter ids)`, field);
    }
  }
}

/** `time` as ms since epoch: ISO strings are converted (Amplitude answers 400 to them). */
export function toMillis(value: string | number, field = 'time'): number {
  if (typeof value === 'number') return value;
  if (/^\d+$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new ActionInputError(`\`${field}\` ${JSON.stringify(value)} is neither an ISO-8601 time nor milliseconds since epoch`, field);
  return ms;
}

export const idSchema = { type: 'string', minLength: 1, maxLength: 1024 };
