import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { ActionInputError } from '../errors.js';
import { actionInputValidators, validateDraft07, type StandaloneValidator } from '../workflow/validators.generated.js';
import type { ActionDefinition, ProviderDefinition } from './define.js';

// ajv-formats is CommonJS: its module.exports is the plugin function, which TypeScript's
// NodeNext view of the default import does not know.
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv;

export interface RegisteredAction {
  /** `provider.name` */
  fullName: string;
  provider: ProviderDefinition;
  definition: ActionDefinition;
  /** Checks rendered inputs; throws ActionInputError naming the field. */
  check(input: unknown): unknown;
  /**
   * The problems the action's `checks` find in the inputs a workflow file writes without
   * templates (`literal`); a check that reads an input in `templated` waits for the run.
   */
  checkLiterals(literal: Readonly<Record<string, unknown>>, templated: ReadonlySet<string>): ActionInputError[];
}

/** Providers and their actions, with every input schema compiled once at registration. */
export class Registry {
  readonly #providers = new Map<string, ProviderDefinition>();
  readonly #actions = new Map<string, RegisteredAction>();
  #ajv: Ajv | undefined;

  constructor(providers: readonly ProviderDefinition[] = []) {
    for (const provider of providers) this.register(provider);
  }

  register(provider: ProviderDefinition): void {
    if (this.#providers.has(provider.name)) throw new TypeError(`Provider \`${provider.name}\` is already registered`);
    this.#providers.set(provider.name, provider);
    for (const definition of provider.actions) {
      const fullName = `${provider.name}.${definition.name}`;
      // Compiled on first use: `ferry validate` checks inputs through the workflow schema
      // and never pays for these.
      let validate: StandaloneValidator | undefined;
      let validateProperties: StandaloneValidator | undefined;
      this.#actions.set(fullName, {
        fullName,
        provider,
        definition,
        check: (input) => checkInput(fullName, (validate ??= this.#compile(definition.input)), definition, input),
        checkLiterals: (literal, templated) =>
          literalProblems(definition, literal, templated, (picked) => (validateProperties ??= this.#compile({ type: 'object', properties: definition.input.properties ?? {} }))(picked)),
      });
    }
  }

  /**
   * An input schema, compiled. The build compiles the built-in actions' schemas
   * (scripts/validators.mjs): a schema with exactly the text of one of them uses it, and a
   * process that runs only built-in actions never makes an Ajv. Any other schema is checked
   * against the draft-07 meta-schema (by its generated validator: Ajv would compile the
   * meta-schema first, some 25 ms) and compiled here.
   */
  #compile(schema: ActionDefinition['input']): StandaloneValidator {
    const built = actionInputValidators.get(JSON.stringify(schema));
    if (built) return built;
    // `validateSchema: false`: checked here, as Ajv would, without compiling the meta-schema.
    const ajv = (this.#ajv ??= addFormats(new Ajv({ allErrors: true, strict: false, validateSchema: false })));
    const ok = schema.$schema === undefined ? validateDraft07(schema) : ajv.validateSchema(schema) === true;
    if (!ok) throw new Error(`schema is invalid: ${ajv.errorsText(schema.$schema === undefined ? validateDraft07.errors : ajv.errors)}`);
    return ajv.compile(schema);
  }

  action(fullName: string): RegisteredAction | undefined {
    return this.#actions.get(fullName);
  }

  provider(name: string): ProviderDefinition | undefined {
    return this.#providers.get(name);
  }

  get providers(): ProviderDefinition[] {
    return [...this.#providers.values()];
  }

  get actions(): RegisteredAction[] {
    return [...this.#actions.values()];
  }
}

function checkInput(fullName: string, validate: StandaloneValidator, definition: ActionDefinition, input: unknown): unknown {
  if (!validate(input)) {
    const error = validate.errors?.[0];
    const field = error ? fieldOf(error) : '';
    throw new ActionInputError(`${fullName}: ${describeInputError(error, input)}`, field);
  }
  const given = input as Record<string, unknown>;
  for (const { reads, check } of definition.checks ?? []) if (reads.some((field) => given[field] !== undefined)) check(given);
  return definition.prepare ? definition.prepare(input) : input;
}

function literalProblems(
  definition: ActionDefinition,
  literal: Readonly<Record<string, unknown>>,
  templated: ReadonlySet<string>,
  matchesProperties: (input: Record<string, unknown>) => boolean,
): ActionInputError[] {
  const problems: ActionInputError[] = [];
  for (const { reads, check } of definition.checks ?? []) {
    if (reads.some((field) => templated.has(field))) continue;
    const picked = Object.fromEntries(reads.filter((field) => literal[field] !== undefined).map((field) => [field, literal[field]]));
    // A value of the wrong type is the schema's to report; the check expects the right one.
    if (Object.keys(picked).length === 0 || !matchesProperties(picked)) continue;
    try {
      check(picked);
    } catch (error) {
      if (!(error instanceof ActionInputError)) throw error;
      problems.push(error);
    }
  }
  return problems;
}

function fieldOf(error: ErrorObject): string {
  const base = error.instancePath.replace(/^\//, '');
  if (error.keyword === 'required') return [base, (error.params as { missingProperty: string }).missingProperty].filter(Boolean).join('/');
  if (error.keyword === 'additionalProperties') return [base, (error.params as { additionalProperty: string }).additionalProperty].filter(Boolean).join('/');
  return base;
}

/**
 * One readable sentence for an ajv error on action inputs. The value comes from `input` at
 * the error's path: the action validators are compiled without `verbose` (no `error.data`).
 */
export function describeInputError(error: ErrorObject | undefined, input?: unknown): string {
  if (!error) return 'invalid input';
  const field = fieldOf(error);
  const where = field ? `\`${field}\`` : 'input';
  switch (error.keyword) {
    case 'required':
      return `missing required input ${where}`;
    case 'additionalProperties':
      return `unknown input ${where}`;
    case 'type':
      return `${where} must be ${(error.params as { type: string }).type}, got ${typeName('data' in error ? error.data : valueAt(input, error.instancePath))}`;
    case 'enum':
      return `${where} must be one of ${((error.params as { allowedValues: unknown[] }).allowedValues).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'anyOf':
    case 'oneOf':
      return `${where} ${error.message ?? 'is invalid'}${error.schema && typeof error.parentSchema === 'object' && error.parentSchema && 'description' in error.parentSchema ? `: ${String(error.parentSchema.description)}` : ''}`;
    default:
      return `${where} ${error.message ?? 'is invalid'}`;
  }
}

/** The value at a JSON pointer (`/traits`, `/events/0/time`); own properties only. */
function valueAt(input: unknown, pointer: string): unknown {
  let value = input;
  for (const raw of pointer.split('/').slice(1)) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (value === undefined) return 'nothing';
  return `${typeof value} ${String(value)}`;
}
