import { Ajv, type ErrorObject } from 'ajv';
import { typeWords } from './schema-errors.js';

// Compiled like the engine compiles trigger inputs (engine/inputs.ts), so a schema that
// passes here also compiles when a run starts. `logger: false`: a validator prints nothing.
const ajv = new Ajv({ allErrors: true, strict: false, logger: false });

const TYPES = ['array', 'boolean', 'integer', 'null', 'number', 'object', 'string'];

/** What is wrong with a trigger input's JSON Schema, in one sentence; undefined when it is fine. */
export function inputSchemaProblem(schema: Record<string, unknown>): string | undefined {
  if (ajv.validateSchema(schema) !== true) return describeMetaErrors(schema, ajv.errors ?? []);
  try {
    ajv.compile(schema);
    return undefined;
  } catch (error) {
    const ref = /can't resolve reference (\S+)/.exec((error as Error).message)?.[1];
    return ref ? `\`$ref: ${ref}\` points at nothing in this schema` : (error as Error).message;
  }
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
