/**
 * Markdown references generated from the JSON Schemas and the action registry, so that the
 * docs say what the validator checks. `npm run docs` writes them; a test fails when stale.
 */
import { helperArity } from '../template/helpers.js';
import type { Registry } from '../providers/registry.js';
import { requiredInputs, type JsonSchema } from '../workflow/schema.js';

const isObject = (v: unknown): v is JsonSchema => v !== null && typeof v === 'object' && !Array.isArray(v);

/** A table cell: one line, pipes escaped. */
const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
const code = (value: unknown): string => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.includes('`') ? `\`\` ${text} \`\`` : `\`${text}\``;
};

interface Section {
  anchor: string;
  path: string;
  label: string | undefined;
  intro: string | undefined;
  schema: JsonSchema;
}

/** Walks a schema from its root: one section per object with properties, each with a table of its keys. */
class SchemaDoc {
  readonly #sections: Section[] = [];
  readonly #anchors = new Map<JsonSchema, string>();

  /** `links: false` names nested objects `mapping` instead of giving them sections (the actions reference). */
  constructor(
    readonly root: JsonSchema,
    readonly links = true,
  ) {}

  resolve(schema: JsonSchema): JsonSchema {
    const ref = schema.$ref;
    if (typeof ref !== 'string' || !ref.startsWith('#/definitions/')) return schema;
    const target = (this.root.definitions as Record<string, JsonSchema> | undefined)?.[ref.slice('#/definitions/'.length)];
    return target ? { ...target, ...Object.fromEntries(Object.entries(schema).filter(([k]) => k !== '$ref')) } : schema;
  }

  /** The definition a `$ref` points to, or the schema itself: the same object however it is reached. */
  #stable(schema: JsonSchema): JsonSchema {
    const ref = schema.$ref;
    if (typeof ref !== 'string' || !ref.startsWith('#/definitions/')) return schema;
    return (this.root.definitions as Record<string, JsonSchema> | undefined)?.[ref.slice('#/definitions/'.length)] ?? schema;
  }

  /** The object schemas a value may be: itself, its `anyOf` branches, its if/then/else and allOf variants. */
  #objects(schema: JsonSchema): { label: string | undefined; key: JsonSchema; schema: JsonSchema }[] {
    const s = this.resolve(schema);
    const out: { label: string | undefined; key: JsonSchema; schema: JsonSchema }[] = [];
    if (isObject(s.then) && isObject(s.else)) {
      out.push({ label: 'action step', key: this.#stable(s.else), schema: this.resolve(s.else) }, { label: 'loop step', key: this.#stable(s.then), schema: this.resolve(s.then) });
      return out;
    }
    const variants = Array.isArray(s.allOf) ? s.allOf.filter((b): b is JsonSchema => isObject(b) && isObject(b.then) && isObject((b.then as JsonSchema).properties)) : [];
    if (variants.length > 0 && !isObject((s.properties as JsonSchema | undefined)?.action)) {
      for (const v of variants) {
        const type = ((v.if as JsonSchema | undefined)?.properties as Record<string, JsonSchema> | undefined)?.type?.const;
        const then = v.then as JsonSchema;
        // The `type` key of a variant is declared once, on the shared part.
        out.push({ label: `type: ${String(type)}`, key: then, schema: { ...then, properties: { ...(then.properties as object), ...(s.properties as object) } } });
      }
      return out;
    }
    if (isObject(s.properties)) out.push({ label: undefined, key: this.#stable(schema), schema: s });
    for (const branch of (s.anyOf as unknown[] | undefined) ?? []) {
      if (isObject(branch)) out.push(...this.#objects(branch).filter((o) => isObject(o.schema.properties)));
    }
    return out;
  }

  #add(path: string, label: string | undefined, key: JsonSchema, schema: JsonSchema, intro: string | undefined): string {
    const known = this.#anchors.get(key);
    if (known) {
      // Reached again by another path (`providers.segment.rate` after `providers.core.rate`):
      // the title names the part that differs generically.
      const section = this.#sections.find((x) => x.anchor === known);
      if (section?.path !== undefined && section.path !== path) section.path = mergePaths(section.path, path);
      return known;
    }
    const anchor = `${path}${label ? `-${label}` : ''}`.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase() || 'top-level';
    this.#anchors.set(key, anchor);
    this.#sections.push({ anchor, path, label, intro, schema });
    return anchor;
  }

  /** The type column: words, with links to the sections of object values. */
  type(schema: JsonSchema, path: string): string {
    const s = this.resolve(schema);
    const objects = this.links ? this.#objects(schema) : [];
    const links = objects.map((o) => `[${o.label ?? 'mapping'}](#${this.#add(path, o.label, o.key, o.schema, o.label ? undefined : String(s.description ?? ''))})`);
    if (s.const !== undefined) return code(s.const);
    if (Array.isArray(s.enum)) return s.enum.map(code).join(' | ');
    const parts: string[] = [];
    const types = s.type === undefined ? [] : Array.isArray(s.type) ? (s.type as string[]) : [String(s.type)];
    for (const t of types) {
      if (t === 'array' && isObject(s.items)) parts.push(`list of ${this.type(s.items, `${path}[]`)}`);
      else if (t === 'object' && links.length > 0) parts.push(...links.splice(0));
      else if (t === 'object' && isObject(s.additionalProperties) && Object.keys(s.additionalProperties).length > 0) parts.push(`mapping of ${this.type(s.additionalProperties, `${path}.*`)}`);
      else parts.push(t === 'object' ? 'mapping' : t);
    }
    for (const b of ((s.anyOf ?? s.oneOf) as unknown[] | undefined) ?? []) {
      // Branches that only say which keys are required add no type.
      if (!isObject(b) || Object.keys(b).every((k) => k === 'required')) continue;
      const r = this.resolve(b);
      if (r.pattern === '<<') parts.push('`<<template>>`');
      else if (!isObject(r.properties)) parts.push(this.type(b, path));
    }
    parts.push(...links);
    if (s.pattern === '^[0-9]+(ms|s|m|h)$' || (typeof schema.$ref === 'string' && schema.$ref.endsWith('/duration'))) return 'duration';
    return [...new Set(parts)].join(' or ') || 'any';
  }

  render(title: string, preface: string): string {
    this.#add('', undefined, this.root, this.root, undefined);
    const out = [`# ${title}`, '', preface, ''];
    for (let i = 0; i < this.#sections.length; i++) {
      const section = this.#sections[i] as Section;
      out.push(`<a id="${section.anchor}"></a>`, '', `## ${section.path ? `\`${section.path}\`` : 'Top level'}${section.label ? ` (${section.label})` : ''}`, '');
      const intro = section.intro ?? (section.schema === this.root ? String(this.root.description ?? '') : undefined);
      if (intro) out.push(intro, '');
      const required = new Set((section.schema.required as string[] | undefined) ?? []);
      const prefix = section.path;
      out.push('| key | type | description |', '|---|---|---|');
      for (const [key, raw] of Object.entries((section.schema.properties as Record<string, JsonSchema>) ?? {})) {
        if (!isObject(raw) || Object.keys(raw).length === 0) continue;
        const path = prefix ? `${prefix}.${key}` : key;
        const s = this.resolve(raw);
        const notes = [String(raw.description ?? s.description ?? '')];
        if (required.has(key)) notes.unshift('**Required.**');
        if (s.default !== undefined) notes.push(`Default ${code(s.default)}.`);
        const examples = (raw.examples ?? s.examples) as unknown[] | undefined;
        if (Array.isArray(examples) && examples.length > 0) notes.push(`Example${examples.length > 1 ? 's' : ''}: ${examples.map(code).join(', ')}.`);
        out.push(`| \`${key}\` | ${cell(this.type(raw, path))} | ${cell(notes.filter(Boolean).join(' '))} |`);
      }
      out.push('');
    }
    return `${out.join('\n').trimEnd()}\n`;
  }
}

/** `providers.core.rate` + `providers.http.rate` → `providers.<name>.rate` */
function mergePaths(a: string, b: string): string {
  const x = a.split('.');
  const y = b.split('.');
  if (x.length !== y.length) return a;
  return x.map((part, i) => (part === y[i] ? part : part.endsWith('[]') && y[i]?.endsWith('[]') ? '<name>[]' : '<name>')).join('.');
}

const GENERATED = (what: string): string => `<!-- Generated by \`npm run docs\` from ${what}; edit those, not this file. -->`;

export function workflowReference(schema: JsonSchema): string {
  const keys = new SchemaDoc(schema).render(
    'Workflow file reference',
    `${GENERATED('the workflow JSON Schema (src/workflow/schema.ts) and the template helpers (src/template/helpers.ts)')}\n\nEvery key of a workflow file, as \`ferry validate\` and editors (through \`schemas/workflow.schema.json\`) check it, then the [template helpers](#template-helpers). The inputs of each action (\`with:\`) are in the [actions reference](actions-reference.md); templates in the [README](../README.md#templates).`,
  );
  return `${keys}\n${helperReference()}`;
}

/** Every helper a template may call, with a call to copy. */
function helperReference(): string {
  const out = [
    '<a id="template-helpers"></a>',
    '',
    '## Template helpers',
    '',
    '`<<helper arg…>>`; a call in parentheses is an argument: `<<format_date (now "-1d") "YYYYMMDDTHH">>`. A helper whose value does not convert fails the step with `FERRY_TEMPLATE_VALUE`, naming the step, the input and the value; a literal argument that cannot convert is reported by `ferry validate`.',
    '',
    '| helper | example | does |',
    '|---|---|---|',
  ];
  for (const [name, { example, does }] of Object.entries(helperArity)) out.push(`| \`${name}\` | \`<<${example}>>\` | ${cell(does)} |`);
  return `${out.join('\n')}\n`;
}

export function testReference(schema: JsonSchema): string {
  return new SchemaDoc(schema).render(
    'Test file reference',
    `${GENERATED('the test file JSON Schema (src/testing/schema.ts)')}\n\nEvery key of a \`*.test.yaml\` file, as \`ferry test\` and editors (through \`schemas/test.schema.json\`) check it. The [README](../README.md#testing-workflows) shows how the parts fit together.`,
  );
}

export function actionsReference(registry: Registry): string {
  const out = [
    '# Actions reference',
    '',
    GENERATED('the action registry (src/providers)'),
    '',
    'Every action a step can call, with its inputs (`with:`) and its output (`<<steps.ID.output>>`). `ferry actions` prints the same from the command line. Every input may be a `<<template>>`; rendered values are checked against these schemas when the step runs.',
    '',
  ];
  for (const provider of registry.providers) {
    if (provider.actions.length === 0) continue;
    out.push(`## ${provider.name}`, '', provider.description, '');
    if (provider.config) {
      const doc = new SchemaDoc({ type: 'object', properties: provider.config.properties, required: provider.config.required ?? [] }, false);
      out.push(`Provider block \`providers.${provider.name}\` (besides the common keys of the [workflow reference](workflow-reference.md#providers)):`, '');
      out.push(...table(doc, provider.config.properties, new Set(provider.config.required ?? [])), '');
    }
    for (const action of provider.actions) {
      const name = `${provider.name}.${action.name}`;
      out.push(`### ${name}`, '', action.description, '');
      const input = action.input;
      const needs = requiredInputs(input);
      out.push(`**Inputs** (\`with:\`)${needs ? `; requires ${needs}` : ''}:`, '');
      const doc = new SchemaDoc(input, false);
      out.push(...table(doc, (input.properties as Record<string, JsonSchema>) ?? {}, new Set((input.required as string[] | undefined) ?? [])), '');
      const exclusive = (input.not as JsonSchema | undefined)?.required;
      if (Array.isArray(exclusive)) out.push(`Give at most one of ${exclusive.map((k) => `\`${String(k)}\``).join(' and ')}.`, '');
      const output = action.output;
      if (output) {
        out.push(`**Output**: ${doc.type(output, 'output')}.${output.description ? ` ${String(output.description)}` : ''}`, '');
        const props = output.properties as Record<string, JsonSchema> | undefined;
        if (props) out.push(...table(new SchemaDoc(output, false), props, new Set()), '');
      }
    }
  }
  return `${out.join('\n').trimEnd()}\n`;
}

function table(doc: SchemaDoc, properties: Record<string, JsonSchema>, required: Set<string>): string[] {
  const rows = ['| name | type | description |', '|---|---|---|'];
  for (const [key, s] of Object.entries(properties)) {
    const notes = [required.has(key) ? '**Required.**' : '', String(s.description ?? '')];
    if (s.default !== undefined) notes.push(`Default ${code(s.default)}.`);
    if (Array.isArray(s.examples) && s.examples.length > 0) notes.push(`Example${s.examples.length > 1 ? 's' : ''}: ${s.examples.map(code).join(', ')}.`);
    rows.push(`| \`${key}\` | ${cell(doc.type(s, key))} | ${cell(notes.filter(Boolean).join(' '))} |`);
  }
  return rows;
}
