/** Amplitude's field rules (PROVIDERS.md), shared by the Identify and event endpoints. */

const IDENTIFY_KEYS = new Set(['user_id', 'device_id', 'user_properties', 'groups', 'app_version', 'platform', 'os_name', 'os_version', 'device_brand', 'device_manufacturer', 'device_model', 'carrier', 'country', 'region', 'city', 'dma', 'language', 'paying', 'start_version']);

// The documented event fields plus what the official Node SDK sends: whatever it sends is valid.
const EVENT_KEYS = new Set([
  ...['user_id', 'device_id', 'event_type', 'time', 'event_properties', 'user_properties', 'groups', 'group_properties', 'insert_id', 'session_id', 'app_version', 'platform', 'os_name', 'os_version'],
  ...['device_brand', 'device_manufacturer', 'device_model', 'carrier', 'country', 'region', 'city', 'dma', 'language', 'ip', 'price', 'quantity', 'revenue', 'productId', 'revenueType'],
  ...['location_lat', 'location_lng', 'idfa', 'idfv', 'adid', 'android_id', 'event_id', 'library', 'currency', 'receipt', 'receiptSig', 'android_app_set_id', 'plan', 'ingestion_metadata', 'partner_id', 'user_agent', 'extra'],
]);

export const OPERATORS = new Set(['$set', '$setOnce', '$add', '$append', '$prepend', '$unset', '$preInsert', '$postInsert', '$remove', '$clearAll']);

const BLOCKED_IDS = new Set(['anonymous', 'null', 'none', 'undefined', '0', '-1', 'nil', 'lmy47d', 'unknown', '00000000-0000-0000-0000-000000000000']);

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function depth(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  let max = 0;
  for (const v of Object.values(value)) max = Math.max(max, depth(v));
  return max + 1;
}

/** Plain keys (each a $set) or only operators; mixing is refused, as is an unknown operator. */
export function checkUserProperties(props: unknown): string | undefined {
  if (!isObject(props)) return 'user_properties must be an object';
  if (depth(props) > 40) return 'user_properties nests deeper than 40 levels';
  const keys = Object.keys(props);
  const ops = keys.filter((k) => k.startsWith('$'));
  if (ops.length > 0 && ops.length < keys.length) return 'user_properties mixes operators and plain keys';
  const unknown = ops.find((k) => !OPERATORS.has(k));
  if (unknown) return `unknown user_properties operator ${unknown}`;
  return undefined;
}

export function checkIdentification(id: unknown): string | undefined {
  if (!isObject(id)) return 'must be an object';
  const who = [id.user_id, id.device_id].filter((v) => typeof v === 'string' && v !== '');
  if (who.length === 0) return 'user_id or device_id is required';
  const extra = Object.keys(id).find((k) => !IDENTIFY_KEYS.has(k));
  if (extra) return `unknown field ${extra}`;
  if (id.user_properties !== undefined) return checkUserProperties(id.user_properties);
  return undefined;
}

export interface EventProblems {
  invalid: Record<string, number[]>;
  missing: Record<string, number[]>;
}

const note = (into: Record<string, number[]>, field: string, index: number): void => {
  (into[field] ??= []).push(index);
};

function badId(value: unknown, minLength: number): boolean {
  if (typeof value !== 'string') return true;
  return value.length < minLength || BLOCKED_IDS.has(value.trim().toLowerCase());
}

/** Adds an event's problems (by field, with its index) as Amplitude's 400 lists them. */
export function checkEvent(event: unknown, index: number, minIdLength: number, problems: EventProblems): void {
  if (!isObject(event)) return note(problems.invalid, 'event', index);
  if (typeof event.event_type !== 'string' || event.event_type === '') note(problems.missing, 'event_type', index);
  if (event.user_id === undefined && event.device_id === undefined) note(problems.missing, 'user_id', index);
  if (event.user_id !== undefined && badId(event.user_id, minIdLength)) note(problems.invalid, 'user_id', index);
  if (event.device_id !== undefined && badId(event.device_id, minIdLength)) note(problems.invalid, 'device_id', index);
  // `time` is ms since epoch; an ISO string is refused.
  if (event.time !== undefined && typeof event.time !== 'number') note(problems.invalid, 'time', index);
  if (event.insert_id !== undefined && typeof event.insert_id !== 'string') note(problems.invalid, 'insert_id', index);
  if (event.user_properties !== undefined && event.event_type !== '$identify' && checkUserProperties(event.user_properties)) note(problems.invalid, 'user_properties', index);
  for (const key of Object.keys(event)) if (!EVENT_KEYS.has(key)) note(problems.invalid, key, index);
}

/** Applies user_properties (plain keys or operators) to a user's stored properties. */
export function applyUserProperties(user: Record<string, unknown>, props: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!props) return user;
  const out = { ...user };
  const keys = Object.keys(props);
  if (!keys.some((k) => k.startsWith('$'))) return Object.assign(out, props);
  const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);
  for (const [op, arg] of Object.entries(props)) {
    if (op === '$clearAll') {
      for (const k of Object.keys(out)) delete out[k];
      continue;
    }
    if (!isObject(arg)) continue;
    for (const [k, v] of Object.entries(arg)) {
      switch (op) {
        case '$set': out[k] = v; break;
        case '$setOnce': if (!(k in out)) out[k] = v; break;
        case '$add': out[k] = Number(out[k] ?? 0) + Number(v); break;
        case '$append': out[k] = [...list(out[k]), ...list(v)]; break;
        case '$prepend': out[k] = [...list(v), ...list(out[k])]; break;
        case '$unset': delete out[k]; break;
        case '$preInsert': out[k] = [...list(v).filter((x) => !list(out[k]).includes(x)), ...list(out[k])]; break;
        case '$postInsert': out[k] = [...list(out[k]), ...list(v).filter((x) => !list(out[k]).includes(x))]; break;
        case '$remove': out[k] = list(out[k]).filter((x) => !list(v).includes(x)); break;
      }
    }
  }
  return out;
}
