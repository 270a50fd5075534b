import { ActionInputError } from '../../errors.js';
import { defineAction, type BatchSpec } from '../define.js';
import { amplitudeError, postAnswer, THROTTLE_WAIT_MS, type AmplitudeBatch, type AmplitudeBatchContext, type AmplitudeConfig, type AmplitudeHost } from './client.js';
import { idSchema } from './ids.js';

/** The operators Amplitude knows, by every spelling users write, to the camelCase it wants. */
const OPERATORS: Record<string, string> = {};
for (const op of ['set', 'setOnce', 'add', 'append', 'prepend', 'unset', 'preInsert', 'postInsert', 'remove', 'clearAll']) {
  OPERATORS[`$${op}`] = `$${op}`;
  OPERATORS[`$${op.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`] = `$${op}`;
  OPERATORS[`$${op.toLowerCase()}`] = `$${op}`;
}

/**
 * Translates snake_case operator spellings (`$set_once`) to Amplitude's camelCase and
 * rejects an object that mixes operators with plain keys, which Amplitude refuses.
 */
export function normalizeUserProperties(props: Record<string, unknown>, field: string): Record<string, unknown> {
  const keys = Object.keys(props);
  const ops = keys.filter((k) => k.startsWith('$'));
  if (ops.length === 0) return props;
  const plain = keys.filter((k) => !k.startsWith('$'));
  if (plain.length > 0) {
    throw new ActionInputError(
      `\`${field}\` mixes operators (${ops.join(', ')}) with plain keys (${plain.join(', ')}); Amplitude rejects that — put the plain keys under \`$set\``,
      field,
    );
  }
  const out: Record<string, unknown> = {};
  for (const key of ops) {
    const op = OPERATORS[key];
    if (!op) throw new ActionInputError(`\`${field}\` has the unknown operator \`${key}\`; use one of $set, $setOnce, $add, $append, $prepend, $unset, $preInsert, $postInsert, $remove`, field);
    if (op in out) throw new ActionInputError(`\`${field}\` has \`${key}\` twice (as \`${op}\` and another spelling)`, field);
    out[op] = props[key];
  }
  return out;
}

/** The object a `user_properties_json` string holds. */
function parsePropertiesJson(text: string): Record<string, unknown> {
  let props: unknown;
  try {
    props = JSON.parse(text);
  } catch (error) {
    throw new ActionInputError(`\`user_properties_json\` is not valid JSON: ${(error as Error).message}`, 'user_properties_json');
  }
  if (props === null || typeof props !== 'object' || Array.isArray(props)) {
    throw new ActionInputError('`user_properties_json` must hold a JSON object', 'user_properties_json');
  }
  return props as Record<string, unknown>;
}

/** Example values of Amplitude's device and location fields, shown by editors and the actions reference. */
export const FIELD_EXAMPLES: Record<string, unknown> = {
  app_version: '2.1.0', platform: 'Web', os_name: 'iOS', os_version: '17.4', device_brand: 'Apple', device_manufacturer: 'Apple', device_model: 'iPhone15,2',
  carrier: 'Verizon', country: 'United States', region: 'California', city: 'San Francisco', dma: 'San Francisco-Oakland-San Jose, CA', language: 'English',
  start_version: '1.0.0', ip: '203.0.113.7', idfa: 'AEBE52E7-03EE-455A-B3C4-E57283966239', idfv: 'BCCE52E7-03EE-321A-B3D4-E57123966239', adid: '38400000-8cf0-11bd-b23e-10b96e40000d',
  android_id: 'f3d9a2c1b0e4d5f6', productId: 'pro_monthly', revenueType: 'purchase', library: 'ferry', currency: 'USD',
  session_id: 1767225600000, event_id: 42, price: 9.99, quantity: 1, revenue: 9.99, location_lat: 37.77, location_lng: -122.42,
};
const examplesOf = (field: string): { examples?: unknown[] } => (FIELD_EXAMPLES[field] === undefined ? {} : { examples: [FIELD_EXAMPLES[field]] });

const FIELDS = ['app_version', 'platform', 'os_name', 'os_version', 'device_brand', 'device_manufacturer', 'device_model', 'carrier', 'country', 'region', 'city', 'dma', 'language', 'start_version'] as const;

interface IdentifyInput {
  user_id?: string;
  device_id?: string;
  user_properties_json?: string;
  user_properties?: Record<string, unknown>;
  groups?: Record<string, unknown>;
  paying?: boolean | string;
  [field: string]: unknown;
}

export const identifyUser = defineAction<IdentifyInput, 'success', AmplitudeConfig, AmplitudeHost>({
  name: 'identify_user',
  description: "Sets a user's properties in Amplitude (Identify API). Operators may be written $set_once or $setOnce.",
  input: {
    type: 'object',
    additionalProperties: false,
    properties: {
      user_id: { ...idSchema, description: 'The user id. `user_id` or `device_id` is required.', examples: ['<<user.id>>'] },
      device_id: { ...idSchema, description: 'The device id.', examples: ['<<user.device_id>>'] },
      user_properties_json: { type: 'string', description: 'User properties as a JSON string (e.g. from a form field): plain keys, or only operators like $set / $set_once.', examples: ['<<json user.traits>>'] },
      user_properties: { type: 'object', description: 'User properties as an object: plain keys, or only operators ($set, $setOnce, $add, $append, $prepend, $unset, $preInsert, $postInsert, $remove).', examples: [{ $set: { plan: 'pro' }, $setOnce: { signup_source: 'ads' } }] },
      groups: { type: 'object', description: 'Group memberships, e.g. `{ company: "acme" }`.', examples: [{ company: 'acme' }] },
      paying: { type: ['boolean', 'string'], description: 'Whether the user is paying.', examples: [true] },
      ...Object.fromEntries(FIELDS.map((f) => [f, { type: 'string', description: `Identification field \`${f}\`.`, ...examplesOf(f) }])),
    },
    anyOf: [{ required: ['user_id'] }, { required: ['device_id'] }],
    not: { required: ['user_properties_json', 'user_properties'] },
  },
  output: { const: 'success', description: 'Amplitude answered `success`.' },
  checks: [
    { reads: ['user_properties'], check: (input) => void (input.user_properties && normalizeUserProperties(input.user_properties, 'user_properties')) },
    { reads: ['user_properties_json'], check: (input) => void (input.user_properties_json === undefined || normalizeUserProperties(parsePropertiesJson(input.user_properties_json), 'user_properties_json')) },
  ],
  prepare(input) {
    const json = input.user_properties_json;
    const props = json === undefined ? input.user_properties : parsePropertiesJson(json);
    const { user_properties_json: _json, ...rest } = input;
    return props === undefined ? rest : { ...rest, user_properties: normalizeUserProperties(props, json !== undefined ? 'user_properties_json' : 'user_properties') };
  },
  run: (input, context) => context.batch(identifyBatch, input),
});

/**
 * Identify takes an `identification` array: concurrent calls share one request. Amplitude's
 * 400 does not say which identification was bad, so a failed batch is split until the bad
 * one stands alone; a refused api key fails them all at once, unsplit.
 */
const identifyBatch: AmplitudeBatch<Record<string, unknown>, 'success'> = { spec: identifySpec };

function identifySpec(context: AmplitudeBatchContext): BatchSpec<Record<string, unknown>, 'success'> {
  const url = `${context.urls.ingest}/identify`;
  const apiKey = context.config.api_key;
  return {
    key: `identify ${url} ${apiKey}`,
    // Undocumented limits (PROVIDERS.md): at most 2000 identifications and 1 MB.
    maxItems: 2000,
    maxBytes: 1_000_000 - 200,
    sizeOf: (item) => Buffer.byteLength(encodeURIComponent(JSON.stringify(item))) + 3,
    async send(items, http) {
      const identification = JSON.stringify(items.length === 1 ? items[0] : items);
      const form = new URLSearchParams({ api_key: apiKey, identification }).toString();
      const answer = await postAnswer(http, context, url, form, 'application/x-www-form-urlencoded');
      if (answer.status === 200) return items.map(() => ({ kind: 'ok' as const, value: 'success' as const }));
      const error = amplitudeError(answer, THROTTLE_WAIT_MS.identify);
      if (answer.status !== 400) throw error;
      return refusedField(answer.text) === 'api_key' ? { kind: 'auth', error } : { kind: 'split', error };
    },
  };
}

/**
 * The field an Identify 400 names. That API answers errors in plain text, as
 * `<missing|invalid> <field>: <reason>` (`invalid api_key: Invalid API key: …`; the forms
 * are listed with the emulator in src/sandbox/amplitude.ts). The leading words are split off
 * and compared exactly, never searched for in the text: a reason that merely mentions an
 * "api key" names no field.
 */
export function refusedField(text: string): string | undefined {
  const colon = text.indexOf(':');
  if (colon === -1) return undefined;
  const words = text.slice(0, colon).split(' ');
  if (words.length !== 2 || (words[0] !== 'missing' && words[0] !== 'invalid')) return undefined;
  return words[1];
}
