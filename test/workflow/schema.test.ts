import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { builtinRegistry } from '../../src/providers/index.js';
import { validateSource, workflowSchema } from '../../src/workflow/validate.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const schemaFile = path.join(root, 'schemas/workflow.schema.json');
const invalidDir = path.join(root, 'test/fixtures/invalid');
const validDir = path.join(root, 'test/fixtures/valid');
const examplesDir = path.join(root, 'workflows');

const registry = builtinRegistry();

// The plain schema as an editor sees it: the published file when there is one, compiled by
// a fresh Ajv with no ferry code in between.
const schema: Record<string, unknown> = existsSync(schemaFile)
  ? (JSON.parse(readFileSync(schemaFile, 'utf8')) as Record<string, unknown>)
  : workflowSchema(registry).schema;
const plain = new Ajv({ allErrors: true, strict: false }).compile(schema);

const listYaml = (dir: string): string[] =>
  readdirSync(dir)
    // `*.test.yaml` beside the workflows are `ferry test` files, not workflows.
    .filter((name) => name.endsWith('.yaml') && !name.endsWith('.test.yaml'))
    .sort()
    .map((name) => path.join(dir, name));

/** The codes of a fixture's `# expect:` lines. */
function expectedCodes(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('# expect:'))
    .map((line) => line.split(' ')[3] as string);
}

/**
 * The division of labour: the JSON Schema checks shapes, names, ranges and action inputs;
 * the validator alone checks what needs the whole file (references, templates,
 * duplicates across steps and triggers, item names) and what JSON Schema cannot say.
 */
const isSchemaLevel = (code: string): boolean => code.startsWith('FERRY_SCHEMA') || code === 'FERRY_UNKNOWN_ACTION' || code === 'FERRY_LOOP_SOURCE' || code === 'FERRY_WORKFLOW_NOT_MAPPING';
const isSemantic = (code: string): boolean =>
  code.startsWith('FERRY_REF_') ||
  code.startsWith('FERRY_TEMPLATE_') ||
  // Cron fields and time zones are checked by croner and Intl, which JSON Schema cannot call.
  code.startsWith('FERRY_SCHEDULE_') ||
  ['FERRY_STEP_DUPLICATE', 'FERRY_TRIGGER_DUPLICATE', 'FERRY_LOOP_AS_RESERVED', 'FERRY_INPUT_SCHEMA'].includes(code);
const isYaml = (code: string): boolean => code.startsWith('FERRY_YAML_');

const describeErrors = (errors: ErrorObject[] | null | undefined): string =>
  (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`).join('; ');

const invalid = listYaml(invalidDir).map((file) => {
  const text = readFileSync(file, 'utf8');
  return { name: path.basename(file), file, text, codes: expectedCodes(text) };
});
const yamlLevel = invalid.filter((f) => f.codes.some(isYaml));
const schemaLevel = invalid.filter((f) => !f.codes.some(isYaml) && f.codes.some(isSchemaLevel));
const semanticOnly = invalid.filter((f) => f.codes.length > 0 && f.codes.every(isSemantic));

describe('the schema and the validator agree', () => {
  it('the schema compiles with a plain Ajv', () => {
    expect(typeof plain).toBe('function');
  });

  it('every invalid fixture falls into exactly one of: YAML syntax, schema-level, semantic only', () => {
    const unclassified = invalid.filter((f) => !yamlLevel.includes(f) && !schemaLevel.includes(f) && !semanticOnly.includes(f));
    expect(unclassified.map((f) => `${f.name}: ${f.codes.join(', ')}`)).toEqual([]);
    expect(schemaLevel.length).toBeGreaterThan(10);
    expect(semanticOnly.length).toBeGreaterThan(10);
  });

  it.each([...listYaml(examplesDir), ...listYaml(validDir)].map((f) => [path.relative(root, f), f] as const))(
    '%s is accepted by the plain schema',
    (_name, file) => {
      const data: unknown = parse(readFileSync(file, 'utf8'));
      expect(plain(data), describeErrors(plain.errors)).toBe(true);
    },
  );

  it.each(registry.actions.map((a) => [a.fullName, a] as const))('a %s step without `with` is valid exactly when the action accepts empty inputs', (name, action) => {
    let acceptsNothing = true;
    try {
      action.check({});
    } catch {
      acceptsNothing = false;
    }
    const workflow = { name: 'no-with', providers: { amplitude: { api_key: 'k' }, segment: { write_key: 'k' } }, steps: [{ id: 'a', action: name }] };
    expect(plain(workflow), describeErrors(plain.errors)).toBe(acceptsNothing);
    expect(validateSource('no-with.yaml', JSON.stringify(workflow), registry).issues.length === 0).toBe(acceptsNothing);
  });

  it.each(schemaLevel.map((f) => [f.name, f] as const))('%s is rejected by the plain schema', (_name, fixture) => {
    expect(plain(parse(fixture.text))).toBe(false);
  });

  it.each(semanticOnly.map((f) => [f.name, f] as const))('%s passes the plain schema yet the validator rejects it', (_name, fixture) => {
    const data: unknown = parse(fixture.text);
    expect(plain(data), describeErrors(plain.errors)).toBe(true);
    const { workflow, issues } = validateSource(fixture.file, fixture.text, registry);
    expect(workflow).toBeUndefined();
    expect(issues.length).toBeGreaterThan(0);
    expect(issues.every((i) => isSemantic(i.code)), issues.map((i) => i.code).join(', ')).toBe(true);
  });
});
