import type { Dispatcher } from 'undici';
import { createAgent } from '../providers/http.js';
import { builtinProviders } from '../providers/index.js';
import { Registry } from '../providers/registry.js';
import type { RunJournal } from '../store/journal.js';
import { processIdentity, RunLocks, type ProcessIdentity } from '../store/lock.js';
import type { TemplateContext } from '../template/compile.js';
import type { Workflow } from '../workflow/types.js';
import { loadWorkflow, WorkflowCompiler } from '../workflow/validate.js';
import { accountOf, limitsOf } from './accounts.js';
import { InputChecker } from './inputs.js';
import { Limiter } from './limiter.js';
import type { Account, ProviderQueue, QueueLimits } from './queue.js';

export interface FerryOptions {
  /**
   * Providers and actions its runs may call.
   * @default a new Registry of the built-in providers (one per runtime)
   */
  registry?: Registry;
  /**
   * Where every provider call of its runs goes. A dispatcher passed in stays the caller's: `close()`
   * leaves it open.
   * @default a keep-alive undici Agent of this runtime (made on the first call), closed by `close()`
   */
  dispatcher?: Dispatcher;
  /**
   * What `<<env.NAME>>` reads in runs that do not bring their own `env`.
   * @default process.env
   */
  env?: Record<string, string | undefined>;
  /**
   * Where provider calls go instead of this process's dispatcher: a pool of processes that
   * share each account's limits and pauses (the Redis backend, DESIGN.md §7).
   * @default every call is sent by this process, under this runtime's limits
   */
  calls?: CallRouter;
}

/**
 * Sends the calls of provider accounts through something other than this process's own
 * dispatcher: the backend's call pool, where every process of the pool shares an account's
 * concurrency, rate and pauses. The runtime's limit scopes still apply in this process.
 */
export interface CallRouter {
  /**
   * The dispatcher the calls of `account` go through, made ready before a run's first step:
   * the pool learns the account and the limits `workflow` asks for (the stricter of all
   * workflows naming it hold). `secrets` are the run's values, which the router must keep out
   * of whatever leaves the process.
   */
  dispatcher(account: Account, limits: QueueLimits, workflow: string, secrets: Readonly<Record<string, string>>): Promise<Dispatcher>;
  /** This process paused the account's scope (`scopeKey`) for `ms`: the router pauses it everywhere, unless a longer pause runs. */
  pause(scope: string, ms: number): void;
}

/** A provider account a workflow names, with the limits it asks for. */
export interface DeclaredAccount {
  provider: string;
  account: Account;
  limits: QueueLimits;
  scope: ProviderQueue;
}

/**
 * What the runs of one process (or one embedding, or one test) share: providers, the HTTP
 * dispatcher, one limit scope per provider account, compiled input validators and the journals
 * written before each call. Two runtimes share nothing, so nothing in ferry lives at module level.
 */
export interface Ferry {
  readonly registry: Registry;
  /** The HTTP dispatcher of every provider call. */
  readonly dispatcher: Dispatcher;
  /** One queue per provider account: concurrency, rate and Retry-After pauses, across runs. */
  readonly limits: Limiter;
  /** Input validators of trigger schemas, compiled once each. */
  readonly inputs: InputChecker;
  /** Validates and compiles workflow files for this registry: its schema and templates are compiled once. */
  readonly workflows: WorkflowCompiler;
  /** Reads, validates and compiles a workflow file; throws WorkflowError with every issue. */
  load(file: string): Promise<Workflow>;
  readonly env: Record<string, string | undefined>;
  /**
   * Writes `journal` before each provider call of this runtime until the returned function is
   * called (runWorkflow and the run session do this for their run): what a run did is on disk
   * before a provider sees anything. A journal that cannot be written keeps the calls of its own
   * run (`signal`, its stop) from going out; other runs' calls go on.
   */
  trackJournal(journal: RunJournal, signal?: AbortSignal): () => void;
  /**
   * Makes the limit scopes of the accounts `workflow` names now, its provider blocks rendered
   * with `secrets` and `env` (a block that needs a run's inputs is left to its run). A server
   * declares every workflow it serves before the first run, so that the stricter limits of two
   * workflows on one account hold from the first call.
   */
  declare(workflow: Workflow, values: { secrets: Record<string, string>; env?: Record<string, string | undefined> }): DeclaredAccount[];
  /** Where calls go when not through `dispatcher` (FerryOptions.calls). */
  readonly calls: CallRouter | undefined;
  /** This process as the run locks of its runs name it: read from /proc once, at the first lock. */
  readonly identity: ProcessIdentity;
  /** The run locks this runtime's runs take (one holder file per state dir, see RunLocks). */
  readonly locks: RunLocks;
  /** Closes the dispatcher the runtime made; one passed in is left open. */
  close(): Promise<void>;
}

/** A runtime: see Ferry. `ferry run` makes one per command, `ferry serve` one for all its runs. */
export function createFerry(options: FerryOptions = {}): Ferry {
  return new Runtime(options);
}

class Runtime implements Ferry {
  readonly registry: Registry;
  readonly limits: Limiter;
  readonly inputs = new InputChecker();
  readonly workflows: WorkflowCompiler;
  readonly env: Record<string, string | undefined>;
  readonly calls: CallRouter | undefined;
  readonly #given: Dispatcher | undefined;
  #own: Dispatcher | undefined;
  #closed = false;
  #identity: ProcessIdentity | undefined;
  readonly locks = new RunLocks(() => this.identity);
  /** The journals written before each call, with the stop signal of the run each belongs to. */
  readonly #journals = new Map<RunJournal, AbortSignal | undefined>();

  constructor(options: FerryOptions) {
    this.registry = options.registry ?? new Registry(builtinProviders);
    this.workflows = new WorkflowCompiler(this.registry);
    this.#given = options.dispatcher;
    this.env = options.env ?? process.env;
    this.limits = new Limiter({ beforeCall: (signal) => this.#flushJournals(signal) });
    this.calls = options.calls;
    // A pause this process hears of (Amplitude's documented pause, a Retry-After) holds in
    // every process of the pool.
    if (this.calls) this.limits.onPause((event) => this.calls?.pause(event.scope, event.waitMs));
  }

  get identity(): ProcessIdentity {
    this.#identity ??= processIdentity();
    return this.#identity;
  }

  get dispatcher(): Dispatcher {
    if (this.#given) return this.#given;
    if (this.#closed) throw new Error('this ferry runtime is closed: make a new one with createFerry()');
    // Made on first use: a command that never calls a provider never loads undici.
    this.#own ??= createAgent();
    return this.#own;
  }

  load(file: string): Promise<Workflow> {
    return loadWorkflow(file, this.workflows);
  }

  trackJournal(journal: RunJournal, signal?: AbortSignal): () => void {
    this.#journals.set(journal, signal);
    return () => void this.#journals.delete(journal);
  }

  /**
   * Writes every tracked journal. Only the calling run's failure keeps the call back: another
   * run whose journal failed is stopped by its own failure (its session's `onFailure`), and its
   * own calls find their journal failed here.
   */
  #flushJournals(caller: AbortSignal | undefined): void | Promise<void> {
    let failure: unknown;
    let writing: Promise<void>[] | undefined;
    for (const [journal, owner] of this.#journals) {
      try {
        const written = journal.flush?.();
        // A journal that writes elsewhere (Redis) is waited for; another run's failure there
        // stops that run, not this call.
        if (written) (writing ??= []).push(owner === caller ? written : written.catch(() => undefined));
      } catch (error) {
        if (owner === caller) failure ??= error;
      }
    }
    if (failure !== undefined) throw failure;
    if (writing) return Promise.all(writing).then(() => undefined);
  }


  declare(workflow: Workflow, values: { secrets: Record<string, string>; env?: Record<string, string | undefined> }): DeclaredAccount[] {
    const context: TemplateContext = {
      inputs: {},
      trigger: { type: 'manual', body: null, headers: {}, query: {} },
      steps: {},
      env: { ...(values.env ?? this.env) },
      secrets: values.secrets,
      run: { id: '' },
      workflow: { name: workflow.name },
    };
    const declared: DeclaredAccount[] = [];
    for (const [provider, settings] of Object.entries(workflow.providers)) {
      const definition = this.registry.provider(provider);
      if (!definition) continue;
      let config: Record<string, unknown>;
      try {
        config = settings.config(context) as Record<string, unknown>;
      } catch {
        continue;
      }
      const account = accountOf(definition, provider, config);
      const limits = limitsOf(settings, definition);
      declared.push({ provider, account, limits, scope: this.limits.scope(account, limits) });
    }
    return declared;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.locks.close();
    const own = this.#own;
    this.#own = undefined;
    await own?.close();
  }
}
