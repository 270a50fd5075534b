import path from 'node:path';
import { Ajv } from 'ajv';
import { WorkflowError, type WorkflowIssue } from '../errors.js';
import type { RegisteredAction, Registry } from '../providers/registry.js';
import { isTemplate, templateErrorOffset, Templates, type CompiledTemplate, type TemplateRef } from '../template/compile.js';
import { compileValue, hasTemplates, type TemplateSite } from '../template/value.js';
import { locate, parseSource, readSource, Reporter, sourceData, tooLarge, type SourceDocument, type YamlPath } from './load.js';
import { InputSchemas } from './input-schema.js';
import { buildWorkflowSchema, type JsonSchema } from './schema.js';
import { schemaIssues } from './schema-errors.js';
import { cronProblem, timezoneProblem } from './schedule.js';
import { DEFAULT_RETRY, DEFAULT_TIMEOUT_MS, parseDuration, type ProviderSettings, type RetryPolicy, type Step, type Trigger, type Workflow } from './types.js';
import { checkReferences, type Scope } from './references.js';
import { OutputReads } from './output-reads.js';
import { MAX_FILE_BYTES, MAX_INPUT_SCHEMA_NODES, MAX_LOOP_DEPTH, MAX_STEPS } from '../limits.js';
import { validateWorkflow as precompiled, workflowSchemaJson as precompiledSchema, type StandaloneValidator } from './validators.generated.js';

export interface ValidationResult {
  workflow: Workflow | undefined;
  issues: WorkflowIssue[];
}

/** A compiled workflow schema: `errors` holds Ajv's errors (allErrors, verbose) after a failed call. */
export type WorkflowValidator = StandaloneValidator;

/**
 * The Ajv options of the workflow validator, here and in scripts/validators.mjs (which
 * adds `code.source` to print it). Unoptimised code compiles in about half the time.
 */
export const WORKFLOW_AJV_OPTIONS = { allErrors: true, strict: false, verbose: true, code: { optimize: false } } as const;

/**
 * What validating and compiling workflows costs once: the workflow schema of a registry's
 * actions, the templates and the trigger input schemas seen so far. One per runtime or
 * command (`ferry validate` of 200 files shares one); two never share anything.
 */
export class WorkflowCompiler {
  readonly templates = new Templates();
  readonly inputSchemas = new InputSchemas();
  #schema: { schema: JsonSchema; validate: WorkflowValidator } | undefined;

  constructor(readonly registry: Registry) {}

  /**
   * The workflow schema for the registry's actions, compiled on first use. `npm run build`
   * generates the validator of the built-in registry's schema (compiling it at start-up took
   * a quarter of a second); a registry whose schema is exactly that one uses it, any other
   * has its schema compiled here.
   */
  get schema(): { schema: JsonSchema; validate: WorkflowValidator } {
    if (!this.#schema) {
      const schema = buildWorkflowSchema(this.registry.providers.filter((p) => p.name !== 'core' || p.actions.length > 0));
      const validate = JSON.stringify(schema) === precompiledSchema ? precompiled : new Ajv(WORKFLOW_AJV_OPTIONS).compile(schema);
      this.#schema = { schema, validate };
    }
    return this.#schema;
  }
}

/** A registry is compiled for one call; a WorkflowCompiler keeps its work across calls. */
const compilerOf = (by: Registry | WorkflowCompiler): WorkflowCompiler => (by instanceof WorkflowCompiler ? by : new WorkflowCompiler(by));

/** The workflow schema for a registry's actions (see WorkflowCompiler.schema). */
export function workflowSchema(by: Registry | WorkflowCompiler): { schema: JsonSchema; validate: WorkflowValidator } {
  return compilerOf(by).schema;
}

/** Validates workflow text and, when it is valid, builds the runnable workflow. */
export function validateSource(file: string, text: string, by: Registry | WorkflowCompiler): ValidationResult {
  const compiler = compilerOf(by);
  // Text handed in directly (not through readSource) meets the same bound before it is parsed.
  if (text.length > MAX_FILE_BYTES || Buffer.byteLength(text) > MAX_FILE_BYTES) {
    return { workflow: undefined, issues: [{ file, line: 1, col: 1, code: 'FERRY_FILE_TOO_LARGE', message: tooLarge(Buffer.byteLength(text)) }] };
  }
  const { source, issues } = parseSource(file, text);
  if (issues.length > 0) return { workflow: undefined, issues: sortIssues(issues) };
  const data = sourceData(source);
  const report = new Reporter(source);
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    report.at([], 'FERRY_WORKFLOW_NOT_MAPPING', 'a workflow file is a YAML mapping with `name` and `steps`');
    return { workflow: undefined, issues: report.issues };
  }
  const { validate } = compiler.schema;
  if (!validate(data)) schemaIssues(validate.errors ?? [], report);
  const workflow = buildWorkflow(data as Record<string, unknown>, source, compiler, report);
  const all = sortIssues(dedupe(report.issues));
  return { workflow: all.length === 0 ? workflow : undefined, issues: all };
}

/** Loads a workflow or throws a WorkflowError holding every issue of the file. */
export function loadWorkflowText(file: string, text: string, by: Registry | WorkflowCompiler): Workflow {
  const result = validateSource(file, text, by);
  if (!result.workflow) throw new WorkflowError(result.issues);
  return result.workflow;
}

function dedupe(issues: WorkflowIssue[]): WorkflowIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.line}:${i.col}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function sortIssues(issues: WorkflowIssue[]): WorkflowIssue[] {
  return [...issues].sort((a, b) => a.line - b.line || a.col - b.col);
}

// ---------------------------------------------------------------------------------------
// Semantic checks and the typed workflow, in one walk.

const obj = (v: unknown): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function durationOr(v: unknown, fallback: number): number {
  return (typeof v === 'string' ? parseDuration(v) : undefined) ?? fallback;
}

function retryOf(v: unknown, base: RetryPolicy): RetryPolicy {
  const r = obj(v);
  const b = obj(r.backoff);
  return {
    attempts: typeof r.attempts === 'number' ? r.attempts : base.attempts,
    initialMs: durationOr(b.initial, base.initialMs),
    factor: typeof b.factor === 'number' ? b.factor : base.factor,
    maxMs: durationOr(b.max, base.maxMs),
    jitter: b.jitter === 'none' ? 'none' : b.jitter === 'full' ? 'full' : base.jitter,
  };
}

interface Walk {
  source: SourceDocument;
  report: Reporter;
  registry: Registry;
  compiler: WorkflowCompiler;
  secrets: Set<string>;
  /** Declared input names, or undefined when no trigger declares inputs. */
  inputs: Set<string> | undefined;
  /** Every step id with its path, to tell "later step" and "inside a loop" apart. */
  allSteps: Map<string, { path: YamlPath; loop: string | undefined; order: number }>;
  loopItems: Map<string, string>;
  /** Steps counted so far in pre-order, by collectSteps and again by buildSteps. */
  counted: number;
  /** What the templates read of step outputs: decides what loops keep of each item. */
  outputReads: OutputReads;
}

function compileAt(walk: Walk, value: unknown, p: YamlPath, scope: Scope, lenient = false, sites: TemplateSite[] = []): ReturnType<typeof compileValue> {
  const compiled = compileValue(value, {
    lenient,
    templates: walk.compiler.templates,
    sites,
    onError: (error, at) => walk.report.atOffset([...p, ...at], templateErrorOffset(error), error.code, `template: ${error.message}`),
  });
  for (const site of sites) checkSite(walk, site.refs, [...p, ...site.path], scope, site.source);
  return compiled;
}

function checkSite(walk: Walk, refs: readonly TemplateRef[], p: YamlPath, scope: Scope, source: string): void {
  walk.outputReads.add(refs, source);
  for (const problem of checkReferences(refs, scope, walk)) {
    walk.report.atOffset(p, problem.offset, problem.code, problem.message);
  }
}

function buildWorkflow(data: Record<string, unknown>, source: SourceDocument, compiler: WorkflowCompiler, report: Reporter): Workflow {
  const { registry } = compiler;
  const triggersData = arr(data.triggers);
  const declaredInputs = triggersData.flatMap((t) => Object.keys(obj(obj(t).inputs)));
  const anyInputs = triggersData.some((t) => obj(t).inputs !== undefined);
  const walk: Walk = {
    source,
    report,
    registry,
    compiler,
    secrets: new Set(arr(data.secrets).filter((s): s is string => typeof s === 'string')),
    inputs: anyInputs ? new Set(declaredInputs) : undefined,
    allSteps: new Map(),
    loopItems: new Map(),
    counted: 0,
    outputReads: new OutputReads(),
  };
  collectSteps(arr(data.steps), ['steps'], undefined, walk);
  walk.counted = 0;
  const topScope: Scope = { order: 0, loops: [], items: [], where: 'workflow' };

  const triggers: Trigger[] = [];
  let manual = 0;
  const hookPaths = new Map<string, number>();
  triggersData.forEach((t, i) => {
    const trig = obj(t);
    const inputs = trig.inputs === undefined ? undefined : (obj(trig.inputs) as Record<string, Record<string, unknown>>);
    if (inputs) checkInputSchemas(inputs, ['triggers', i, 'inputs'], walk);
    if (trig.type === 'manual') {
      manual++;
      if (manual > 1) report.at(['triggers', i], 'FERRY_TRIGGER_DUPLICATE', 'a workflow has at most one manual trigger');
      triggers.push({ type: 'manual', inputs });
    } else if (trig.type === 'webhook') {
      const hookPath = str(trig.path) ?? '';
      const first = hookPaths.get(hookPath);
      if (first !== undefined) {
        const line = locate(source, ['triggers', first, 'path']).line;
        report.at(['triggers', i, 'path'], 'FERRY_TRIGGER_DUPLICATE', `webhook path \`${hookPath}\` is already used by the trigger at line ${line}; each webhook trigger needs its own path`);
      } else {
        hookPaths.set(hookPath, i);
      }
      const secretScope: Scope = { ...topScope, where: 'trigger' };
      const secret = trig.secret === undefined ? undefined : compileAt(walk, trig.secret, ['triggers', i, 'secret'], secretScope);
      triggers.push({ type: 'webhook', path: hookPath, secret, inputs });
    } else if (trig.type === 'schedule') {
      triggers.push(scheduleTrigger(trig, ['triggers', i], triggersData, walk));
    }
  });

  const providers: Record<string, ProviderSettings> = {};
  for (const [name, block] of Object.entries(obj(data.providers))) {
    const { concurrency, rate, max_wait: maxWait, ...config } = obj(block);
    const rateObj = obj(rate);
    providers[name] = {
      config: compileAt(walk, config, ['providers', name], { ...topScope, where: 'provider' }),
      concurrency: typeof concurrency === 'number' ? concurrency : undefined,
      rate: typeof rateObj.limit === 'number' ? { limit: rateObj.limit, intervalMs: durationOr(rateObj.interval, 1000) } : undefined,
      maxWaitMs: typeof maxWait === 'string' ? parseDuration(maxWait) : undefined,
    };
  }

  const retry = retryOf(data.retry, DEFAULT_RETRY);
  const steps = buildSteps(arr(data.steps), ['steps'], topScope, walk, Object.keys(obj(data.providers)));
  walk.outputReads.apply(steps);
  return {
    file: path.resolve(source.file),
    source: source.text,
    name: str(data.name) ?? '',
    description: str(data.description),
    triggers,
    secrets: [...walk.secrets],
    providers,
    retry,
    timeoutMs: durationOr(data.timeout, DEFAULT_TIMEOUT_MS),
    steps,
  };
}

/** A schedule trigger, its cron and zone checked; a scheduled run has no inputs, so every declared one needs a default. */
function scheduleTrigger(trig: Record<string, unknown>, p: YamlPath, triggersData: unknown[], walk: Walk): Trigger {
  const cron = str(trig.cron) ?? '';
  const timezone = str(trig.timezone) ?? 'UTC';
  const cronIssue = typeof trig.cron === 'string' ? cronProblem(cron) : undefined;
  if (cronIssue) walk.report.at([...p, 'cron'], 'FERRY_SCHEDULE_CRON', `cron \`${cron}\`: ${cronIssue}`);
  const zoneIssue = typeof trig.timezone === 'string' ? timezoneProblem(timezone) : undefined;
  if (zoneIssue) walk.report.at([...p, 'timezone'], 'FERRY_SCHEDULE_TIMEZONE', `timezone ${zoneIssue}`);
  // Said once, at the first schedule trigger.
  const first = triggersData.findIndex((t) => obj(t).type === 'schedule') === p[1];
  const declared = first ? obj(triggersData.map(obj).find((t) => t.inputs !== undefined)?.inputs) : {};
  const required = Object.entries(declared).filter(([, schema]) => !('default' in obj(schema))).map(([name]) => `\`${name}\``);
  if (required.length > 0) {
    walk.report.at([...p, 'type'], 'FERRY_SCHEDULE_INPUTS', `a scheduled run starts without inputs, and ${required.length === 1 ? `input ${required[0]} has` : `inputs ${required.join(', ')} have`} no \`default\`: give ${required.length === 1 ? 'it' : 'each'} a default, or read \`<<trigger.scheduled_at>>\` instead`);
  }
  return { type: 'schedule', cron, timezone };
}

function checkInputSchemas(inputs: Record<string, unknown>, p: YamlPath, walk: Walk): void {
  if (countNodes(inputs) > MAX_INPUT_SCHEMA_NODES) {
    walk.report.at(p, 'FERRY_INPUT_SCHEMA_TOO_LARGE', `the inputs of a trigger are described by at most ${MAX_INPUT_SCHEMA_NODES} keys and list items; a run compiles them before it starts. Declare fewer inputs, or take a large object as one input of \`type: object\``);
    return;
  }
  for (const [name, schema] of Object.entries(inputs)) {
    const problem = walk.compiler.inputSchemas.problem(obj(schema));
    if (problem !== undefined) walk.report.at([...p, name], 'FERRY_INPUT_SCHEMA', `input \`${name}\` is not a valid JSON Schema: ${problem}`);
  }
}

/** Keys and list items at every level, counted without recursion. */
function countNodes(value: unknown): number {
  let count = 0;
  const stack = [value];
  while (stack.length > 0 && count <= MAX_INPUT_SCHEMA_NODES) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object') continue;
    const children = Array.isArray(v) ? v : Object.values(v);
    count += children.length;
    if (count <= MAX_INPUT_SCHEMA_NODES) for (const child of children) stack.push(child);
  }
  return count;
}

function collectSteps(steps: unknown[], p: YamlPath, loop: string | undefined, walk: Walk): void {
  steps.forEach((s, i) => {
    const step = obj(s);
    const id = str(step.id);
    const at = [...p, i];
    const order = walk.counted++;
    if (order === MAX_STEPS) walk.report.at(at, 'FERRY_TOO_MANY_STEPS', `a workflow has at most ${MAX_STEPS} steps, loops and the steps inside them included; split it into several workflows, or loop over data instead of writing a step per item`);
    if (id !== undefined) {
      const first = walk.allSteps.get(id);
      if (first) {
        walk.report.at([...at, 'id'], 'FERRY_STEP_DUPLICATE', `duplicate step id \`${id}\` (first used at line ${locate(walk.source, [...first.path, 'id']).line}); step ids are unique in a workflow, loops included`);
      } else {
        walk.allSteps.set(id, { path: at, loop, order });
      }
    }
    if (step.loop !== undefined && id !== undefined) walk.loopItems.set(str(obj(step.loop).as) ?? 'item', id);
    if (step.loop !== undefined) collectSteps(arr(step.steps), [...at, 'steps'], id, walk);
  });
}

const RESERVED_NAMES = new Set(['inputs', 'trigger', 'steps', 'env', 'secrets', 'loop', 'run', 'workflow', 'this']);

function buildSteps(stepsData: unknown[], p: YamlPath, scope: Scope, walk: Walk, providerBlocks: string[]): Step[] {
  const steps: Step[] = [];
  stepsData.forEach((s, i) => {
    const data = obj(s);
    const at = [...p, i];
    const id = str(data.id) ?? `#${i}`;
    const stepScope: Scope = { ...scope, order: walk.counted++, where: `step \`${id}\`` };
    const line = locate(walk.source, at).line;
    const cond =
      data.if === undefined ? undefined
      : typeof data.if === 'boolean' ? data.if
      : compileCondition(walk, data.if, [...at, 'if'], stepScope);
    if (data.loop !== undefined) {
      const loop = obj(data.loop);
      const as = str(loop.as) ?? 'item';
      if (RESERVED_NAMES.has(as)) walk.report.at([...at, 'loop', 'as'], 'FERRY_LOOP_AS_RESERVED', `\`as: ${as}\` hides the built-in \`${as}\`; pick another item name`);
      const over = loop.over === undefined ? undefined : compileAt(walk, loop.over, [...at, 'loop', 'over'], stepScope);
      // A literal loop.file is the author's choice; a template's value may come from data and
      // is checked against the allowed folders when the loop starts (engine/data-paths.ts).
      const fileText = str(loop.file);
      const fileTemplate = fileText !== undefined && isTemplate(fileText) ? compileAt(walk, fileText, [...at, 'loop', 'file'], stepScope) : undefined;
      const file = fileText === undefined || fileTemplate ? undefined : path.resolve(path.dirname(path.resolve(walk.source.file)), fileText);
      const inner: Scope = { order: stepScope.order, loops: [...scope.loops, id], items: [...scope.items, as], where: `step \`${id}\`` };
      if (inner.loops.length === MAX_LOOP_DEPTH + 1) walk.report.at([...at, 'loop'], 'FERRY_LOOP_TOO_DEEP', `loops nest at most ${MAX_LOOP_DEPTH} deep; read the inner data with its own workflow, or flatten it into one list`);
      steps.push({
        kind: 'loop',
        id,
        if: cond,
        line,
        over,
        file,
        fileTemplate,
        as,
        concurrency: typeof loop.concurrency === 'number' ? loop.concurrency : 1,
        steps: buildSteps(arr(data.steps), [...at, 'steps'], inner, walk, providerBlocks),
      });
    } else {
      const action = str(data.action) ?? '';
      const registered = walk.registry.action(action);
      const providerName = registered?.provider.name;
      const required = registered?.provider.config?.required ?? [];
      if (registered && providerName && required.length > 0 && !providerBlocks.includes(providerName)) {
        walk.report.at([...at, 'action'], 'FERRY_PROVIDER_MISSING', `\`${action}\` needs a \`providers.${providerName}\` block with ${required.map((r) => `\`${r}\``).join(', ')}`);
      }
      if (registered) checkLiterals(walk, registered, data.with, [...at, 'with']);
      const withSites: TemplateSite[] = [];
      steps.push({
        kind: 'action',
        id,
        if: cond,
        line,
        action,
        with: compileAt(walk, data.with ?? {}, [...at, 'with'], stepScope, false, withSites),
        templated: new Set(withSites.map((site) => String(site.path[0] ?? '*'))),
        retry: data.retry === undefined ? undefined : retryOf(data.retry, DEFAULT_RETRY),
        timeoutMs: data.timeout === undefined ? undefined : durationOr(data.timeout, DEFAULT_TIMEOUT_MS),
        onError: onErrorOf(walk, data.on_error, [...at, 'on_error'], scope),
        outputReads: undefined,
      });
    }
  });
  return steps;
}

/** `on_error: continue` lets a loop go on past a failed item: outside a loop there is nothing to go on with. */
function onErrorOf(walk: Walk, value: unknown, p: YamlPath, scope: Scope): 'stop' | 'continue' {
  if (value !== 'continue') return 'stop';
  if (scope.loops.length === 0) {
    walk.report.at(p, 'FERRY_ON_ERROR_OUTSIDE_LOOP', '`on_error: continue` applies to steps inside a loop (a failed item is set aside and the loop goes on); outside a loop a failed step stops the run. Move the step into a loop, or remove `on_error`');
  }
  return 'continue';
}

/** The action's own checks (the ones a run applies) on the inputs written without templates. */
function checkLiterals(walk: Walk, action: RegisteredAction, given: unknown, p: YamlPath): void {
  const literal: Record<string, unknown> = {};
  const templated = new Set<string>();
  for (const [name, value] of Object.entries(obj(given))) {
    if (hasTemplates(value)) templated.add(name);
    else literal[name] = value;
  }
  for (const problem of action.checkLiterals(literal, templated)) {
    walk.report.at([...p, ...problem.field.split('/').filter(Boolean)], problem.code, `\`${action.fullName}\`: ${problem.message}`);
  }
}

function compileCondition(walk: Walk, value: unknown, p: YamlPath, scope: Scope): CompiledTemplate | boolean | undefined {
  if (typeof value !== 'string') return undefined;
  if (!isTemplate(value)) return undefined; // the schema reports it
  const { template, refs, errors } = walk.compiler.templates.inspect(value, { lenient: true });
  checkSite(walk, refs, p, scope, value);
  for (const error of errors) walk.report.atOffset(p, templateErrorOffset(error), error.code, `template: ${error.message}`);
  return template;
}

/** Reads, validates and compiles a workflow file; throws WorkflowError with every issue. */
export async function loadWorkflow(file: string, by: Registry | WorkflowCompiler): Promise<Workflow> {
  const read = await readSource(file);
  if ('issue' in read) throw new WorkflowError([read.issue]);
  return loadWorkflowText(file, read.text, by);
}
