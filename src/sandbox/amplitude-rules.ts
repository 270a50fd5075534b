/** Amplitude's field rules (PROVIDERS.md), shared by the Identify API and the event APIs. */
import { isObject } from './server.js';

const IDENTIFY_KEYS = new Set([
  'user_id', 'device_id', 'user_properties', 'groups', 'app_version', 'platform', 'os_name', 'os_version', 'device_brand',
  'device_manufacturer', 'device_model', 'carrier', 'country', 'region', 'city', 'dma', 'language', 'paying', 'start_version',
]);

// The documented event fields, plus everything the official SDKs put on an event: whatever they send is valid.
const EVENT_KEYS = new Set([
  'user_id', 'device_id', 'event_type', 'time', 'event_properties', 'user_properties', 'groups', 'group_properties', 'insert_id',
  'session_id', 'app_version', 'version_name', 'platform', 'os_name', 'os_version', 'device_brand', 'device_manufacturer',
  'device_model', 'carrier', 'country', 'region', 'city', 'dma', 'language', 'ip', 'price', 'quantity', 'revenue', 'productId',
  'revenueType', 'location_lat', 'location_lng', 'idfa', 'idfv', 'adid', 'android_id', 'uuid', 'event_id', 'library', 'currency',
  'receipt', 'receiptSig', 'android_app_set_id', 'plan', 'ingestion_metadata', 'partner_id', 'user_agent', 'extra',
]);

/*
 * Field types. Amplitude documents `time`, `session_id` and `event_id` as longs and `quantity` as an
 * integer; a fraction there is refused (the real API refuses or truncates it: strict side). `price`,
 * `revenue` and the coordinates are floats. The documented string fields must be strings: Amplitude
 * documents them as strings and is silent on a number there (it refuses or mangles it), so the
 * strict side is to refuse. `library` is the SDK's string (`amplitude-node-ts/1.5.73`).
 */
const INTEGER_FIELDS = new Set(['time', 'session_id', 'event_id', 'quantity']);
const FLOAT_FIELDS = new Set(['price', 'revenue', 'location_lat', 'location_lng']);
const OBJECT_FIELDS = new Set(['event_properties', 'groups', 'group_properties', 'plan', 'ingestion_metadata', 'extra']);
const STRING_FIELDS = new Set([
  'app_version', 'version_name', 'platform', 'os_name', 'os_version', 'device_brand', 'device_manufacturer', 'device_model', 'carrier',
  'country', 'region', 'city', 'dma', 'language', 'ip', 'productId', 'revenueType', 'idfa', 'idfv', 'adid', 'android_id', 'uuid',
  'library', 'currency', 'receipt', 'receiptSig', 'android_app_set_id', 'partner_id', 'user_agent', 'start_version',
]);

/** The Identify API's operators (PROVIDERS.md): camelCase on the wire, `$set_once` is not one of them. */
const IDENTIFY_OPERATORS = new Set(['$set', '$setOnce', '$add', '$append', '$prepend', '$unset', '$preInsert', '$postInsert', '$remove']);
/** `$identify` events may also carry the SDK's `$clearAll: "-"`. */
const EVENT_OPERATORS = new Set([...IDENTIFY_OPERATORS, '$clearAll']);

const BLOCKED_IDS = new Set(['anonymous', 'null', 'none', 'undefined', '0', '-1', 'nil', 'lmy47d', 'unknown', '00000000-0000-0000-0000-000000000000']);

export const MAX_DEPTH = 40;

/** Levels of objects and arrays: `{a: 1}` is 1, `{a: {b: 1}}` is 2. Stops counting past the limit. */
function depth(value: unknown, limit: number): number {
  if (value === null || typeof value !== 'object') return 0;
  if (limit <= 0) return 1;
  let max = 0;
  for (const v of Object.values(value)) {
    const d = depth(v, limit - 1);
    if (d > max) max = d;
  }
  return max + 1;
}

/** Plain keys (each a `$set`) or only operators; mixing is refused, as is an unknown operator. */
export function checkUserProperties(props: unknown, allowClearAll: boolean): string | undefined {
  if (!isObject(props)) return 'must be an object';
  if (depth(props, MAX_DEPTH + 1) > MAX_DEPTH) return `nests deeper than ${MAX_DEPTH} levels`;
  const keys = Object.keys(props);
  const ops = keys.filter((k) => k.startsWith('$'));
  if (ops.length === 0) return undefined;
  if (ops.length < keys.length) {
    return `mixes operators (${ops.join(', ')}) with plain keys (${keys.filter((k) => !k.startsWith('$')).join(', ')})`;
  }
  const known = allowClearAll ? EVENT_OPERATORS : IDENTIFY_OPERATORS;
  for (const op of ops) {
    if (!known.has(op)) {
      const camel = op.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      return `unknown operator ${op}${camel !== op && known.has(camel) ? ` (operators are camelCase: ${camel})` : ''}`;
    }
    if (op !== '$clearAll' && !isObject(props[op])) return `operator ${op} takes an object`;
  }
  // `$add` increments by a number (Amplitude's docs); a numeric string is not one (undocumented: strict side).
  const add = props.$add;
  if (isObject(add)) {
    const bad = Object.keys(add).find((k) => typeof add[k] !== 'number' || !Number.isFinite(add[k]));
    if (bad !== undefined) return `operator $add takes numbers (${bad} is ${JSON.stringify(add[bad])})`;
  }
  return undefined;
}

export interface IdentificationProblem {
  /** The offending field; undefined when the identification itself is not an object. */
  field: string | undefined;
  reason: string;
  missing: boolean;
}

/** One identification's first problem; undefined when it is valid. */
export function checkIdentification(id: unknown): IdentificationProblem | undefined {
  const invalid = (field: string | undefined, reason: string): IdentificationProblem => ({ field, reason, missing: false });
  if (!isObject(id)) return invalid(undefined, 'must be a JSON object');
  const who = (v: unknown): boolean => typeof v === 'string' && v !== '';
  if (!who(id.user_id) && !who(id.device_id)) return { field: 'user_id', reason: 'user_id or device_id is required', missing: true };
  for (const key of Object.keys(id)) {
    if (!IDENTIFY_KEYS.has(key)) return invalid(key, 'unknown field');
    const v = id[key];
    // null stands for absent, as on events.
    if (v === null) continue;
    if (key === 'user_properties') {
      const problem = checkUserProperties(v, false);
      if (problem) return invalid(key, problem);
    } else if (key === 'groups') {
      if (!isObject(v)) return invalid(key, 'must be an object');
    } else if (key === 'paying') {
      if (typeof v !== 'string' && typeof v !== 'boolean') return invalid(key, 'must be a string or a boolean');
    } else if (typeof v !== 'string') {
      // user_id, device_id and the device and location fields.
      return invalid(key, 'must be a string');
    }
  }
  return undefined;
}

export interface EventProblems {
  invalid: Record<string, number[]>;
  missing: Record<string, number[]>;
}

const note = (into: Record<string, number[]>, field: string, index: number): void => {
  (into[field] ??= []).push(index);
};

/** A blocked value is refused whatever its case and surrounding spaces (`"null "`): undocumented, strict side. */
function badId(value: unknown, minLength: number): boolean {
  if (typeof value !== 'string') return true;
  return value.length < minLength || BLOCKED_IDS.has(value.trim().toLowerCase());
}

/** Adds one event's problems, by field with the event's index, as Amplitude's 400 lists them. */
export function checkEvent(event: unknown, index: number, minIdLength: number, problems: EventProblems): void {
  if (!isObject(event)) return note(problems.invalid, 'event', index);
  if (event.event_type === undefined || event.event_type === null) note(problems.missing, 'event_type', index);
  else if (typeof event.event_type !== 'string' || event.event_type === '') note(problems.invalid, 'event_type', index);
  const hasUser = event.user_id !== undefined && event.user_id !== null;
  const hasDevice = event.device_id !== undefined && event.device_id !== null;
  // Amplitude names no single field when both ids are absent; `user_id` is the one ferry always sets.
  if (!hasUser && !hasDevice) note(problems.missing, 'user_id', index);
  if (hasUser && badId(event.user_id, minIdLength)) note(problems.invalid, 'user_id', index);
  if (hasDevice && badId(event.device_id, minIdLength)) note(problems.invalid, 'device_id', index);
  for (const key of Object.keys(event)) {
    const v = event[key];
    if (!EVENT_KEYS.has(key)) note(problems.invalid, key, index);
    else if (v === undefined || v === null || key === 'user_id' || key === 'device_id' || key === 'event_type') continue;
    // `time` is ms since epoch: an ISO string is refused, which is why ferry converts it.
    else if (INTEGER_FIELDS.has(key) && !Number.isSafeInteger(v)) note(problems.invalid, key, index);
    else if (FLOAT_FIELDS.has(key) && (typeof v !== 'number' || !Number.isFinite(v))) note(problems.invalid, key, index);
    else if (STRING_FIELDS.has(key) && typeof v !== 'string') note(problems.invalid, key, index);
    else if (OBJECT_FIELDS.has(key) && !isObject(v)) note(problems.invalid, key, index);
    else if (key === 'insert_id' && (typeof v !== 'string' || v === '')) note(problems.invalid, key, index);
    else if (key === 'user_properties' && checkUserProperties(v, true) !== undefined) note(problems.invalid, key, index);
  }
}

/** Minimum id length from `options`, or a reason the options are refused. */
export function minIdLengthOf(options: unknown): number | string {
  if (options === undefined || options === null) return 5;
  if (!isObject(options)) return 'options must be an object';
  for (const key of Object.keys(options)) if (key !== 'min_id_length') return `unknown option ${key}`;
  const n = options.min_id_length;
  if (n === undefined) return 5;
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 ? n : 'options.min_id_length must be a positive integer';
}

/** Amplitude cuts strings over 1024 characters; a copy is made only when something is cut. */
export function cutLongStrings<T>(value: T): T {
  if (typeof value === 'string') return (value.length > 1024 ? value.slice(0, 1024) : value) as T;
  if (value === null || typeof value !== 'object') return value;
  let copy: Record<string, unknown> | unknown[] | undefined;
  for (const [k, v] of Object.entries(value)) {
    const cut = cutLongStrings(v);
    if (cut !== v) {
      copy ??= Array.isArray(value) ? [...(value as unknown[])] : { ...(value as Record<string, unknown>) };
      (copy as Record<string, unknown>)[k] = cut;
    }
  }
  return (copy ?? value) as T;
}

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
const same = (a: unknown, b: unknown): boolean => a === b || JSON.stringify(a) === JSON.stringify(b);

/** Applies user_properties (plain keys, or operators in the order given) to a user's properties, in place. */
export function applyUserProperties(user: Record<string, unknown>, props: unknown): void {
  if (!isObject(props)) return;
  const keys = Object.keys(props);
  if (!keys.some((k) => k.startsWith('$'))) {
    Object.assign(user, props);
    return;
  }
  for (const op of keys) {
    const arg = props[op];
    if (op === '$clearAll') {
      for (const k of Object.keys(user)) delete user[k];
      continue;
    }
    if (!isObject(arg)) continue;
    for (const [k, v] of Object.entries(arg)) {
      const cur = user[k];
      switch (op) {
        case '$set': user[k] = v; break;
        case '$setOnce': if (!(k in user)) user[k] = v; break;
        case '$add': user[k] = (typeof cur === 'number' ? cur : Number(cur ?? 0) || 0) + Number(v); break;
        case '$append': user[k] = [...list(cur), ...list(v)]; break;
        case '$prepend': user[k] = [...list(v), ...list(cur)]; break;
        case '$unset': delete user[k]; break;
        // Insert only what is not there yet, as Amplitude documents for $preInsert/$postInsert.
        case '$preInsert': user[k] = [...list(v).filter((x) => !list(cur).some((y) => same(x, y))), ...list(cur)]; break;
        case '$postInsert': user[k] = [...list(cur), ...list(v).filter((x) => !list(cur).some((y) => same(x, y)))]; break;
        case '$remove': user[k] = list(cur).filter((x) => !list(v).some((y) => same(x, y))); break;
      }
    }
  }
}
