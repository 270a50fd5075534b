/**
 * Ajv errors -> one readable issue per mistake, at the key or value to fix. Ajv reports a
 * mistake from every schema branch it tried; this keeps the one a person would act on.
 */
import type { ErrorObject } from 'ajv';
import { locate, type Reporter, type YamlPath } from './load.js';
import { closest } from '../suggest.js';
import { DURATION_PATTERN, IDENT_PATTERN, NAME_PATTERN, requiredInputs, STEP_ID_PATTERN, type JsonSchema } from './schema.js';

const TEMPLATE_REF = '#/definitions/template';

function pointerToPath(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function hasTemplateBranch(schema: unknown): boolean {
  const anyOf = (schema as { anyOf?: unknown[] } | null)?.anyOf;
  return Array.isArray(anyOf) && anyOf.some((b) => (b as { $ref?: string }).$ref === TEMPLATE_REF);
}

/** Items of these lists are named by their 1-based position: "step 2", "secret 1". */
const LIST_ITEMS: Record<string, string> = { steps: 'step', triggers: 'trigger', secrets: 'secret' };

/** What the value at `p` is called in a message: `timeout`, step 2, `expect` item 3. */
export function subject(p: YamlPath): string {
  const last = p.at(-1);
  if (last === undefined) return 'the workflow';
  if (typeof last === 'string') return `\`${last}\``;
  const parent = p.at(-2);
  if (typeof parent !== 'string') return `item ${last + 1}`;
  const noun = LIST_ITEMS[parent];
  return noun ? `${noun} ${last + 1}` : `\`${parent}\` item ${last + 1}`;
}

const PATTERN_HINTS: Record<string, (value: string, what: string) => string> = {
  [STEP_ID_PATTERN]: (v) => `step id \`${v}\` must be lowercase letters, digits and _, starting with a letter or _ (pattern ${STEP_ID_PATTERN})`,
  [NAME_PATTERN]: (v) => `workflow name \`${v}\` must be lowercase letters, digits, - and _, starting with a letter or digit`,
  [DURATION_PATTERN]: (v, what) => `${what}: \`${v}\` is not a duration; write a whole number with ms, s, m or h (250ms, 2s, 5m, 1h)`,
  [IDENT_PATTERN]: (v, what) => `${what}: \`${v}\` must be a name of letters, digits and _, not starting with a digit`,
};

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `${typeof value} ${String(value)}`;
}

const TYPE_WORDS: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', integer: 'a whole number', number: 'a number', boolean: 'true or false', null: 'null' };
export const typeWords = (t: string | string[]): string => (Array.isArray(t) ? t : [t]).map((x) => TYPE_WORDS[x] ?? x).join(' or ');

export { closest };

/** The `with` schema inside an action's `then`, before template widening. */
function actionInput(thenSchema: unknown): JsonSchema | undefined {
  const withSchema = (thenSchema as { properties?: { with?: { anyOf?: unknown[] } } } | undefined)?.properties?.with;
  const widened = withSchema?.anyOf?.[0] as { anyOf?: unknown[] } | undefined;
  return (widened?.anyOf?.[0] ?? widened) as JsonSchema | undefined;
}

export function schemaIssues(errors: ErrorObject[], report: Reporter): void {
  // A value that may also be a template reports only its first branch, and a pure type
  // mismatch there reads as "X or a <<template>>".
  const templateAnyOf = errors.filter((e) => e.keyword === 'anyOf' && hasTemplateBranch(e.schema === undefined ? undefined : { anyOf: e.schema }));
  const skip = new Set<ErrorObject>();
  // Grouped once: a file may hold tens of thousands of mistakes, each looked up here.
  const atPath = new Map<string, ErrorObject[]>();
  for (const e of errors) {
    const list = atPath.get(e.instancePath);
    if (list) list.push(e);
    else atPath.set(e.instancePath, [e]);
  }
  // A value of the wrong type fails every other keyword too (a list has no `over`); the
  // type is the one mistake to report there. Type errors of one anyOf branch do not count.
  const wrongType = new Set(errors.filter((e) => e.keyword === 'type' && !/\/(anyOf|oneOf)\/|\/definitions\/template\//.test(e.schemaPath)).map((e) => e.instancePath));
  for (const any of templateAnyOf) {
    skip.add(any);
    const branch0 = `${any.schemaPath.replace(/\/anyOf$/, '')}/anyOf/0/`;
    const inner = (atPath.get(any.instancePath) ?? []).filter((e) => e.schemaPath.startsWith(branch0));
    if (inner.length > 0 && inner.every((e) => e.keyword === 'type')) {
      for (const e of inner) skip.add(e);
      wrongType.add(any.instancePath);
      const p = pointerToPath(any.instancePath);
      const expected = typeWords(inner.map((e) => (e.params as { type: string }).type).join(',').split(','));
      report.at(p, 'FERRY_SCHEMA_TYPE', `${subject(p)} must be ${expected} or a <<template>>, got ${typeName(any.data)}`);
    }
  }
  // `wiht:` both misses `with` and is an unknown key; "did you mean `with`?" says all of it.
  const misspelt = (instancePath: string, missing: string): boolean =>
    (atPath.get(instancePath) ?? []).some((e) => {
      if (e.keyword !== 'additionalProperties') return false;
      const allowed = Object.keys(((e.parentSchema as JsonSchema | undefined)?.properties as object | undefined) ?? {});
      return closest(String((e.params as { additionalProperty: unknown }).additionalProperty), allowed) === missing;
    });
  for (const error of errors) {
    if (report.full) break;
    if (skip.has(error) || error.keyword === 'if' || error.schemaPath.startsWith(`${TEMPLATE_REF}/`) || error.schemaPath.includes('/definitions/template/')) continue;
    if (error.keyword !== 'type' && wrongType.has(error.instancePath) && error.propertyName === undefined) continue;
    const p = pointerToPath(error.instancePath);
    const what = subject(p);
    const params = error.params as Record<string, unknown>;
    switch (error.keyword) {
      case 'additionalProperties': {
        const extra = String(params.additionalProperty);
        if (extra === '<<') {
          report.at([...p, extra], 'FERRY_SCHEMA_UNKNOWN_KEY', 'YAML merge keys (`<<:`) are not supported; write the keys out', 'key');
          break;
        }
        const allowed = Object.keys(((error.parentSchema as JsonSchema | undefined)?.properties as object | undefined) ?? {});
        const suggestion = closest(extra, allowed);
        report.at([...p, extra], 'FERRY_SCHEMA_UNKNOWN_KEY', `unknown key \`${extra}\`${suggestion ? `; did you mean \`${suggestion}\`?` : allowed.length ? ` (allowed here: ${allowed.join(', ')})` : ''}`, 'key');
        break;
      }
      case 'required': {
        const missing = String(params.missingProperty);
        if (error.schemaPath.includes('/oneOf/') || misspelt(error.instancePath, missing)) break;
        const whose = typeof p.at(-1) === 'number' && p.includes('steps') ? 'this step' : what;
        let hint = missing === 'action' ? ' (an action step has `action` and `with`; a loop step has `loop` and `steps`)' : '';
        if (missing === 'with') {
          const input = actionInput(error.parentSchema);
          const needs = input ? requiredInputs(input) : undefined;
          const action = (error.data as { action?: unknown } | undefined)?.action;
          if (needs) hint = `: \`${String(action)}\` needs ${needs}`;
        }
        report.at(p, 'FERRY_SCHEMA_REQUIRED', `${whose} is missing the required key \`${missing}\`${hint}`);
        break;
      }
      case 'oneOf':
        if ((error.parentSchema as JsonSchema | undefined)?.properties && 'over' in ((error.parentSchema as JsonSchema).properties as object)) {
          report.at(p, 'FERRY_LOOP_SOURCE', 'a loop needs exactly one of `over` (an array) or `file` (a CSV, JSONL or JSON file)');
        } else {
          report.at(p, 'FERRY_SCHEMA', `${what} ${error.message ?? 'is invalid'}`);
        }
        break;
      case 'type':
        if (error.schemaPath.startsWith('#/definitions/duration/')) {
          report.at(p, 'FERRY_SCHEMA_TYPE', `${what} must be a duration such as \`500ms\`, \`30s\`, \`5m\` or \`1h\`, got ${typeName(error.data)}`);
          break;
        }
        report.at(p, 'FERRY_SCHEMA_TYPE', `${what} must be ${typeWords(params.type as string)}, got ${typeName(error.data)}`);
        break;
      case 'pattern': {
        if (error.propertyName !== undefined) {
          // A key that breaks `propertyNames`: ajv reports it at the mapping, the key is what to fix.
          const name = error.propertyName;
          const owner = p.at(-1) === 'inputs' ? 'input' : `key in ${what}`;
          report.at([...p, name], 'FERRY_SCHEMA_PATTERN', `${owner} \`${name}\`: ${params.pattern === IDENT_PATTERN ? 'a name is letters, digits and _, not starting with a digit' : `the name does not match ${String(params.pattern)}`}`, 'key');
          break;
        }
        const hint = PATTERN_HINTS[String(params.pattern)];
        report.at(p, 'FERRY_SCHEMA_PATTERN', hint ? hint(String(error.data), what) : `${what}: \`${String(error.data)}\` does not match ${String(params.pattern)}`);
        break;
      }
      case 'enum': {
        const allowed = (params.allowedValues as unknown[]).map(String);
        if (p.at(-1) === 'action' && p.includes('steps')) {
          const suggestion = closest(String(error.data), allowed);
          report.at(p, 'FERRY_UNKNOWN_ACTION', `unknown action \`${String(error.data)}\`${suggestion ? `; did you mean \`${suggestion}\`?` : ''} (\`ferry actions\` lists them)`);
        } else {
          report.at(p, 'FERRY_SCHEMA_ENUM', `${what} must be one of ${allowed.map((v) => `\`${v}\``).join(', ')}, got ${typeName(error.data)}`);
        }
        break;
      }
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum': {
        const parent = (error.parentSchema ?? {}) as { minimum?: number; maximum?: number };
        const range = parent.minimum !== undefined && parent.maximum !== undefined ? `between ${parent.minimum} and ${parent.maximum}` : error.message ?? '';
        report.at(p, 'FERRY_SCHEMA_RANGE', `${what} must be ${range}, got ${String(error.data)}`);
        break;
      }
      case 'minItems':
        report.at(p, 'FERRY_SCHEMA_EMPTY', `${what} needs at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}`);
        break;
      case 'uniqueItems':
        report.at(p, 'FERRY_SCHEMA_DUPLICATE', `${what} lists the same value twice`);
        break;
      case 'propertyNames':
        break; // the pattern error of the name itself says it
      case 'not':
        reportExclusive(error, p, report);
        break;
      default:
        report.at(p, 'FERRY_SCHEMA', `${what} ${error.message ?? 'is invalid'}`);
    }
  }
}

/** `not: { required: [a, b] }` means "not both": say so at whichever of the two comes second. */
function reportExclusive(error: ErrorObject, p: YamlPath, report: Reporter): void {
  const keys = ((error.schema as { required?: unknown } | undefined)?.required ?? []) as unknown[];
  if (keys.length !== 2 || keys.some((k) => typeof k !== 'string')) {
    report.at(p, 'FERRY_SCHEMA', `${subject(p)} has keys that cannot be used together`);
    return;
  }
  const [a, b] = keys as [string, string];
  const pos = (k: string): number => {
    const { line, col } = locate(report.source, [...p, k], 'key');
    return line * 1_000_000 + col;
  };
  const second = pos(a) > pos(b) ? a : b;
  report.at([...p, second], 'FERRY_SCHEMA', `use either \`${a}\` or \`${b}\`, not both`, 'key');
}
