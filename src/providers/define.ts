import type { Dispatcher } from 'undici';
import type { ProviderError } from '../errors.js';
import type { LogLevel } from '../types.js';
import type { JsonSchema } from '../workflow/schema.js';

/**
 * What a batch spec is made from (BatchDeclaration): the step's account and timeout, never one
 * call's item. The engine resolves it once per step of a run.
 */
export interface BatchContext<Config = Record<string, unknown>, Host extends string = string> {
  /** The provider block of the workflow with its templates rendered (keys, region, base_url). */
  readonly config: Config;
  /**
   * The account's URL of each host the provider declares (`ProviderDefinition.hosts`), without a
   * trailing slash: the block's `base_url` for every host when it has one, else the host of its
   * `region`. Resolved by the engine: an action never reads `base_url` or `region` itself.
   */
  readonly urls: Readonly<Record<Host, string>>;
  /** Timeout of one provider call, in ms. */
  readonly timeoutMs: number;
  /**
   * Aborts the call's requests when it fires; undefined when nothing cuts them (a run's graceful
   * stop lets calls on the wire finish within their timeout). Pass it on to `send()` as it is.
   */
  readonly signal: AbortSignal | undefined;
}

/** How a provider call is made. */
export interface CallOptions {
  /**
   * The action streams the answer itself (a download of gigabytes): this process sends the
   * call, also when a backend's pool would send the others. @default false
   */
  streamed?: boolean;
}

/** What an action sees while it runs one call. */
export interface ActionContext<Config = Record<string, unknown>, Host extends string = string> extends BatchContext<Config, Host> {
  readonly runId: string;
  readonly stepId: string;
  /** Loop indexes from the outermost loop in, empty outside loops. */
  readonly item: readonly number[];
  /** Folder of the workflow file: relative paths in inputs resolve against it. */
  readonly baseDir: string;
  /**
   * The fields of this step's output that the workflow's templates read, when the engine can
   * tell: a step inside a loop whose items no template reads. The loop keeps each item's
   * output as the action returns it, so an action leaves out the large fields not listed
   * (http.request's `headers` and `body`) and the work of making them. Undefined: the whole
   * output may be read (always outside loops).
   */
  readonly outputReads: ReadonlySet<string> | undefined;
  /**
   * The absolute path of a file named by the input `field`, relative to `baseDir`. When the
   * workflow writes that field as a template, its value may come from data (inputs, a webhook
   * body, a step's output): it must then resolve inside the workflow's folder or the state
   * dir, symlinks followed, or this throws `FERRY_PATH_OUTSIDE`. A literal path is the
   * author's choice and is returned as written.
   */
  resolveDataPath(value: string, field: string): Promise<string>;
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
  call<T>(attempt: (http: Dispatcher) => Promise<T>, options?: CallOptions): Promise<T>;
  /**
   * Sends `item` as part of a batch: items of concurrent calls whose specs share `spec.key` are
   * coalesced into one request within the provider's flush window (or sent alone when the
   * provider has `batch: false`). The engine makes the declaration's spec once per step of the
   * run and `variant`. Resolves with this item's own result.
   */
  batch<Item, Result, Variant extends BatchVariant = undefined>(declaration: BatchDeclaration<Item, Result, Config, Host, Variant>, item: Item, variant?: Variant): Promise<Result>;
  log(level: LogLevel, message: string): void;
}

/** What tells two specs of one declaration apart within a step (an option sent with the batch). */
export type BatchVariant = string | number | undefined;

/**
 * How an action's calls are batched, declared once beside the action: the engine asks `spec`
 * for the spec of a step (and `variant`) on its first call and keeps it for the run, so no
 * call builds one. Several actions may share a declaration (Segment's identify and track).
 */
export interface BatchDeclaration<Item, Result, Config = Record<string, unknown>, Host extends string = string, Variant extends BatchVariant = undefined> {
  spec(context: BatchContext<Config, Host>, variant: Variant): BatchSpec<Item, Result>;
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
   * Sends one request with `items` and says what came of it, from the answer's status and
   * parsed fields (never from its message text): one outcome per item, in order, or one
   * outcome for the whole request. A thrown error (a dropped connection, a status the
   * provider leaves to the default) is judged by the engine from its status and code: 429 is
   * throttled, 5xx except 501 and network errors are retryable, 413 splits, others are final.
   */
  send(items: readonly Item[], http: Dispatcher): Promise<ItemOutcome<Result>[] | RequestOutcome>;
}

/**
 * What a failed answer means for a call, an item or a whole request. Providers decide it in
 * their own code; the engine's one retry decision (engine/retry.ts) acts on it the same way
 * for single and batched calls.
 */
export type Failure =
  /** Transient (5xx, a dropped connection, a timeout): try again after the backoff. */
  | { kind: 'retryable'; error: ProviderError }
  /**
   * The provider asked to wait (Retry-After, a documented pause): nothing leaves for the
   * provider until `afterMs` passed, then this is sent again; without `afterMs`, the backoff.
   */
  | { kind: 'throttled'; error: ProviderError; afterMs: number | undefined }
  /** The credential was refused: final for every item of the request; never split, never retried. */
  | { kind: 'auth'; error: ProviderError }
  /** Refused for good. */
  | { kind: 'final'; error: unknown };

/**
 * A whole request's outcome. `split`: refused for a reason one item causes (too large, one bad
 * item the answer does not name); the engine sends the halves, using no attempt, and a lone
 * item that is still refused fails with `error`.
 */
export type RequestOutcome = Failure | { kind: 'split'; error: ProviderError };

/** One item's share of a batch answer. */
export type ItemOutcome<Result> =
  | { kind: 'ok'; value: Result }
  /** The provider named this item invalid: final for it, the others are not held back. */
  | { kind: 'item-fault'; error: ProviderError }
  /** Refused only because another item of the request was bad: sent again at once, using no attempt. */
  | { kind: 'resend'; error: ProviderError }
  | Failure;

export type { LogLevel } from '../types.js';

export interface ActionDefinition<Input = unknown, Output = unknown, Config = Record<string, unknown>, Host extends string = string> {
  /** Name within its provider: `identify_user` becomes `amplitude.identify_user`. */
  name: string;
  description: string;
  /** JSON Schema of `with:`; compiled once when the provider is registered. */
  input: JsonSchema;
  /** JSON Schema of the output, for docs and `ferry actions`. */
  output?: JsonSchema;
  /**
   * Checks of input values beyond the schema, declared once for both places they run: a run
   * applies them to the rendered inputs before `prepare`, `ferry validate` to the values
   * written in the file without templates, so a bad literal is found before anything runs.
   */
  checks?: readonly InputCheck<Input>[];
  /** Turns checked inputs into what `run` sends (e.g. parsing a JSON string); may throw ActionInputError. */
  prepare?(input: Input): Input;
  run(input: Input, context: ActionContext<Config, Host>): Promise<Output>;
}

/** One check of an action's inputs that the JSON Schema cannot say (see `ActionDefinition.checks`). */
export interface InputCheck<Input> {
  /**
   * The inputs the check reads. It runs when at least one of them is given; `ferry validate`
   * runs it only when none of them is a template, and it then sees only these inputs.
   */
  reads: readonly string[];
  /**
   * Throws an ActionInputError naming the field at fault. The inputs it receives match the
   * schema's `properties`, but required ones may be missing (validate passes literals only).
   */
  check(input: Partial<Input>): void;
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
  /**
   * The provider's hosts by name, each by region (`{ ingest: { us: 'https://…', eu: 'https://…' } }`):
   * the engine gives actions the account's URL of each (`context.urls.ingest`). A block's
   * `base_url` replaces them all; else its `region` picks, `us` by default. @default {}
   */
  hosts?: Record<string, Record<string, string>>;
  /** Defaults for the per-provider queue. */
  defaults: { concurrency: number; rate?: { limit: number; intervalMs: number } };
  actions: ActionDefinition[];
}

export function defineAction<Input, Output, Config = Record<string, unknown>, Host extends string = string>(
  definition: ActionDefinition<Input, Output, Config, Host>,
): ActionDefinition<Input, Output, Config, Host> {
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
