import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { GENERATED_DOCS } from '../../src/cli/commands/docs.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { runTestFiles } from '../../src/testing/run.js';
import { parseTestFile } from '../../src/testing/spec.js';
import { validateSource, workflowSchema } from '../../src/workflow/validate.js';
import { root } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const registry = builtinRegistry();

interface Snippet {
  file: string;
  line: number;
  /** The words after ```: `yaml`, `yaml test`, `csv file=data/users.csv`. */
  info: string;
  text: string;
}

/** Every fenced code block of a Markdown file, with the line it starts on. */
function snippets(file: string, markdown: string): Snippet[] {
  const out: Snippet[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S.*)?$/.exec(lines[i] as string);
    if (!open) continue;
    const end = lines.findIndex((l, j) => j > i && l.startsWith('```'));
    out.push({ file, line: i + 1, info: (open[1] ?? '').trim(), text: `${lines.slice(i + 1, end).join('\n')}\n` });
    i = end;
  }
  return out;
}

const markdownFiles = [
  path.join(root, 'README.md'),
  ...readdirSync(path.join(root, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join(root, 'docs', f)),
];
const all = markdownFiles.flatMap((f) => snippets(path.relative(root, f), readFileSync(f, 'utf8')));
// A ```yaml block is a workflow; other YAML is marked (```yaml test, ```yaml github-actions, ```yaml fragment).
const workflows = all.filter((s) => s.info === 'yaml');
const tests = all.filter((s) => s.info === 'yaml test');

describe('docs', () => {
  it.each(Object.entries(GENERATED_DOCS).map(([name, doc]) => [doc.file, name] as const))('%s is what `ferry docs %s` generates (run `npm run docs` when this fails)', async (file, name) => {
    const doc = GENERATED_DOCS[name];
    expect(await readFile(path.join(root, file), 'utf8')).toBe(doc?.render());
  });

  it('ERRORS.md lists every error code used in src/', async () => {
    const errors = await readFile(path.join(root, 'docs/ERRORS.md'), 'utf8');
    const sources = (await readdir(path.join(root, 'src'), { recursive: true, encoding: 'utf8' })).filter((f) => f.endsWith('.ts'));
    const codes = new Set<string>();
    for (const f of sources) {
      // Codes are string literals; a template literal ending in `_` (FERRY_YAML_${code}) is a family.
      for (const m of (await readFile(path.join(root, 'src', f), 'utf8')).matchAll(/['"`](FERRY_[A-Z_]+)/g)) codes.add(m[1] as string);
    }
    expect(codes.size).toBeGreaterThan(40);
    const missing = [...codes].filter((code) => !errors.includes(code.endsWith('_') ? `\`${code}*\`` : `\`${code}\``));
    expect(missing).toEqual([]);
  });

  it('finds workflow and test snippets in the README and every recipe', () => {
    for (const recipe of ['signup-webhook', 'nightly-export', 'csv-replay']) {
      expect(workflows.some((s) => s.file === `docs/recipes/${recipe}.md`), recipe).toBe(true);
      expect(tests.some((s) => s.file === `docs/recipes/${recipe}.md`), recipe).toBe(true);
    }
    expect(workflows.some((s) => s.file === 'README.md')).toBe(true);
    expect(workflows.some((s) => s.file === 'docs/getting-started.md')).toBe(true);
  });

  it.each(workflows.map((s) => [`${s.file}:${s.line}`, s] as const))('the workflow snippet at %s is valid', (_where, snippet) => {
    const { issues } = validateSource(`${snippet.file}:${snippet.line}`, snippet.text, registry);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.message}`)).toEqual([]);
  });

  it.each(tests.map((s) => [`${s.file}:${s.line}`, s] as const))('the test file snippet at %s is valid', (_where, snippet) => {
    const { issues } = parseTestFile('snippet.test.yaml', '/tmp/snippet.test.yaml', snippet.text);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.message}`)).toEqual([]);
  });

  it('the test snippets of each Markdown file pass against its workflow snippets', async () => {
    const dir = await tempDir('ferry-docs-');
    const files: string[] = [];
    for (const md of new Set(tests.map((s) => s.file))) {
      const folder = path.join(dir, md.replace(/[^a-z0-9]+/gi, '-'));
      await mkdir(path.join(folder, 'data'), { recursive: true });
      const own = all.filter((s) => s.file === md);
      for (const s of own.filter((x) => x.info === 'yaml')) await writeFile(path.join(folder, `${(parse(s.text) as { name: string }).name}.yaml`), s.text);
      for (const s of own.filter((x) => x.info.startsWith('csv file='))) await writeFile(path.join(folder, s.info.slice('csv file='.length)), s.text);
      for (const [i, s] of own.filter((x) => x.info === 'yaml test').entries()) {
        // A test of one of the repository's example workflows runs against that file.
        const target = path.join(folder, (parse(s.text) as { workflow: string }).workflow);
        if (!own.some((x) => x.info === 'yaml' && `${(parse(x.text) as { name: string }).name}.yaml` === path.basename(target))) {
          await writeFile(target, await readFile(path.join(root, 'workflows', path.basename(target)), 'utf8'));
        }
        const file = path.join(folder, `snippet-${i}.test.yaml`);
        await writeFile(file, s.text);
        files.push(path.relative(dir, file));
      }
    }
    const results = await runTestFiles(files, { cwd: dir, registry });
    const problems = results.flatMap((r) => [...r.issues.map((i) => `${r.file}:${i.line}: ${i.message}`), ...r.cases.flatMap((c) => c.failures.map((f) => `${r.file} › ${c.name}: ${f.message} ${f.details.join(' ')}`))]);
    expect(problems).toEqual([]);
    expect(results.flatMap((r) => r.cases).length).toBeGreaterThanOrEqual(7);
  });
});

describe('example workflows', () => {
  const examples = readdirSync(path.join(root, 'workflows')).filter((f) => /\.ya?ml$/.test(f));

  it.each(examples)('workflows/%s starts with the yaml-language-server schema comment', (name) => {
    const first = readFileSync(path.join(root, 'workflows', name), 'utf8').split('\n')[0];
    const schema = /\.test\.ya?ml$/.test(name) ? 'test.schema.json' : 'workflow.schema.json';
    expect(first).toBe(`# yaml-language-server: $schema=../schemas/${schema}`);
  });
});

describe('the JSON Schemas document every field', () => {
  /** Every property of a schema, with where it is, except the `if` conditions of if/then. */
  function properties(schema: unknown, at = '', out: { at: string; schema: Record<string, unknown> }[] = []): typeof out {
    if (Array.isArray(schema)) schema.forEach((s, i) => properties(s, `${at}[${i}]`, out));
    else if (schema !== null && typeof schema === 'object') {
      for (const [key, value] of Object.entries(schema)) {
        if (key === 'if') continue;
        if (key === 'properties' && value && typeof value === 'object') {
          for (const [name, prop] of Object.entries(value)) {
            out.push({ at: `${at}.${name}`, schema: prop as Record<string, unknown> });
            properties(prop, `${at}.${name}`, out);
          }
        } else properties(value, `${at}/${key}`, out);
      }
    }
    return out;
  }
  // A field says what it is, and shows a value unless its type says it all (a list of choices, true/false).
  const undocumented = (all: { at: string; schema: Record<string, unknown> }[]): string[] =>
    all
      .filter(({ schema }) => Object.keys(schema).length > 0 && schema.$ref === undefined)
      .filter(({ schema }) => {
        const choices = schema.enum !== undefined || schema.const !== undefined || schema.type === 'boolean' || JSON.stringify(schema.anyOf ?? '').includes('"enum"');
        return typeof schema.description !== 'string' || (!choices && schema.examples === undefined);
      })
      .map(({ at }) => at);

  it('the workflow schema: a description and examples for every field', () => {
    const all = properties(workflowSchema(registry).schema);
    expect(all.length).toBeGreaterThan(150);
    // Trigger variants repeat `type` as `{}` to allow it next to their own keys.
    expect(undocumented(all).filter((at) => !/allOf\[\d+\]\/then\.type$/.test(at))).toEqual([]);
  });

  it('the test file schema: a description and examples for every field', () => {
    const schema = JSON.parse(readFileSync(path.join(root, 'schemas/test.schema.json'), 'utf8')) as unknown;
    expect(undocumented(properties(schema))).toEqual([]);
  });
});
