/**
 * The workflow JSON Schema (draft-07, which editors support best). The validator compiles
 * exactly this object, and `schemas/workflow.schema.json` is written from it by
 * `npm run schema` (a test fails when the file is stale), so editors and `ferry validate`
 * can never disagree.
 */
import type { ProviderDefinition } from '../providers/define.js';

export type JsonSchema = Record<string, unknown>;

export const SCHEMA_ID = 'https://ferry.dev/schemas/workflow.schema.json';

const TEMPLATE_REF = '#/definitions/template';

export const STEP_ID_PATTERN = '^[a-z_][a-z0-9_]*$';
export const NAME_PATTERN = '^[a-z0-9][a-z0-9_-]*$';
export const DURATION_PATTERN = '^[0-9]+(ms|s|m|h)$';
export const IDENT_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';

/** Shared provider block fields: every provider takes them. */
export const commonProviderProperties: Record<string, JsonSchema> = {
  concurrency: {
    type: 'integer',
    minimum: 1,
    maximum: 1000,
    description: 'Requests in flight to this provider account (provider, base_url or region, and key) at once, across every step, loop item and run of the process; two workflows naming one account both get the stricter value.',
    examples: [4],
  },
  rate: {
    type: 'object',
    description: 'At most `limit` requests to this provider account start per `interval`; the stricter of two workflows naming one account holds.',
    additionalProperties: false,
    required: ['limit', 'interval'],
    properties: {
      limit: { type: 'integer', minimum: 1, description: 'Requests per interval.', examples: [20] },
      interval: { $ref: '#/definitions/duration', description: 'The window, e.g. `1s`.' },
    },
    examples: [{ limit: 20, interval: '1s' }],
  },
  max_wait: {
    $ref: '#/definitions/duration',
    description:
      'The longest pause this workflow accepts when the provider asks to wait (`Retry-After`, Amplitude\'s throttling pause). A longer demand fails the call at once and the run stops, to be resumed with `ferry retry`. Default `15m`.',
    examples: ['2m'],
  },
  base_url: {
    type: 'string',
    description: 'Replaces every host of this provider (ingestion and export), e.g. a local emulator. May be a template.',
    examples: ['http://127.0.0.1:9100'],
  },
  region: { type: 'string', enum: ['us', 'eu'], default: 'us', description: 'Data residency region: picks the provider hosts.' },
  batch: {
    description: 'Coalesce concurrent calls of batchable actions into the API\'s batch requests (default on). `false` sends every call alone.',
    anyOf: [
      { type: 'boolean' },
      {
        type: 'object',
        additionalProperties: false,
        properties: {
          max_items: { type: 'integer', minimum: 1, description: 'At most this many items per request (never above the API limit).', examples: [500] },
          window: { $ref: '#/definitions/duration', description: 'The longest the first call of a batch waits for company; a batch leaves sooner when no other call can join it (every item of the loop that feeds it waits on a batch). Default `5ms`.' },
        },
      },
    ],
    examples: [false, { max_items: 500, window: '10ms' }],
  },
};

/** Makes every constrained node of an action input schema also accept a `<<template>>` string. */
export function widenForTemplates(schema: JsonSchema): JsonSchema {
  const out: JsonSchema = { ...schema };
  if (isObject(schema.properties)) {
    out.properties = Object.fromEntries(Object.entries(schema.properties).map(([k, v]) => [k, widenForTemplates(v as JsonSchema)]));
  }
  if (isObject(schema.items)) out.items = widenForTemplates(schema.items as JsonSchema);
  if (isObject(schema.additionalProperties)) out.additionalProperties = widenForTemplates(schema.additionalProperties as JsonSchema);
  const constrained = Object.keys(schema).some((k) => !['description', 'examples', 'default', 'title', '$comment', 'markdownDescription'].includes(k));
  if (!constrained) return out;
  const { description, examples, default: def, ...rest } = out;
  return { ...(description === undefined ? {} : { description }), ...(examples === undefined ? {} : { examples }), ...(def === undefined ? {} : { default: def }), anyOf: [rest, { $ref: TEMPLATE_REF }] };
}

/**
 * What an input schema requires of an empty `with`, in words (`message`; `user_id` or
 * `device_id`), or undefined when `{}` would do: `required`, and `anyOf`/`oneOf` whose
 * every branch requires something.
 */
export function requiredInputs(schema: JsonSchema): string | undefined {
  const parts: string[] = [];
  if (Array.isArray(schema.required) && schema.required.length > 0) parts.push(schema.required.map((k) => `\`${String(k)}\``).join(', '));
  for (const key of ['anyOf', 'oneOf'] as const) {
    const branches = schema[key];
    if (!Array.isArray(branches) || branches.length === 0) continue;
    const each = branches.map((b) => (isObject(b) ? requiredInputs(b) : undefined));
    if (each.every((b) => b !== undefined)) parts.push(each.join(' or '));
  }
  return parts.length > 0 ? parts.join(' and ') : undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** A `with:` for editors to offer: the required inputs (and the first way to satisfy an anyOf), filled from their examples. */
function exampleInput(input: JsonSchema): Record<string, unknown> {
  const props = (input.properties ?? {}) as Record<string, JsonSchema>;
  const firstBranch = Array.isArray(input.anyOf) ? ((input.anyOf[0] as JsonSchema | undefined)?.required as string[] | undefined) : undefined;
  const keys = [...new Set([...((input.required as string[] | undefined) ?? []), ...(firstBranch ?? [])])];
  // The alternatives of the other anyOf branches (`device_id` beside `user_id`) stay out,
  const others = new Set(Array.isArray(input.anyOf) ? input.anyOf.slice(1).flatMap((b) => ((b as JsonSchema).required as string[] | undefined) ?? []) : []);
  // and of keys that exclude each other (`not: { required: [a, b] }`) only the first.
  const exclusive = ((input.not as JsonSchema | undefined)?.required as string[] | undefined) ?? [];
  for (const [k, v] of Object.entries(props)) {
    if (keys.length >= 3 || keys.includes(k) || others.has(k) || !Array.isArray(v.examples)) continue;
    if (exclusive.includes(k) && keys.some((x) => exclusive.includes(x))) continue;
    keys.push(k);
  }
  return Object.fromEntries(keys.flatMap((k) => (Array.isArray(props[k]?.examples) ? [[k, (props[k]?.examples as unknown[])[0]]] : [])));
}

/** A provider block for editors to offer: its required keys (from their examples) and its default concurrency. */
function providerExample(p: ProviderDefinition): Record<string, unknown> {
  const required = (p.config?.required ?? []).map((k) => [k, ((p.config?.properties[k] as JsonSchema | undefined)?.examples as unknown[] | undefined)?.[0]] as const);
  return { ...Object.fromEntries(required.filter(([, v]) => v !== undefined)), concurrency: p.defaults.concurrency };
}

/** Builds the full workflow schema from the registered providers and their actions. */
export function buildWorkflowSchema(providers: readonly ProviderDefinition[]): JsonSchema {
  const actionNames = providers.flatMap((p) => p.actions.map((a) => `${p.name}.${a.name}`));
  const withByAction = providers.flatMap((p) =>
    p.actions.map((a) => ({
      if: { properties: { action: { const: `${p.name}.${a.name}` } }, required: ['action'] },
      then: {
        // Without `with` the action would get `{}`, which fails only when the step runs.
        ...(requiredInputs(a.input) ? { required: ['with'] } : {}),
        properties: { with: { description: `Inputs of \`${p.name}.${a.name}\`: ${a.description}`, examples: [exampleInput(a.input)], anyOf: [widenForTemplates(a.input), { $ref: TEMPLATE_REF }] } },
      },
    })),
  );
  const providerBlocks = Object.fromEntries(
    providers.map((p) => [
      p.name,
      {
        type: 'object',
        description: p.description,
        additionalProperties: false,
        properties: { ...(p.config?.properties as Record<string, JsonSchema> | undefined), ...commonProviderProperties },
        examples: [providerExample(p)],
        ...(p.config?.required ? { required: p.config.required } : {}),
      },
    ]),
  );

  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: SCHEMA_ID,
    title: 'ferry workflow',
    description: 'A ferry workflow: triggers start a run, steps call provider actions, loops fan out over arrays or files.',
    type: 'object',
    additionalProperties: false,
    required: ['name', 'steps'],
    properties: {
      name: {
        type: 'string',
        pattern: NAME_PATTERN,
        description: 'The workflow name: lowercase letters, digits, `-` and `_`; unique per folder.',
        examples: ['sync-signups'],
      },
      description: { type: 'string', description: 'What the workflow does, for people reading it.', examples: ['Push new signups to Amplitude and Segment'] },
      triggers: {
        type: 'array',
        description: 'What starts a run. A workflow with none can still be run by hand with `ferry run`.',
        items: { $ref: '#/definitions/trigger' },
        examples: [[{ type: 'manual' }, { type: 'webhook', path: '/hooks/signups', secret: '<<secrets.SIGNUP_WEBHOOK_SECRET>>' }], [{ type: 'schedule', cron: '17 3 * * *', timezone: 'Europe/Berlin' }]],
      },
      secrets: {
        type: 'array',
        description: 'Environment variables this workflow reads as `<<secrets.NAME>>`. Missing ones stop the run before it starts; their values are redacted everywhere.',
        uniqueItems: true,
        items: { type: 'string', pattern: IDENT_PATTERN },
        examples: [['AMPLITUDE_API_KEY', 'SEGMENT_WRITE_KEY']],
      },
      providers: {
        type: 'object',
        description: 'Per-provider settings: keys, region, concurrency and rate limits shared by every step that calls the provider.',
        additionalProperties: false,
        properties: providerBlocks,
        examples: [{ amplitude: { api_key: '<<secrets.AMPLITUDE_API_KEY>>', concurrency: 4 }, segment: { write_key: '<<secrets.SEGMENT_WRITE_KEY>>' } }],
      },
      retry: { $ref: '#/definitions/retry' },
      timeout: { $ref: '#/definitions/duration', description: 'Timeout of one provider call. Default `30s`.' },
      steps: {
        type: 'array',
        minItems: 1,
        description: 'Steps run in order; a loop step runs its inner steps once per item.',
        items: { $ref: '#/definitions/step' },
        examples: [[{ id: 'hello', action: 'core.log', with: { message: 'hello <<inputs.name>>' } }]],
      },
    },
    definitions: {
      template: {
        type: 'string',
        pattern: '<<',
        description: 'A `<<...>>` template, rendered at run time.',
      },
      duration: {
        type: 'string',
        pattern: DURATION_PATTERN,
        description: 'A duration: `250ms`, `2s`, `5m`, `1h`.',
        examples: ['500ms', '30s'],
      },
      retry: {
        type: 'object',
        description: 'How failed provider calls are retried (429, 5xx except 501, connection errors, timeouts).',
        additionalProperties: false,
        properties: {
          attempts: { type: 'integer', minimum: 1, maximum: 10, default: 5, description: 'Total tries of a call, 1..10.', examples: [3] },
          backoff: {
            type: 'object',
            additionalProperties: false,
            description: 'Exponential backoff between tries.',
            examples: [{ initial: '1s', factor: 2, max: '1m' }],
            properties: {
              initial: { $ref: '#/definitions/duration', description: 'Wait before the second try. Default `500ms`.' },
              factor: { type: 'number', minimum: 1, maximum: 10, default: 2, description: 'Each wait is this many times the previous one.', examples: [1.5] },
              max: { $ref: '#/definitions/duration', description: 'Upper bound of one wait. Default `30s`.' },
              jitter: { type: 'string', enum: ['full', 'none'], default: 'full', description: '`full` waits a random time between 0 and the computed wait.' },
            },
          },
        },
        examples: [{ attempts: 5, backoff: { initial: '500ms', factor: 2, max: '30s', jitter: 'full' } }],
      },
      trigger: {
        type: 'object',
        required: ['type'],
        properties: { type: { type: 'string', enum: ['manual', 'webhook', 'schedule'], description: '`manual` (ferry run), `webhook` or `schedule` (ferry serve).' } },
        allOf: [
          {
            if: { properties: { type: { const: 'manual' } }, required: ['type'] },
            then: {
              additionalProperties: false,
              properties: { type: {}, inputs: { $ref: '#/definitions/inputs' } },
            },
          },
          {
            if: { properties: { type: { const: 'webhook' } }, required: ['type'] },
            then: {
              additionalProperties: false,
              required: ['path'],
              properties: {
                type: {},
                path: { type: 'string', pattern: '^/[A-Za-z0-9/_.-]*$', description: 'The URL path that starts a run on POST.', examples: ['/hooks/signups'] },
                secret: { type: 'string', description: 'HMAC-SHA256 secret for the request signature; usually `<<secrets.NAME>>`.', examples: ['<<secrets.SIGNUP_WEBHOOK_SECRET>>'] },
                inputs: { $ref: '#/definitions/inputs' },
              },
            },
          },
          {
            if: { properties: { type: { const: 'schedule' } }, required: ['type'] },
            then: {
              additionalProperties: false,
              required: ['cron'],
              properties: {
                type: {},
                cron: {
                  type: 'string',
                  description:
                    'When `ferry serve` starts a run: 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first. `<<trigger.scheduled_at>>` holds the tick; a tick is skipped while the previous run of the workflow still runs, and missed ticks are not replayed.',
                  examples: ['17 3 * * *', '*/30 * * * * *'],
                },
                timezone: { type: 'string', default: 'UTC', description: 'The IANA time zone the cron fields are read in.', examples: ['Europe/Berlin'] },
              },
            },
          },
        ],
      },
      inputs: {
        type: 'object',
        description: 'Inputs by name, each a JSON Schema; checked before a run starts (every problem reported at once) and readable as `<<inputs.NAME>>`. `ferry run --input NAME=text` gives the text the declared `type`: `integer`, `number`, `boolean` (`true`, `yes`, `1`…) and `string` as such, arrays and objects as JSON.',
        propertyNames: { pattern: IDENT_PATTERN },
        additionalProperties: { type: 'object' },
        examples: [{ users: { type: 'array', items: { type: 'object' } } }],
      },
      condition: {
        description: 'Runs the step only when this is truthy; missing paths count as false.',
        anyOf: [{ type: 'boolean' }, { $ref: TEMPLATE_REF }],
        examples: ['<<user.email>>'],
      },
      stepId: {
        type: 'string',
        pattern: STEP_ID_PATTERN,
        description: 'Unique step id: lowercase letters, digits and `_`, starting with a letter or `_`. Later steps read `<<steps.ID.output>>`.',
      },
      step: {
        type: 'object',
        description: 'An action step (`action` + `with`) or a loop step (`loop` + `steps`).',
        if: { required: ['loop'] },
        then: { $ref: '#/definitions/loopStep' },
        else: { $ref: '#/definitions/actionStep' },
      },
      actionStep: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'action'],
        properties: {
          id: { $ref: '#/definitions/stepId' },
          action: {
            type: 'string',
            enum: actionNames,
            description: 'The action to call, `provider.name`; `ferry actions` lists them.',
          },
          with: {
            description: "The action's inputs; values may be templates.",
            examples: [{ message: 'hello <<inputs.name>>' }],
            anyOf: [{ type: 'object' }, { $ref: TEMPLATE_REF }],
          },
          if: { $ref: '#/definitions/condition' },
          retry: { $ref: '#/definitions/retry' },
          timeout: { $ref: '#/definitions/duration', description: "Timeout of one provider call of this step; overrides the workflow's." },
          on_error: {
            enum: ['stop', 'continue'],
            default: 'stop',
            description:
              'Steps inside a loop only. `stop` (default): an item that still fails after its retries fails the run there. `continue`: the item is written to `<run-dir>/failed.jsonl` and the loop goes on; the run ends `failed` with `failed_items` in its summary, and `ferry retry` sends only those items again.',
          },
        },
        allOf: withByAction,
      },
      loopStep: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'loop', 'steps'],
        properties: {
          id: { $ref: '#/definitions/stepId' },
          if: { $ref: '#/definitions/condition' },
          loop: {
            type: 'object',
            additionalProperties: false,
            description: 'Runs `steps` once per item of `over` (an array) or of `file` (CSV, JSONL or JSON, streamed).',
            examples: [{ over: '<<inputs.users>>', as: 'user', concurrency: 10 }, { file: 'data/users.csv', as: 'row' }],
            properties: {
              over: { description: 'The items: a template that renders to an array, or a literal list.', anyOf: [{ type: 'array' }, { $ref: TEMPLATE_REF }], examples: ['<<inputs.users>>'] },
              file: {
                type: 'string',
                description:
                  "A CSV (header row), JSONL or JSON array file, relative to the workflow file. May be a template (e.g. `<<steps.export.output.path>>`); a path from a template must stay inside the workflow's folder or the state dir. `ferry retry` refuses to resume when the file changed.",
                examples: ['data/users.csv', '<<steps.export.output.path>>'],
              },
              as: { type: 'string', pattern: IDENT_PATTERN, default: 'item', description: 'The name of the current item in templates.', examples: ['user'] },
              concurrency: { type: 'integer', minimum: 1, maximum: 10000, default: 1, description: 'Items the loop works on at once (provider limits still apply), not counting items whose batched request is on the wire: while a batch is in flight its items lend their slots to the next items, so batches keep the provider busy. With batching, a high value (e.g. 2000) lets a loop fill whole batch requests.', examples: [10] },
            },
            oneOf: [{ required: ['over'] }, { required: ['file'] }],
          },
          steps: { type: 'array', minItems: 1, items: { $ref: '#/definitions/step' }, description: "Steps run for each item. The loop's output is `{count, items}`, `items` holding each item's step outputs by id (arrays only; a `file` loop keeps `count`). An `http.request` step keeps only `{status}` of each answer unless a template reads its `headers` or `body` (a later step of the item, or `steps.<loop>.output.items` after the loop): see README, What a loop keeps.", examples: [[{ id: 'amp', action: 'amplitude.identify_user', with: { user_id: '<<user.id>>' } }]] },
        },
      },
    },
  };
}
