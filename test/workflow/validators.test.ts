import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { core } from '../../src/providers/core/index.js';
import { builtinProviders, builtinRegistry } from '../../src/providers/index.js';
import { Registry } from '../../src/providers/registry.js';
import { InputSchemas } from '../../src/workflow/input-schema.js';

const schemas = new InputSchemas();
const inputSchemaProblem = (schema: Record<string, unknown>) => schemas.problem(schema);
import { parseSource, sourceData } from '../../src/workflow/load.js';
import { validateSource, WORKFLOW_AJV_OPTIONS, WorkflowCompiler, workflowSchema } from '../../src/workflow/validate.js';
import { actionInputValidators, validateDraft07, validateWorkflow } from '../../src/workflow/validators.generated.js';
import { defineAction, defineProvider } from '../../src/providers/define.js';
import { ActionInputError } from '../../src/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const yamlFiles = (dir: string): string[] =>
  readdirSync(path.join(root, dir))
    .filter((name) => name.endsWith('.yaml') && !name.endsWith('.test.yaml'))
    .sort()
    .map((name) => path.join(dir, name));

/** Every workflow file the tests know, as the data the schema sees; files with YAML mistakes never reach it. */
const documents = ['test/fixtures/invalid', 'test/fixtures/valid', 'workflows'].flatMap(yamlFiles).flatMap((file) => {
  const { source, issues } = parseSource(file, readFileSync(path.join(root, file), 'utf8'));
  return issues.length > 0 ? [] : [[file, sourceData(source)] as const];
});

describe('the validators generated at build time', () => {
  it('are what scripts/validators.mjs makes of schemas/workflow.schema.json (run `npm run build` when this fails)', () => {
    expect(() => execFileSync(process.execPath, [path.join(root, 'scripts/validators.mjs'), '--check'], { cwd: root, stdio: 'pipe' })).not.toThrow();
  });

  it('include the workflow validator the built-in registry uses (run `npm run schema` when this fails)', () => {
    expect(workflowSchema(builtinRegistry()).validate).toBe(validateWorkflow);
    expect(workflowSchema(new Registry(builtinProviders)).validate).toBe(validateWorkflow);
  });

  it('are checked against the schema-level fixtures', () => {
    expect(documents.length).toBeGreaterThan(100);
    expect(documents.filter(([, data]) => !validateWorkflow(data)).length).toBeGreaterThan(50);
  });

  // schema-errors.ts reads every field of these errors (`schema`, `parentSchema` and `data`
  // too), so they must be the very errors a validator compiled at run time gives.
  const compiled = new Ajv(WORKFLOW_AJV_OPTIONS).compile(workflowSchema(builtinRegistry()).schema);
  it.each(documents)('%s gets the errors a run-time compiled workflow validator gives', (_file, data) => {
    expect(validateWorkflow(data)).toBe(compiled(data));
    expect(validateWorkflow.errors).toStrictEqual(compiled.errors);
  });

  const inputSchemas: Record<string, unknown>[] = [
    { type: 'array', items: { type: 'object', required: ['id'], properties: { id: { type: 'string' } } }, default: [] },
    { type: 'list' },
    { type: ['string', 'lst'] },
    { type: 'object', required: 'id' },
    { type: 'number', minimum: 'a' },
    { properties: { a: { enum: [] } } },
    { additionalProperties: 5 },
    { items: [{ type: 'string' }, { type: 'nope' }] },
    { if: { type: 'string' }, then: { minLength: 'x' } },
    { dependencies: { a: 'b' } },
    { type: 'string', maxLength: -1, uniqueItems: 'yes', enum: 'x' },
  ];
  const draft07 = new Ajv({ allErrors: true, strict: false, logger: false });
  it.each(inputSchemas)('the input schema %j gets the meta-schema errors Ajv gives', (schema) => {
    expect(validateDraft07(schema)).toBe(draft07.validateSchema(schema));
    expect(validateDraft07.errors).toStrictEqual(draft07.errors);
  });
});

describe('trigger input schemas', () => {
  it.each([
    [{ type: 'array', items: { type: 'object', required: ['id'] } }, undefined],
    [{ type: 'list' }, '`type` is `list`, which is not a JSON Schema type; use one of array, boolean, integer, null, number, object, string'],
    [{ type: 'object', required: 'id' }, '`required` must be a list, got `id`'],
    [{ $schema: 'http://json-schema.org/draft-07/schema#', type: 'lst' }, '`type` is `lst`, which is not a JSON Schema type; use one of array, boolean, integer, null, number, object, string'],
    [{ $schema: 'http://json-schema.org/draft-07/schema#', type: 'string' }, undefined],
    [{ $ref: '#/definitions/missing' }, '`$ref: #/definitions/missing` points at nothing in this schema'],
    [{ type: 'string', pattern: '[' }, 'Invalid regular expression: /[/u: Unterminated character class'],
    [{ type: 'number', maximum: Number.POSITIVE_INFINITY }, undefined],
  ] as const)('%j: %s', (schema, problem) => {
    // The second answer for the same schema comes from the cache.
    expect(inputSchemaProblem(structuredClone(schema) as Record<string, unknown>)).toBe(problem);
    expect(inputSchemaProblem(structuredClone(schema) as Record<string, unknown>)).toBe(problem);
  });

  // Schemas without references are not compiled: the verdict must be what compiling says.
  it.each([
    [{ type: 'object', properties: { pattern: { type: 'string' }, patternProperties: { type: 'object' } } }],
    [{ type: 'object', patternProperties: { '^x-': { type: 'string' }, '(': { type: 'string' } } }],
    [{ type: 'string', pattern: '^\\p{L}+$' }],
    [{ type: 'string', pattern: '\\q' }],
    [{ type: 'array', items: [{ type: 'string', pattern: '(a' }, { type: 'number' }] }],
    [{ anyOf: [{ type: 'string', format: 'no-such-format' }, { not: { pattern: 'a{2,1}' } }] }],
    [{ type: 'object', const: { pattern: '(' }, enum: [{ pattern: '[' }], default: { pattern: ')' }, examples: [{ pattern: '(' }] }],
    [{ type: 'object', properties: { a: { $ref: '#/definitions/b' } }, definitions: { b: { type: 'string' } } }],
    [{ type: 'object', properties: { $ref: { type: 'string' }, id: { type: 'string' }, $id: { type: 'string', pattern: '(' } } }],
    [{ type: 'object', properties: { a: { type: 'object', properties: { b: { $ref: '#/nope' } } } } }],
    [{ type: 'object', definitions: { id: { type: 'string' } }, properties: { x: { type: 'string' } } }],
    [{ type: 'object', dependencies: { a: { properties: { b: { pattern: '+' } } } } }],
  ] as const)('%j: the same verdict as compiling it', (schema) => {
    let compiled: string | undefined;
    try {
      new Ajv({ allErrors: true, strict: false, logger: false }).compile(structuredClone(schema));
    } catch (error) {
      compiled = (error as Error).message;
    }
    const problem = inputSchemaProblem(structuredClone(schema) as Record<string, unknown>);
    if (compiled === undefined) expect(problem).toBeUndefined();
    else if (/can't resolve reference/.test(compiled)) expect(problem).toMatch(/points at nothing/);
    else expect(problem).toBe(compiled);
  });

  it('the same schema with an `$id` in two files is fine in both', () => {
    const schema = { $id: 'https://example.com/users.json', type: 'array' };
    expect(inputSchemaProblem({ ...schema })).toBeUndefined();
    expect(inputSchemaProblem({ ...schema })).toBeUndefined();
  });
});

describe('a registry with other actions', () => {
  const coreOnly = new Registry([core]);

  it('has its own workflow schema compiled at run time, once per compiler, shared with no other', () => {
    const compiler = new WorkflowCompiler(coreOnly);
    const { validate } = workflowSchema(compiler);
    expect(validate).not.toBe(validateWorkflow);
    expect(workflowSchema(compiler).validate).toBe(validate);
    expect(workflowSchema(new WorkflowCompiler(coreOnly)).validate).not.toBe(validate);
  });

  it('accepts its actions and reports the others as unknown', () => {
    const text = 'name: only-core\nsteps:\n  - id: hello\n    action: core.log\n    with: { message: hi }\n  - id: amp\n    action: amplitude.identify_user\n    with: { user_id: u1 }\n';
    expect(validateSource('only-core.yaml', text, builtinRegistry()).issues).toEqual([expect.objectContaining({ line: 7, col: 13, code: 'FERRY_PROVIDER_MISSING' })]);
    expect(validateSource('only-core.yaml', text, coreOnly).issues).toEqual([expect.objectContaining({ line: 7, col: 13, code: 'FERRY_UNKNOWN_ACTION' })]);
  });
});

describe('the built-in actions\' input validators generated at build time', () => {
  const actions = builtinProviders.flatMap((p) => p.actions.map((a) => [`${p.name}.${a.name}`, a] as const));
  // The options of src/providers/registry.ts.
  const runtime = new Ajv({ allErrors: true, strict: false });

  it.each(actions)('%s has one, which gives the errors a run-time compiled validator gives', (_name, action) => {
    const built = actionInputValidators.get(JSON.stringify(action.input));
    expect(built).toBeDefined();
    const compiled = runtime.compile(action.input);
    for (const input of [{}, { message: 'hi' }, { message: 'hi', level: 'loud' }, { user_id: 5 }, { url: 'https://x', method: 'GET' }, 'text', null]) {
      expect(built!(input)).toBe(compiled(input));
      expect(built!.errors ?? null).toStrictEqual(compiled.errors ?? null);
    }
  });

  it('leaves other actions to Ajv at first use, which still rejects a schema the meta-schema does not accept', () => {
    const odd = defineAction({ name: 'odd', description: 'x', input: { type: 'object', properties: { n: { type: 'integer', minimum: 2 } } }, output: {}, run: async () => null });
    const bad = defineAction({ name: 'bad', description: 'x', input: { type: 'object', properties: { n: { type: 'integr' } } }, output: {}, run: async () => null });
    const registry = new Registry([defineProvider({ name: 'mine', description: 'x', defaults: { concurrency: 1 }, actions: [odd, bad] })]);
    expect(() => registry.action('mine.odd')!.check({ n: 1 })).toThrow(ActionInputError);
    expect(registry.action('mine.odd')!.check({ n: 3 })).toEqual({ n: 3 });
    expect(() => registry.action('mine.bad')!.check({ n: 1 })).toThrow(/schema is invalid: data\/properties\/n\/type must be equal to one of the allowed values/);
  });
});
