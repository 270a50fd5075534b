import { Ajv, type ErrorObject } from 'ajv';
import { typeWords } from './schema-errors.js';
import { validateDraft07 } from './validators.generated.js';

const TYPES = ['array', 'boolean', 'integer', 'null', 'number', 'object', 'string'];

/** Checks trigger input schemas; one per WorkflowCompiler. */
export class InputSchemas {
  // Compiled like the engine compiles trigger inputs (engine/inputs.ts), so a schema that
  // passes here also compiles when a run starts. `logger: false`: a validator prints nothing.
  // `validateSchema: false`: checkSchema has checked the schema against the meta-schema, with
  // this Ajv or with validateDraft07, which scripts/validators.mjs generates with these options.
  // Made when a schema needs it (a `$schema` or a `$ref`): most files never do.
  #ajv: Ajv | undefined;
  // Verdicts by schema text: the same input schema in many files (or in both triggers of
  // one) is compiled once; compiling costs a millisecond or two per schema.
  readonly #verdicts = new Map<string, string | undefined>();

  /** What is wrong with a trigger input's JSON Schema, in one sentence; undefined when it is fine. */
  problem(schema: Record<string, unknown>): string | undefined {
    // YAML's `.inf` and `.nan` have no JSON text (they would read as null): not cached.
    let exact = true;
    const key = JSON.stringify(schema, (_k, v: unknown) => {
      if (typeof v === 'number' && !Number.isFinite(v)) exact = false;
      return v;
    });
    if (exact && this.#verdicts.has(key)) return this.#verdicts.get(key);
    const verdict = checkSchema(schema, () => (this.#ajv ??= new Ajv({ allErrors: true, strict: false, logger: false, validateSchema: false })));
    if (exact) this.#verdicts.set(key, verdict);
    return verdict;
  }
}

function checkSchema(schema: Record<string, unknown>, ajvOf: () => Ajv): string | undefined {
  // Without `$schema` Ajv checks against draft-07, whose validator the build generates:
  // compiling the meta-schema here takes as long as validating a dozen files.
  if (schema.$schema === undefined) {
    if (!validateDraft07(schema)) return describeMetaErrors(schema, validateDraft07.errors ?? []);
  } else if (ajvOf().validateSchema(schema) !== true) {
    return describeMetaErrors(schema, ajvOf().errors ?? []);
  }
  // Once the meta-schema accepts it, compiling fails only on a `$ref` (or an `$id`) Ajv
  // cannot resolve or a regular expression it cannot build. Compiling costs a millisecond
  // or two per schema, so a schema with neither is not compiled; a bad regex is found here.
  const plain = withoutReferences(schema);
  if (plain !== 'references') return plain;
  try {
    ajvOf().compile(schema);
    return undefined;
  } catch (error) {
    const ref = /can't resolve reference (\S+)/.exec((error as Error).message)?.[1];
    return ref ? `\`$ref: ${ref}\` points at nothing in this schema` : (error as Error).message;
  }
}

/** Keywords that make Ajv resolve or register something when it compiles a schema. */
const REFERENCING = new Set(['$ref', '$id', 'id', '$recursiveRef', '$dynamicRef', '$data', 'discriminator', '$async']);
/** Keywords whose values are data, not schemas: nothing in them is a keyword. */
const DATA = new Set(['const', 'enum', 'default', 'examples']);
/** Keywords whose values map names (of properties, patterns, definitions) to schemas. */
const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs', 'dependencies', 'dependentSchemas']);

/**
 * For a schema the meta-schema accepted: 'references' when only compiling can tell (it
 * uses a keyword of REFERENCING), else the error Ajv's compile would give for a bad
 * `pattern` or `patternProperties` regex (Ajv builds them with `new RegExp(source, 'u')`),
 * else undefined: it compiles. Keys of unknown keywords are looked into like schemas.
 */
function withoutReferences(node: unknown): 'references' | string | undefined {
  if (Array.isArray(node)) {
    for (const item of node) {
      const found = withoutReferences(item);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (node === null || typeof node !== 'object') return undefined;
  for (const [key, value] of Object.entries(node)) {
    if (REFERENCING.has(key)) return 'references';
    if (DATA.has(key)) continue;
    const sources = key === 'pattern' && typeof value === 'string' ? [value] : key === 'patternProperties' && value !== null && typeof value === 'object' ? Object.keys(value) : [];
    for (const source of sources) {
      try {
        new RegExp(source, 'u');
      } catch (error) {
        return (error as Error).message;
      }
    }
    // Under `properties` and the like, keys are names (a property may be called `id`).
    const found = SCHEMA_MAPS.has(key) && value !== null && typeof value === 'object' && !Array.isArray(value) ? withoutReferences(Object.values(value)) : withoutReferences(value);
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * Ajv checks a schema against the meta-schema and reports every branch it tried (`type` may
 * be a name or a list of names); the error at the deepest key, an `enum` before the others,
 * is the one that says what to write.
 */
function describeMetaErrors(schema: unknown, errors: ErrorObject[]): string {
  const rank = (e: ErrorObject): number => e.instancePath.split('/').length * 10 + (e.keyword === 'enum' ? 2 : e.keyword === 'type' ? 1 : 0);
  const specific = errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf');
  const error = [...(specific.length > 0 ? specific : errors)].sort((a, b) => rank(b) - rank(a))[0];
  if (!error) return 'the schema is invalid';
  const parts = error.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const key = keyName(parts);
  const value = valueAt(schema, parts);
  if (parts.filter((p) => !/^\d+$/.test(p)).at(-1) === 'type' && (error.keyword === 'enum' || error.keyword === 'type')) {
    return `${key} is \`${show(value)}\`, which is not a JSON Schema type; use one of ${TYPES.join(', ')}`;
  }
  switch (error.keyword) {
    case 'enum':
      return `${key} must be one of ${((error.params as { allowedValues: unknown[] }).allowedValues).map((v) => `\`${show(v)}\``).join(', ')}, got \`${show(value)}\``;
    case 'type':
      return `${key} must be ${typeWords(String((error.params as { type: unknown }).type).split(','))}, got \`${show(value)}\``;
    default:
      return `${key} ${error.message ?? 'is invalid'}`;
  }
}

/** `items.type`, `type` item 2: list positions counted from 1, as people count. */
function keyName(parts: string[]): string {
  if (parts.length === 0) return 'the schema';
  const pieces: string[] = [];
  let names: string[] = [];
  for (const part of parts) {
    if (!/^\d+$/.test(part)) {
      names.push(part);
      continue;
    }
    pieces.push(names.length > 0 ? `\`${names.join('.')}\` item ${Number(part) + 1}` : `item ${Number(part) + 1}`);
    names = [];
  }
  if (names.length > 0) pieces.push(`\`${names.join('.')}\``);
  return pieces.join(', ');
}

function valueAt(root: unknown, parts: string[]): unknown {
  let value = root;
  for (const part of parts) value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  return value;
}

const show = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value) ?? 'nothing');
