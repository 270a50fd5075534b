/**
 * The JSON Schema of a `*.test.yaml` file. `ferry test` validates test files with exactly
 * this object, and `schemas/test.schema.json` is written from it (`npm run docs`; a test
 * fails when the file is stale), so editors and the runner never disagree.
 */
import type { JsonSchema } from '../workflow/schema.js';

export const TEST_SCHEMA_ID = 'https://ferry.dev/schemas/test.schema.json';

/** Providers that `ferry test` emulates; `http` is answered in-process. */
export const TESTED_PROVIDERS = ['amplitude', 'segment', 'http'] as const;
export type TestedProvider = (typeof TESTED_PROVIDERS)[number];

const order = (fallback: 'sequence' | 'set'): JsonSchema => ({
  type: 'string',
  enum: ['sequence', 'set'],
  default: fallback,
  description:
    '`sequence`: the listed items match distinct received ones in this order (others may come between; pin the total with `count`). `set`: each listed item matches a distinct received one, in any order.',
  examples: ['set'],
});

const count: JsonSchema = {
  type: 'integer',
  minimum: 0,
  description: 'Exactly this many.',
  examples: [3],
};

const fault: JsonSchema = {
  type: 'object',
  description:
    'One injected fault. Give exactly one of `status`, `reset`, `reject_user` or `throttle_user`; faults are tried in order and a request gets the first one that applies.',
  additionalProperties: false,
  properties: {
    status: { type: 'integer', minimum: 400, maximum: 599, description: 'Answer this HTTP status instead of the normal answer.', examples: [429, 503] },
    reset: { const: true, description: 'Drop the connection without answering (a network error, retried).', examples: [true] },
    reject_user: { type: 'string', minLength: 1, description: 'Refuse every request that carries this user id (status 400 unless `status` says otherwise). Never used up.', examples: ['u_9'] },
    throttle_user: { type: 'string', minLength: 1, description: "Amplitude only: answer 429 naming this user's events as throttled; the other events of the request are stored.", examples: ['u_7'] },
    times: { type: 'integer', minimum: 1, default: 1, description: 'How many matching requests get the fault (`status`, `reset`, `throttle_user`).', examples: [3] },
    path: { type: 'string', pattern: '^/', description: 'Only requests to this path get the fault.', examples: ['/2/httpapi', '/v1/batch'] },
    retry_after: {
      type: 'integer',
      minimum: 0,
      description: 'The `Retry-After` header, in seconds. Default `0` for a 429 so that tests stay fast; give a number to make ferry wait for real.',
      examples: [0, 2],
    },
    body: { description: 'The answer body for a `status` fault (JSON). Default: the provider\'s own error body.', examples: [{ code: 503, error: 'Service unavailable' }] },
  },
  examples: [{ status: 429, times: 3 }, { reject_user: 'u_9' }, { status: 503, path: '/identify' }, { reset: true }],
};

const requestMatch: JsonSchema = {
  type: 'object',
  description: 'A partial request: every key given must match the received request; keys left out are not checked.',
  additionalProperties: false,
  properties: {
    method: { type: 'string', description: 'HTTP method, upper case.', examples: ['POST'] },
    path: { type: 'string', pattern: '^/', description: 'URL path without the query.', examples: ['/identify', '/2/httpapi', '/v1/batch'] },
    url: { type: 'string', description: 'Full URL without the query (`http` calls; emulated providers have a local URL).', examples: ['https://crm.example.com/users/42'] },
    query: { type: 'object', additionalProperties: { type: 'string' }, description: 'Query parameters (partial).', examples: [{ start: '20260101T00' }] },
    headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Headers, lower-case names (partial).', examples: [{ 'content-type': 'application/json' }] },
    body: {
      description:
        "The body, matched partially: JSON bodies as parsed; Amplitude's form-encoded `/identify` as `{ api_key, identification }` with `identification` parsed.",
      examples: [{ events: [{ event_type: 'Signed Up', user_id: 'u_1' }] }],
    },
    status: { type: 'integer', description: 'The status the request was answered with (an injected fault included; `0` for a dropped connection).', examples: [429, 200] },
  },
  examples: [{ path: '/identify', body: { identification: { user_id: 'u_1' } } }, { status: 429 }],
};

const callsExpect: JsonSchema = {
  type: 'object',
  description:
    'The HTTP requests this provider received, as it saw them: concurrent calls coalesce into batch requests (`/v1/batch`, an `events` array) and every retry is a request of its own. To check what was stored regardless of batching, use `events`, `identifications`, `users` or `messages`.',
  additionalProperties: false,
  properties: {
    count: { ...count, description: 'Exactly this many requests, retries included.' },
    requests: { type: 'array', items: requestMatch, description: 'Requests that must have been received (partial matches).', examples: [[{ status: 429 }, { status: 200, path: '/identify' }]] },
    order: order('sequence'),
  },
  examples: [{ count: 2, requests: [{ status: 429 }, { status: 200 }] }],
};

const storedExpect = (what: string, example: JsonSchema): JsonSchema => ({
  type: 'object',
  description: `${what} Batching and retries do not change it.`,
  additionalProperties: false,
  properties: {
    count: { ...count, description: 'Exactly this many stored.' },
    items: { type: 'array', items: { type: 'object' }, description: 'Records that must be stored (partial matches).', examples: [[example]] },
    order: order('set'),
  },
  examples: [{ count: 1, items: [example] }],
});

const expectSchema: JsonSchema = {
  type: 'object',
  description: 'What must hold after the run. Everything is optional; `status` defaults to `succeeded`.',
  additionalProperties: false,
  properties: {
    status: {
      type: 'string',
      enum: ['succeeded', 'failed', 'invalid'],
      default: 'succeeded',
      description: 'How the run ends: `succeeded`, `failed` (a step failed after its retries), or `invalid` (the inputs were refused before anything ran).',
      examples: ['failed'],
    },
    error: {
      type: ['string', 'object'],
      description: 'The run error: a string is a part of its message; a mapping matches `step`, `item` (loop index) and `message` (a part of it).',
      additionalProperties: false,
      properties: {
        step: { type: 'string', description: 'Id of the step that failed.', examples: ['amp'] },
        item: { type: ['integer', 'null'], description: 'Loop index of the failed item (innermost loop), or null.', examples: [1] },
        message: { type: 'string', description: 'A part of the error message.', examples: ['answered 400'] },
      },
      examples: ['answered 400', { step: 'amp', item: 1 }],
    },
    outputs: {
      type: 'object',
      description: "Step outputs by top-level step id, matched partially (a loop's output is `{ count, items }`).",
      propertyNames: { pattern: '^[a-z_][a-z0-9_]*$' },
      examples: [{ each_user: { count: 3 } }],
    },
    logs: {
      type: 'array',
      items: { type: 'string' },
      description: 'Each must be a part of some `core.log` message of the run (any level).',
      examples: [['synced 3 users']],
    },
    calls: {
      type: 'object',
      description: 'Requests per provider.',
      additionalProperties: false,
      properties: Object.fromEntries(TESTED_PROVIDERS.map((p) => [p, { ...callsExpect, description: `Requests ${p === 'http' ? '`http.request` made' : `the ${p} emulator received`}. ${String(callsExpect.description)}` }])),
      examples: [{ amplitude: { count: 2 }, segment: { count: 0 } }],
    },
    events: storedExpect('Amplitude events stored (one per `insert_id`).', { event_type: 'Signed Up', user_id: 'u_1' }),
    identifications: storedExpect('Amplitude identifications stored, one per identified user and call.', { user_id: 'u_1', user_properties: { plan: 'pro' } }),
    users: {
      type: 'object',
      additionalProperties: { type: 'object' },
      description: "Amplitude user properties after every identification was applied (operators included), by user id; matched partially.",
      examples: [{ u_1: { plan: 'pro' } }],
    },
    messages: storedExpect('Segment messages stored (one per `messageId`), each with its `type`.', { type: 'identify', userId: 'u_1', traits: { email: 'ada@example.com' } }),
  },
  examples: [{ status: 'succeeded', outputs: { each_user: { count: 2 } }, calls: { amplitude: { count: 2 } } }],
};

const httpResponse: JsonSchema = {
  type: 'object',
  description: 'How the in-process HTTP fake answers `http.request` calls to this URL (the first entry that matches wins; others get 200 `{}`).',
  additionalProperties: false,
  required: ['url'],
  properties: {
    url: { type: 'string', description: 'Full URL without the query, or a prefix ending in `*`.', examples: ['https://crm.example.com/users/*'] },
    method: { type: 'string', description: 'Only this method (any when left out).', examples: ['GET'] },
    status: { type: 'integer', minimum: 100, maximum: 599, default: 200, description: 'Status to answer.', examples: [201] },
    headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Answer headers.', examples: [{ 'x-request-id': 'abc' }] },
    body: { description: 'Answer body: JSON (sent with content-type application/json) or a string.', examples: [{ id: 42 }] },
  },
  examples: [{ url: 'https://crm.example.com/users/*', method: 'PUT', status: 201, body: { id: 42 } }],
};

const testCase: JsonSchema = {
  type: 'object',
  description: 'One run of the workflow against fresh emulators, and what must hold afterwards.',
  additionalProperties: false,
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, description: 'What the case shows, as a sentence.', examples: ['identifies every user once'] },
    inputs: { type: 'object', description: 'Inputs of the manual trigger, checked against its declared inputs (defaults apply).', examples: [{ users: [{ id: 'u_1', email: 'ada@example.com' }] }] },
    body: { description: 'Runs the case as the webhook trigger with this JSON body (`trigger.body`, and `inputs` when the webhook declares inputs).', examples: [{ user: { id: 'u_1' } }] },
    headers: { type: 'object', additionalProperties: { type: 'string' }, description: 'Webhook request headers (`trigger.headers`), with `body`.', examples: [{ 'x-github-event': 'push' }] },
    env: { type: 'object', additionalProperties: { type: 'string' }, description: 'What `<<env.NAME>>` reads. The machine\'s environment is never used, so a case runs the same everywhere.', examples: [{ IMPORT_USERS: '1' }] },
    secrets: {
      type: 'object',
      additionalProperties: { type: 'string' },
      description: 'Values of declared secrets. Default: a placeholder per secret (`sandbox-<name>`); provider keys are always replaced by the emulators\' keys.',
      examples: [{ SIGNUP_WEBHOOK_SECRET: 'test-secret' }],
    },
    faults: {
      type: 'object',
      description: 'Faults to inject, per provider, before the run starts.',
      additionalProperties: false,
      properties: Object.fromEntries(TESTED_PROVIDERS.map((p) => [p, { type: 'array', items: { $ref: '#/definitions/fault' }, description: `Faults of ${p}.`, examples: [[{ status: 503, times: 2 }]] }])),
      examples: [{ amplitude: [{ status: 429, times: 3 }, { reject_user: 'u_9' }] }],
    },
    responses: { type: 'array', items: httpResponse, description: 'Answers of the in-process HTTP fake for `http.request` steps.', examples: [[{ url: 'https://crm.example.com/users/*', status: 201, body: { id: 42 } }]] },
    amplitude_export: {
      type: 'object',
      description: 'Events the Amplitude emulator has for `export_events`, by UTC hour `YYYYMMDDTHH`. Hours without data answer 404 (no data).',
      propertyNames: { pattern: '^[0-9]{8}T[0-9]{2}$' },
      additionalProperties: { type: 'array', items: { type: 'object' } },
      examples: [{ '20260101T00': [{ event_type: 'Signed Up', user_id: 'u_1' }] }],
    },
    timeout: { type: 'string', pattern: '^[0-9]+(ms|s|m|h)$', description: 'Fail the case when the run takes longer. Default: the file\'s `timeout`, or `30s`.', examples: ['10s'] },
    expect: expectSchema,
  },
  examples: [{ name: 'retries a throttled request', inputs: { users: [{ id: 'u_1' }] }, faults: { amplitude: [{ status: 429, times: 1 }] }, expect: { status: 'succeeded', calls: { amplitude: { count: 2 } } } }],
};

/** The schema of a `*.test.yaml` file. */
export function testFileSchema(): JsonSchema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: TEST_SCHEMA_ID,
    title: 'ferry test file',
    description:
      'Cases that run a workflow against the built-in Amplitude and Segment emulators (never the network) and check its status, outputs and the calls each provider received. Run them with `ferry test`.',
    type: 'object',
    additionalProperties: false,
    required: ['workflow', 'cases'],
    properties: {
      workflow: { type: 'string', minLength: 1, description: 'The workflow file under test, relative to this file.', examples: ['sync-signups.yaml'] },
      description: { type: 'string', description: 'What these cases cover, for people reading them.', examples: ['Signups reach Amplitude and Segment, also when they throttle'] },
      timeout: { type: 'string', pattern: '^[0-9]+(ms|s|m|h)$', default: '30s', description: 'Longest a case may run.', examples: ['30s'] },
      cases: { type: 'array', minItems: 1, items: testCase, description: 'The cases; each runs against fresh emulators, in parallel with the others.', examples: [[{ name: 'syncs one user', inputs: { users: [{ id: 'u_1' }] } }]] },
    },
    definitions: { fault },
    examples: [{ workflow: 'sync-signups.yaml', cases: [{ name: 'syncs one user', inputs: { users: [{ id: 'u_1' }] }, expect: { status: 'succeeded' } }] }],
  };
}
