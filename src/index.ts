/**
 * ferry's public API. The usual path: `createFerry()` makes a runtime, `ferry.load(file)`
 * validates and compiles a workflow, `startRun(workflow, { ferry, secrets: envSecrets(env) })`
 * runs it and streams its events; `ferry.close()` ends. README "Embedding" has an example.
 */

// The runtime: what runs share (registry, HTTP dispatcher, limit scopes per account, caches).
export { createFerry } from './engine/runtime.js';
export type { CallRouter, Ferry, FerryOptions, DeclaredAccount } from './engine/runtime.js';

// A run: one session from its checks to its summary, and the typed stream of its events.
export { startRun, resumeRun, createRun } from './engine/session.js';
export type { RunSession, RunSessionOptions, ResumeRunOptions } from './engine/session.js';
export type { RunEvent, RunEventType, RunListener } from './engine/events.js';
export { journalEntryOf, journalSubscriber } from './engine/journal-subscriber.js';
export { envSecrets, placeholderSecrets, readSecrets } from './engine/secrets.js';
export type { SecretSource, EnvSecretsOptions } from './engine/secrets.js';
export { checkInputs, InputChecker, runInputs } from './engine/inputs.js';
export type { LogLevel, RunSummary, StepSummary, RunErrorInfo, CallSummary, RunObserver, TriggerData } from './types.js';

// Workflows: load, validate, compile.
export { loadWorkflow, loadWorkflowText, validateSource, WorkflowCompiler } from './workflow/validate.js';
export type { Workflow, Step, ActionStep, LoopStep } from './workflow/types.js';
export { compileTemplate } from './template/compile.js';

// Providers: define your own beside the built-in ones.
export { defineAction, defineProvider } from './providers/define.js';
export type { ActionContext, ActionDefinition, BatchContext, CallOptions, BatchDeclaration, BatchSpec, BatchVariant, Failure, ItemOutcome, RequestOutcome, ProviderDefinition } from './providers/define.js';
export { Registry } from './providers/registry.js';
export { builtinProviders, builtinRegistry } from './providers/index.js';

// Errors: one class per failure a caller acts on, each with a stable `code` (docs/ERRORS.md).
export * from './errors.js';

// Lower level: the engine without a session, limit scopes, journals, redaction.
export { runWorkflow, idempotencyKey, resumeStateFrom } from './engine/run.js';
export type { RunOptions, ResumeState } from './engine/run.js';
export { Limiter } from './engine/limiter.js';
export { scopeKey } from './engine/queue.js';
export type { Account, PauseEvent, QueueLimits } from './engine/queue.js';
export { FileJournal, noJournal, readJournal } from './store/journal.js';
export type { RunJournal, JournalEntry } from './store/journal.js';
export { Redactor } from './redact.js';
