import path from 'node:path';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { TemplateError, WorkflowError, type WorkflowIssue } from '../errors.js';
import type { Registry } from '../providers/registry.js';
import { templateErrorOffset, type CompiledTemplate } from '../template/compile.js';
import { compileValue, type TemplateSite } from '../template/value.js';
import { compileTemplate, isTemplate } from '../template/compile.js';
import { locate, locateInScalar, parseSource, type SourceDocument, type YamlPath } from './load.js';
import { buildWorkflowSchema, DURATION_PATTERN, IDENT_PATTERN, NAME_PATTERN, STEP_ID_PATTERN, type JsonSchema } from './schema.js';
import { DEFAULT_RETRY, DEFAULT_TIMEOUT_MS, parseDuration, type ProviderSettings, type RetryPolicy, type Step, type Trigger, type Workflow } from './types.js';
import { checkReferences, type Scope } from './references.js';

export interface ValidationResult {
  workflow: Workflow | undefined;
  issues: WorkflowIssue[];
}

const compiledSchemas = new WeakMap<Registry, { schema: JsonSchema; validate: ValidateFunction }>();

/** The workflow schema for a registry's actions, compiled once per registry. */
export function workflowSchema(registry: Registry): { schema: JsonSchema; validate: ValidateFunction } {
  let entry = compiledSchemas.get(registry);
  if (!entry) {
    const schema = buildWorkflowSchema(registry.providers.filter((p) => p.name !== 'core' || p.actions.length > 0));
    const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
    entry = { schema, validate: ajv.compile(schema) };
    compiledSchemas.set(registry, entry);
  }
  return entry;
}

/** Validates workflow text and, when it is valid, builds the runnable workflow. */
export function validateSource(file: string, text: string, registry: Registry): ValidationResult {
  const { source, issues } = parseSource(file, text);
  if (issues.length > 0) return { workflow: undefined, issues: sortIssues(issues) };
  const data: unknown = source.doc.toJS({ maxAliasCount: 100 });
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return { workflow: undefined, issues: [{ file, line: 1, col: 1, code: 'FERRY_WORKFLOW_NOT_MAPPING', message: 'a workflow file is a YAML mapping with `name` and `steps`' }] };
  }
  const { validate } = workflowSchema(registry);
  const report = new Reporter(source);
  if (!validate(data)) schemaIssues(validate.errors ?? [], report);
  const workflow = buildWorkflow(data as Record<string, unknown>, source, registry, report);
  const all = sortIssues(dedupe(report.issues));
  return { workflow: all.length === 0 ? workflow : undefined, issues: all };
}

/** Loads a workflow or throws a WorkflowError holding every issue of the file. */
export function loadWorkflowText(file: string, text: string, registry: Registry): Workflow {
  const result = validateSource(file, text, registry);
  if (!result.workflow) throw new WorkflowError(result.issues);
  return result.workflow;
}

export class Reporter {
  readonly issues: WorkflowIssue[] = [];
  constructor(readonly source: SourceDocument) {}
  at(p: YamlPath, code: string, message: string, target: 'key' | 'value' = 'value'): void {
    const { line, col } = locate(this.source, p, target);
    this.issues.push({ file: this.source.file, line, col, code, message });
  }
  atOffset(p: YamlPath, offset: number, code: string, message: string): void {
    const { line, col } = locateInScalar(this.source, p, offset);
    this.issues.push({ file: this.source.file, line, col, code, message });
  }
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
// Schema errors -> readable issues at the right key or value.

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

const TEMPLATE_REF = '#/definitions/template';

function hasTemplateBranch(schema: unknown): boolean {
  const anyOf = (schema as { anyOf?: unknown[] } | null)?.anyOf;
  return Array.isArray(anyOf) && anyOf.some((b) => (b as { $ref?: string }).$ref === TEMPLATE_REF);
}

const PATTERN_HINTS: Record<string, (value: string, key: string) => string> = {
  [STEP_ID_PATTERN]: (v) => `step id \`${v}\` must be lowercase letters, digits and _, starting with a letter or _ (pattern ${STEP_ID_PATTERN})`,
  [NAME_PATTERN]: (v) => `workflow name \`${v}\` must be lowercase letters, digits, - and _, starting with a letter or digit`,
  [DURATION_PATTERN]: (v, k) => `\`${k}\`: \`${v}\` is not a duration; write a whole number with ms, s, m or h (250ms, 2s, 5m, 1h)`,
  [IDENT_PATTERN]: (v, k) => `\`${k}\`: \`${v}\` must be a name of letters, digits and _, not starting with a digit`,
};

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

const TYPE_WORDS: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', integer: 'a whole number', number: 'a number', boolean: 'true or false', null: 'null' };
const typeWords = (t: string | string[]): string => (Array.isArray(t) ? t : [t]).map((x) => TYPE_WORDS[x] ?? x).join(' or ');

function closest(word: string, options: string[]): string | undefined {
  let best: { option: string; distance: number } | undefined;
  for (const option of options) {
    const d = editDistance(word.toLowerCase(), option.toLowerCase());
    if (d <= Math.max(2, Math.floor(option.length / 3)) && (!best || d < best.distance)) best = { option, distance: d };
  }
  return best?.option;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

function schemaIssues(errors: ErrorObject[], report: Reporter): void {
  // A value that may also be a template reports only its first branch, and a pure type
  // mismatch there reads as "X or a <<template>>".
  const templateAnyOf = errors.filter((e) => e.keyword === 'anyOf' && hasTemplateBranch(e.schema === undefined ? undefined : { anyOf: e.schema }));
  const skip = new Set<ErrorObject>();
  for (const any of templateAnyOf) {
    skip.add(any);
    const branch0 = `${any.schemaPath.replace(/\/anyOf$/, '')}/anyOf/0/`;
    const inner = errors.filter((e) => e.instancePath === any.instancePath && e.schemaPath.startsWith(branch0));
    if (inner.length > 0 && inner.every((e) => e.keyword === 'type')) {
      for (const e of inner) skip.add(e);
      const key = String(pointerToPath(any.instancePath).at(-1) ?? 'value');
      const expected = typeWords(inner.map((e) => (e.params as { type: string }).type).join(',').split(','));
      report.at(pointerToPath(any.instancePath), 'FERRY_SCHEMA_TYPE', `\`${key}\` must be ${expected} or a <<template>>, got ${typeName(any.data)}`);
    }
  }
  for (const error of errors) {
    if (skip.has(error) || error.keyword === 'if' || error.schemaPath.startsWith(`${TEMPLATE_REF}/`) || error.schemaPath.includes('/definitions/template/')) continue;
    const p = pointerToPath(error.instancePath);
    const key = String(p.at(-1) ?? 'workflow');
    const params = error.params as Record<string, unknown>;
    switch (error.keyword) {
      case 'additionalProperties': {
        const extra = String(params.additionalProperty);
        const allowed = Object.keys(((error.parentSchema as JsonSchema | undefined)?.properties as object | undefined) ?? {});
        const suggestion = closest(extra, allowed);
        report.at([...p, extra], 'FERRY_SCHEMA_UNKNOWN_KEY', `unknown key \`${extra}\`${suggestion ? `; did you mean \`${suggestion}\`?` : allowed.length ? ` (allowed here: ${allowed.join(', ')})` : ''}`, 'key');
        break;
      }
      case 'required': {
        const missing = String(params.missingProperty);
        if (error.schemaPath.includes('/oneOf/')) break;
        const what = p.length === 0 ? 'the workflow' : typeof p.at(-1) === 'number' && p.includes('steps') ? 'this step' : `\`${key}\``;
        const hint = missing === 'action' ? ' (an action step has `action` and `with`; a loop step has `loop` and `steps`)' : '';
        report.at(p, 'FERRY_SCHEMA_REQUIRED', `${what} is missing the required key \`${missing}\`${hint}`);
        break;
      }
      case 'oneOf':
        if ((error.parentSchema as JsonSchema | undefined)?.properties && 'over' in ((error.parentSchema as JsonSchema).properties as object)) {
          report.at(p, 'FERRY_LOOP_SOURCE', 'a loop needs exactly one of `over` (an array) or `file` (a CSV, JSONL or JSON file)');
        } else {
          report.at(p, 'FERRY_SCHEMA', `\`${key}\` ${error.message ?? 'is invalid'}`);
        }
        break;
      case 'type':
        if (error.schemaPath.startsWith('#/definitions/duration/')) {
          report.at(p, 'FERRY_SCHEMA_TYPE', `\`${key}\` must be a duration such as \`500ms\`, \`30s\`, \`5m\` or \`1h\`, got ${typeName(error.data)}`);
          break;
        }
        report.at(p, 'FERRY_SCHEMA_TYPE', `\`${key}\` must be ${typeWords(params.type as string)}, got ${typeName(error.data)}`);
        break;
      case 'pattern': {
        const hint = PATTERN_HINTS[String(params.pattern)];
        report.at(p, 'FERRY_SCHEMA_PATTERN', hint ? hint(String(error.data), key) : `\`${key}\`: \`${String(error.data)}\` does not match ${String(params.pattern)}`);
        break;
      }
      case 'enum': {
        const allowed = (params.allowedValues as unknown[]).map(String);
        if (key === 'action' && p.includes('steps')) {
          const suggestion = closest(String(error.data), allowed);
          report.at(p, 'FERRY_UNKNOWN_ACTION', `unknown action \`${String(error.data)}\`${suggestion ? `; did you mean \`${suggestion}\`?` : ''} (\`ferry actions\` lists them)`);
        } else {
          report.at(p, 'FERRY_SCHEMA_ENUM', `\`${key}\` must be one of ${allowed.map((v) => `\`${v}\``).join(', ')}, got ${typeName(error.data)}`);
        }
        break;
      }
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const parent = (error.parentSchema ?? {}) as { minimum?: number; maximum?: number };
        const range = parent.minimum !== undefined && parent.maximum !== undefined ? `between ${parent.minimum} and ${parent.maximum}` : error.message ?? '';
        report.at(p, 'FERRY_SCHEMA_RANGE', `\`${key}\` must be ${range}, got ${String(error.data)}`);
        break;
      }
      case 'minItems':
        report.at(p, 'FERRY_SCHEMA_EMPTY', `\`${key}\` needs at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}`);
        break;
      case 'uniqueItems':
        report.at(p, 'FERRY_SCHEMA_DUPLICATE', `\`${key}\` lists the same value twice`);
        break;
      case 'propertyNames':
        break; // the pattern error of the name itself says it
      case 'not':
        report.at(p, 'FERRY_SCHEMA', `\`${key}\` has keys that cannot be used together`);
        break;
      case 'anyOf':
        report.at(p, 'FERRY_SCHEMA', `\`${key}\` ${error.message ?? 'is invalid'}`);
        break;
      default:
        report.at(p, 'FERRY_SCHEMA', `\`${key}\` ${error.message ?? 'is invalid'}`);
    }
  }
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
  secrets: Set<string>;
  /** Declared input names, or undefined when no trigger declares inputs. */
  inputs: Set<string> | undefined;
  /** Every step id with its path, to tell "later step" and "inside a loop" apart. */
  allSteps: Map<string, { path: YamlPath; loop: string | undefined }>;
  loopItems: Map<string, string>;
}

function compileAt(walk: Walk, value: unknown, p: YamlPath, scope: Scope, lenient = false): ReturnType<typeof compileValue> {
  const sites: TemplateSite[] = [];
  const compiled = compileValue(value, {
    lenient,
    sites,
    onError: (error, at) => {
      if (error instanceof TemplateError) walk.report.atOffset([...p, ...at], templateErrorOffset(error), error.code, `template: ${error.message}`);
      else throw error;
    },
  });
  for (const site of sites) checkSite(walk, site.template, [...p, ...site.path], scope);
  return compiled;
}

function checkSite(walk: Walk, template: CompiledTemplate, p: YamlPath, scope: Scope): void {
  for (const problem of checkReferences(template.refs, scope, walk)) {
    walk.report.atOffset(p, problem.offset, problem.code, problem.message);
  }
}

function buildWorkflow(data: Record<string, unknown>, source: SourceDocument, registry: Registry, report: Reporter): Workflow {
  const triggersData = arr(data.triggers);
  const declaredInputs = triggersData.flatMap((t) => Object.keys(obj(obj(t).inputs)));
  const anyInputs = triggersData.some((t) => obj(t).inputs !== undefined);
  const walk: Walk = {
    source,
    report,
    registry,
    secrets: new Set(arr(data.secrets).filter((s): s is string => typeof s === 'string')),
    inputs: anyInputs ? new Set(declaredInputs) : undefined,
    allSteps: new Map(),
    loopItems: new Map(),
  };
  collectSteps(arr(data.steps), ['steps'], undefined, walk);
  const topScope: Scope = { steps: new Set(), loops: [], items: [], where: 'workflow' };

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
      if (hookPaths.has(hookPath)) report.at(['triggers', i, 'path'], 'FERRY_TRIGGER_DUPLICATE', `webhook path \`${hookPath}\` is already used by trigger ${String(hookPaths.get(hookPath))}`);
      hookPaths.set(hookPath, i);
      const secretScope: Scope = { ...topScope, where: 'trigger' };
      const secret = trig.secret === undefined ? undefined : compileAt(walk, trig.secret, ['triggers', i, 'secret'], secretScope);
      triggers.push({ type: 'webhook', path: hookPath, secret, inputs });
    }
  });

  const providers: Record<string, ProviderSettings> = {};
  for (const [name, block] of Object.entries(obj(data.providers))) {
    const { concurrency, rate, ...config } = obj(block);
    const rateObj = obj(rate);
    providers[name] = {
      config: compileAt(walk, config, ['providers', name], { ...topScope, where: 'provider' }),
      concurrency: typeof concurrency === 'number' ? concurrency : undefined,
      rate: typeof rateObj.limit === 'number' ? { limit: rateObj.limit, intervalMs: durationOr(rateObj.interval, 1000) } : undefined,
    };
  }

  const retry = retryOf(data.retry, DEFAULT_RETRY);
  const steps = buildSteps(arr(data.steps), ['steps'], topScope, walk, Object.keys(obj(data.providers)));
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

const inputSchemaAjv = new Ajv({ allErrors: true, strict: false });

function checkInputSchemas(inputs: Record<string, unknown>, p: YamlPath, walk: Walk): void {
  for (const [name, schema] of Object.entries(inputs)) {
    try {
      inputSchemaAjv.compile(obj(schema));
    } catch (error) {
      walk.report.at([...p, name], 'FERRY_INPUT_SCHEMA', `input \`${name}\` is not a valid JSON Schema: ${(error as Error).message}`);
    }
  }
}

function collectSteps(steps: unknown[], p: YamlPath, loop: string | undefined, walk: Walk): void {
  steps.forEach((s, i) => {
    const step = obj(s);
    const id = str(step.id);
    const at = [...p, i];
    if (id !== undefined) {
      const first = walk.allSteps.get(id);
      if (first) {
        walk.report.at([...at, 'id'], 'FERRY_STEP_DUPLICATE', `duplicate step id \`${id}\` (first used at line ${locate(walk.source, [...first.path, 'id']).line}); step ids are unique in a workflow, loops included`);
      } else {
        walk.allSteps.set(id, { path: at, loop });
      }
    }
    if (step.loop !== undefined && id !== undefined) walk.loopItems.set(str(obj(step.loop).as) ?? 'item', id);
    if (step.loop !== undefined) collectSteps(arr(step.steps), [...at, 'steps'], id, walk);
  });
}

const RESERVED_NAMES = new Set(['inputs', 'trigger', 'steps', 'env', 'secrets', 'loop', 'run', 'workflow', 'this']);

function buildSteps(stepsData: unknown[], p: YamlPath, scope: Scope, walk: Walk, providerBlocks: string[]): Step[] {
  const steps: Step[] = [];
  const seen = new Set(scope.steps);
  stepsData.forEach((s, i) => {
    const data = obj(s);
    const at = [...p, i];
    const id = str(data.id) ?? `#${i}`;
    const stepScope: Scope = { ...scope, steps: new Set(seen), where: `step \`${id}\`` };
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
      const file = str(loop.file) === undefined ? undefined : path.resolve(path.dirname(path.resolve(walk.source.file)), loop.file as string);
      const inner: Scope = { steps: new Set(seen), loops: [...scope.loops, id], items: [...scope.items, as], where: `step \`${id}\`` };
      steps.push({
        kind: 'loop',
        id,
        if: cond,
        line,
        over,
        file,
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
      steps.push({
        kind: 'action',
        id,
        if: cond,
        line,
        action,
        with: compileAt(walk, data.with ?? {}, [...at, 'with'], stepScope),
        retry: data.retry === undefined ? undefined : retryOf(data.retry, DEFAULT_RETRY),
        timeoutMs: data.timeout === undefined ? undefined : durationOr(data.timeout, DEFAULT_TIMEOUT_MS),
      });
    }
    if (str(data.id)) seen.add(data.id as string);
  });
  return steps;
}

function compileCondition(walk: Walk, value: unknown, p: YamlPath, scope: Scope): CompiledTemplate | boolean | undefined {
  if (typeof value !== 'string') return undefined;
  if (!isTemplate(value)) return undefined; // the schema reports it
  try {
    const template = compileTemplate(value, { lenient: true });
    checkSite(walk, template, p, scope);
    return template;
  } catch (error) {
    if (!(error instanceof TemplateError)) throw error;
    walk.report.atOffset(p, templateErrorOffset(error), error.code, `template: ${error.message}`);
    return undefined;
  }
}

/** Reads, validates and compiles a workflow file; throws WorkflowError with every issue. */
export async function loadWorkflow(file: string, registry: Registry): Promise<Workflow> {
  const { readFile } = await import('node:fs/promises');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new WorkflowError([{ file, line: 1, col: 1, code: 'FERRY_FILE_UNREADABLE', message: `cannot read the workflow file: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}` }]);
  }
  return loadWorkflowText(file, text, registry);
}
