import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Dispatcher } from 'undici';
import { FerryError, ProviderError, RunFailedError } from '../errors.js';
import type { TemplateContext } from '../template/compile.js';
import type { BatchContext, BatchDeclaration, BatchSpec, BatchVariant } from '../providers/define.js';
import type { RegisteredAction } from '../providers/registry.js';
import type { ActionStep, RetryPolicy, Workflow } from '../workflow/types.js';
import type { BatchCall, BatchSettings } from './batcher.js';
import { accountOf, limitsOf } from './accounts.js';
import { dataRoots, type DataRoots } from './data-paths.js';
import { observe, RunEvents } from './events.js';
import { JOURNAL_EVENTS, journalSubscriber } from './journal-subscriber.js';
import type { Feed } from './feed.js';
import type { Limiter } from './limiter.js';
import type { ProviderQueue } from './queue.js';
import type { RunJournal, RunMode } from '../store/journal.js';
import type { Redactor } from '../redact.js';
import type { ResumeState } from './resume.js';
import type { Ferry } from './runtime.js';
import type { InnerStepSummary, RunErrorInfo, RunObserver, RunSummary, TriggerData } from '../types.js';

/**
 * What every call of one action step shares within a run, resolved on its first call. It is
 * also the BatchContext that the step's batch specs are made from.
 */
export interface StepRuntime extends BatchContext {
  readonly step: ActionStep;
  readonly registered: RegisteredAction;
  readonly provider: string;
  readonly config: Record<string, unknown>;
  /** The account's URL of each host the provider declares (accounts.ts, accountUrls). */
  readonly urls: Readonly<Record<string, string>>;
  /** Calls on the wire are not cut by a graceful stop: their timeout bounds them. */
  readonly signal: undefined;
  readonly queue: ProviderQueue;
  /** Optional inputs written as templates: left out of the call when they render to null (DESIGN §2). */
  readonly omitWhenNull: readonly string[];
  readonly policy: RetryPolicy;
  readonly baseDir: string;
  readonly timeoutMs: number;
  /** The provider block's `max_wait`: the longest pause a call may wait for. */
  readonly maxWaitMs: number;
  readonly batch: BatchSettings;
  /** The step's batch specs by declaration and variant, each made on its first call. */
  readonly specs: Map<BatchDeclaration<unknown, unknown>, Map<BatchVariant, BatchSpec<unknown, unknown>>>;
  /** What its batched calls share in the batcher; made at the first one (it needs the run's dispatcher). */
  batchCall?: BatchCall;
}

export interface RunOptions {
  /**
   * The runtime the run belongs to (createFerry): its registry, HTTP dispatcher, per-account
   * limit scopes (shared with its other runs) and journal flushing.
   */
  ferry: Ferry;
  /** @default a new time-sortable id */
  runId?: string;
  /** Validated inputs (see checkInputs). */
  inputs?: Record<string, unknown>;
  /** @default { type: 'manual' } */
  trigger?: TriggerData;
  /** Values of the workflow's declared secrets, by name. */
  secrets?: Record<string, string>;
  /** @default the runtime's `env` */
  env?: Record<string, string | undefined>;
  /** Recorded in the journal, so that `ferry retry` resumes a sandbox run in the sandbox. @default 'live' */
  mode?: RunMode;
  /** Provider block fields that replace the workflow's (the sandbox sets base_url and keys). */
  providerOverrides?: Record<string, Record<string, unknown>>;
  /** Hooks for the run's steps and logs; a listener over `events` (kept for embedders of earlier versions). */
  observer?: RunObserver;
  /** Where the run's events go; the run session passes its own. @default a new stream, with `journal` and `observer` subscribed */
  events?: RunEvents;
  /** Collects secret values; the caller redacts what it prints with it. */
  redactor?: Redactor;
  /**
   * Graceful stop (SIGINT/SIGTERM): no new step, loop item or call starts; calls on the wire
   * finish within their timeout and are recorded. The run ends `failed` and can be retried.
   */
  signal?: AbortSignal;
  /** Where entries go: subscribed to the run's events (journal-subscriber.ts). @default nothing is kept */
  journal?: RunJournal;
  /** Steps that completed in an earlier attempt of this run (`ferry retry`), from its journal. */
  resume?: ResumeState;
  /**
   * With `resume`: send the loop items that earlier attempts set aside (`on_error: continue`)
   * again. `ferry retry` asks for it; a run taken up after a crash or a restart does not, and
   * keeps them failed, as its earlier attempt decided. @default false
   */
  resendFailed?: boolean;
  /**
   * The state dir of the run. A file path that comes from a template (`loop.file`, an export's
   * `output`) must resolve inside the workflow's folder or this folder.
   * @default only the workflow's folder
   */
  stateDir?: string;
}

export interface ItemScope {
  context: TemplateContext;
  /** Outputs of steps visible in this scope, by id (also referenced from `context.steps`). */
  steps: Record<string, { output: unknown; status: string }>;
  item: number[];
  /** Inside a loop: per inner step aggregates. */
  inner: Map<string, InnerStepSummary> | undefined;
  /** Inside a loop: the innermost loop's slots, which its batched calls report to (feed.ts). */
  feed?: Feed;
  /** Inside a file loop: the file (as the workflow names it) and line the item came from, for messages. */
  row?: { file: string; line: number } | undefined;
}

/**
 * Thrown out of a loop item whose step has `on_error: continue` and failed: the loop sets the
 * item aside (failed.jsonl) and goes on, where any other failure stops the run.
 */
export class ItemSetAside extends Error {
  constructor(
    readonly step: string,
    readonly failure: RunFailedError,
  ) {
    super(failure.message);
  }
}

/** One run in progress: what every step of it shares. */
export class Run {
  readonly summary: RunSummary;
  readonly providerConfigs = new Map<string, Record<string, unknown>>();
  /** Each provider's `batch:` setting, read from its config once per run. */
  readonly batchSettings = new Map<string, BatchSettings>();
  /** What every call of an action step shares, made on the step's first call (steps.ts). */
  readonly stepRuntimes = new Map<ActionStep, StepRuntime>();
  failure: RunFailedError | undefined;
  readonly ferry: Ferry;
  /** Each provider's limit scope (its account's queue), resolved once per run. */
  readonly #scopes = new Map<string, ProviderQueue>();
  readonly signal: AbortSignal;
  /** What happens in the run, as it happens: the journal, displays and recorders subscribe. */
  readonly events: RunEvents;
  /** Steps running now, for the interruption message. */
  readonly active = new Set<string>();
  /** Loop items set aside (`on_error: continue`) that are failed in this attempt, earlier ones kept failed included. */
  failedItems = 0;
  /** The step of the first item set aside: the run's error names it. */
  firstSetAside: string | undefined;

  constructor(
    readonly workflow: Workflow,
    readonly options: RunOptions,
    readonly runId: string,
  ) {
    this.ferry = options.ferry;
    this.signal = options.signal ?? new AbortController().signal;
    // Every call waiting in a queue, a pause or a backoff listens for the stop: a loop has
    // many at once, and each removes its listener when its wait ends.
    setMaxListeners(0, this.signal);
    this.events = options.events ?? new RunEvents();
    if (options.journal) this.events.first(journalSubscriber(options.journal), JOURNAL_EVENTS);
    if (options.observer) this.events.on(observe(options.observer));
    this.summary = { runId, workflow: workflow.name, status: 'succeeded', error: null, steps: {}, startedAt: new Date().toISOString(), durationMs: 0 };
  }

  get limiter(): Limiter {
    return this.ferry.limits;
  }

  /** The runtime's dispatcher, asked for at the first call (a run without calls never makes one). */
  get dispatcher(): Dispatcher {
    return this.ferry.dispatcher;
  }

  /** Each provider's dispatcher from the runtime's call router (the backend's pool), when it has one. */
  readonly #routed = new Map<string, Dispatcher>();

  /**
   * Asks the runtime's call router (if any) for the dispatcher of each account the run names,
   * before the first step: the pool knows the account and this workflow's limits from then on.
   */
  async routeCalls(secrets: Readonly<Record<string, string>>): Promise<void> {
    const router = this.ferry.calls;
    if (!router) return;
    for (const provider of this.providerConfigs.keys()) {
      const definition = this.ferry.registry.provider(provider);
      if (!definition || this.#routed.has(provider)) continue;
      const account = accountOf(definition, provider, this.providerConfigs.get(provider) ?? {});
      this.#routed.set(provider, await router.dispatcher(account, limitsOf(this.workflow.providers[provider], definition), this.workflow.name, secrets));
    }
  }

  /** Where `provider`'s calls go: its account's routed dispatcher, else this process's. */
  dispatcherFor(provider: string): Dispatcher {
    return this.#routed.get(provider) ?? this.ferry.dispatcher;
  }

  /**
   * The limit scope of the account this run's `provider` block names (rendered, overrides
   * applied), with this workflow's limits: stricter ones tighten a scope other runs share.
   */
  scope(provider: string): ProviderQueue | undefined {
    let queue = this.#scopes.get(provider);
    if (queue) return queue;
    const definition = this.ferry.registry.provider(provider);
    if (!definition) return undefined;
    const account = accountOf(definition, provider, this.providerConfigs.get(provider) ?? {});
    queue = this.ferry.limits.scope(account, limitsOf(this.workflow.providers[provider], definition));
    this.#scopes.set(provider, queue);
    return queue;
  }

  readonly #keyPrefixes = new Map<string, string>();

  /** idempotencyKey(), with the run+step part of the hash computed once per step. */
  keyFor(stepId: string, item: readonly number[], salt?: string): string {
    let prefix = this.#keyPrefixes.get(stepId);
    if (prefix === undefined) {
      prefix = keyPrefix(this.runId, stepId);
      this.#keyPrefixes.set(stepId, prefix);
    }
    return formatKey(prefix, item, salt);
  }

  #dataRoots: Promise<DataRoots> | undefined;
  /** Where paths from data may point, with symlinks resolved once per run. */
  dataRoots(): Promise<DataRoots> {
    this.#dataRoots ??= dataRoots(this.workflow.file, this.options.stateDir);
    return this.#dataRoots;
  }

  /** Counts a loop item set aside by `step` (on_error: continue). */
  setAside(step: string): void {
    this.failedItems++;
    this.firstSetAside ??= step;
  }

  get stopping(): boolean {
    return this.failure !== undefined || this.signal.aborted;
  }
}

export function interruption(run: Run): RunFailedError {
  const step = [...run.active][0] ?? '(run)';
  return new RunFailedError(step, null, `run interrupted by ${String(run.signal.reason ?? 'a signal')} before it finished`);
}

export function errorInfo(failure: RunFailedError): RunErrorInfo {
  const cause = failure.cause;
  const info: RunErrorInfo = { step: failure.step, item: failure.item?.at(-1) ?? null, message: failure.message };
  if (failure.item && failure.item.length > 1) info.itemPath = failure.item;
  if (failure.line !== undefined) info.line = failure.line;
  if (cause instanceof FerryError) info.code = cause.code;
  if (cause instanceof ProviderError && cause.status !== undefined) info.status = cause.status;
  if (cause instanceof ProviderError && cause.answer !== undefined) info.provider = { name: cause.provider, ...cause.answer };
  return info;
}

/**
 * Stable across retries and resumes of one run, new for a new run (DESIGN.md §4): a hash of
 * run id and step id, then the loop position. At most ~60 characters for deep loops, within
 * Segment's 100.
 */
export function idempotencyKey(runId: string, stepId: string, item: readonly number[], salt?: string): string {
  return formatKey(keyPrefix(runId, stepId), item, salt);
}

function keyPrefix(runId: string, stepId: string): string {
  return createHash('sha256').update(`${runId}\0${stepId}`).digest('hex').slice(0, 24);
}

function formatKey(prefix: string, item: readonly number[], salt: string | undefined): string {
  return `ferry-${prefix}-${item.join('.') || '0'}${salt ? `-${salt}` : ''}`;
}
