/** ferry's public API: define providers and actions, load and run workflows. */
export { defineAction, defineProvider } from './providers/define.js';
export type { ActionContext, ActionDefinition, LogLevel, ProviderDefinition } from './providers/define.js';
export { Registry } from './providers/registry.js';
export { builtinProviders, builtinRegistry } from './providers/index.js';
export { loadWorkflow, loadWorkflowText, validateSource } from './workflow/validate.js';
export type { Workflow, Step, ActionStep, LoopStep } from './workflow/types.js';
export { runWorkflow, idempotencyKey } from './engine/run.js';
export type { RunOptions } from './engine/run.js';
export type { RunSummary, StepSummary, RunObserver, TriggerData } from './engine/types.js';
export { Limiter } from './engine/limiter.js';
export { checkInputs } from './engine/inputs.js';
export { compileTemplate } from './template/compile.js';
export * from './errors.js';
export { FileJournal, noJournal, readJournal } from './store/journal.js';
export type { RunJournal, JournalEntry } from './store/journal.js';
export { resumeStateFrom } from './engine/run.js';
export type { ResumeState } from './engine/run.js';
