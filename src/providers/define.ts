import type { Dispatcher } from 'undici';
import type { JsonSchema } from '../workflow/schema.js';
import { NEVER_ABORTED } from './http.js';

/** What an action sees while it runs one call. */
export interface ActionContext<Config = Record<string, unknown>> {
  /** The provider block of the workflow with its templates rendered (keys, region, base_url). */
  readonly config: Config;
  readonly runId: string;
  readonly stepId: string;
  /** Loop indexes from the outermost loop in, empty outside loops. */
  readonly item: readonly number[];
  /** Folder of the workflow file: relative paths in inputs resolve against it. */
  readonly baseDir: string;
  /**
   * The absolute path of a file named by the input `field`, relative to `baseDir`. When the
   * workflow writes that field as a template, its value may come from data (inputs, a webhook
   * body, a step's output): it must then resolve inside the workflow's folder or the state
   * dir, symlinks followed, or this throws `FERRY_PATH_OUTSIDE`. A literal path is the
   * author's choice and is returned as written.
   */
  resolveDataPath(value: string, field: string): Promise<string>;
  /** Timeout of one provider call, in ms. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  /**
   * A key stable across retries and resumes of this run's step and loop item, new for a new
   * run: the default `insert_id` / `messageId`. `salt` tells several keys of one call apart.
   */
  idempotencyKey(salt?: string): string;
  /**
   * Runs one provider call under this provider's queue (concurrency, rate, pauses) and retry
   * policy. `attempt` makes exactly one try and throws a ProviderError on failure; it is
   * called again for each retry.
   */
  call<T>(attempt: (http: Dispatcher) => Promise<T>): Promise<T>;
  /**
   * Sends `item` as part of a batch: items of concurrent calls that share `spec.key` are
   * coalesced into one request within the provider's flush window (or sent alone when the
   * provider has `batch: false`). Resolves with this item's own result.
   */
  batch<Item, Result>(spec: BatchSpec<Item, Result>, item: Item): Promise<Result>;
  /**
   * The value `make` returns, made once per step of a run and `key`: what every call of the
   * step can share (a batch spec built from the provider block). Dropped with the run.
   */
  shared<S>(key: string, make: () => S): S;
  log(level: LogLevel, message: string): void;
}

/** How an action's calls are coalesced into a provider's batch request. */
export interface BatchSpec<Item, Result> {
  /** Items sent together must share it: endpoint and credentials. */
  key: string;
  /** The API's limits for one request. */
  maxItems: number;
  maxBytes: number;
  /** Bytes one item adds to the request body. */
  sizeOf(item: Item): number;
  /**
   * Sends one request with `items` and returns one outcome per item, in order. Throws a
   * ProviderError when the whole request failed; status 413 or code `FERRY_BATCH_SPLIT`
   * makes the engine split the batch in two and send the halves.
   */
  send(items: readonly Item[], http: Dispatcher): Promise<BatchOutcome<Result>[]>;
}

export type BatchOutcome<Result> =
  | { ok: true; value: Result }
  /** `retry`: send the item again after `afterMs`; `free` when the item was not at fault (no attempt used). */
  | { ok: false; error: Error; retry?: { afterMs: number | undefined; free?: boolean } };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ActionDefinition<Input = unknown, Output = unknown, Config = Record<string, unknown>> {
  /** Name within its provider: `identify_user` becomes `amplitude.identify_user`. */
  name: string;
  description: string;
  /** JSON Schema of `with:`; compiled once when the provider is registered. */
  input: JsonSchema;
  /** JSON Schema of the output, for docs and `ferry actions`. */
  output?: JsonSchema;
  /** Checks beyond the schema that need code (e.g. parsing a JSON string); throw ActionInputError. */
  prepare?(input: Input): Input;
  run(input: Input, context: ActionContext<Config>): Promise<Output>;
}

export interface ProviderDefinition {
  /** Provider name as used in `providers:` and action names. */
  name: string;
  description: string;
  /** Provider-specific fields of the `providers.<name>` block (keys); common fields are added. */
  config?: { properties: Record<string, JsonSchema>; required?: string[] };
  /** Field names of the provider block whose values are secrets: redacted everywhere. */
  secretFields?: string[];
  /**
   * Fields of the provider block that name the account, whose hash (never the value) keys the
   * account's limit scope together with the base URL or region: the project's key, not a second
   * key of the same project. @default secretFields
   */
  accountFields?: string[];
  /**
   * Every encoded form in which this provider sends its credentials (a Basic header value
   * and its base64 part, a Bearer token, a query parameter), from the rendered provider
   * block. The engine redacts them like the secrets: only the code that encodes a key knows
   * these forms (base64 of `key:` shares no block with base64 of `key`). Declare it beside
   * that code and use the same function to build the request.
   */
  credentialForms?(config: Record<string, unknown>): string[];
  /** Defaults for the per-provider queue. */
  defaults: { concurrency: number; rate?: { limit: number; intervalMs: number } };
  actions: ActionDefinition[];
}

export function defineAction<Input, Output, Config = Record<string, unknown>>(
  definition: ActionDefinition<Input, Output, Config>,
): ActionDefinition<Input, Output, Config> {
  if (!/^[a-z][a-z0-9_]*$/.test(definition.name)) {
    throw new TypeError(`Expected action \`name\` to match [a-z][a-z0-9_]*, got \`${definition.name}\``);
  }
  return definition;
}

export function defineProvider(definition: ProviderDefinition): ProviderDefinition {
  if (!/^[a-z][a-z0-9_]*$/.test(definition.name)) {
    throw new TypeError(`Expected provider \`name\` to match [a-z][a-z0-9_]*, got \`${definition.name}\``);
  }
  if (!Number.isInteger(definition.defaults.concurrency) || definition.defaults.concurrency < 1) {
    throw new TypeError(`Expected \`defaults.concurrency\` to be a positive integer, got \`${definition.defaults.concurrency}\``);
  }
  return definition;
}

/**
 * A batch spec made once per step of a run, call timeout and `variant` instead of once per
 * call: every call of a step asks for the same one. `make` may capture the context's config,
 * timeout and signal; a call with a signal of its own gets a fresh spec.
 */
export function sharedSpec<S>(context: ActionContext<object>, variant: string, make: () => S): S {
  if (context.signal !== NEVER_ABORTED) return make();
  return context.shared(`${variant}\0${context.timeoutMs}`, make);
}
