// Writes src/workflow/validators.generated.js: as Ajv standalone code, the workflow schema's
// validator and the JSON Schema draft-07 meta-schema's (which checks trigger input schemas),
// so that `ferry validate` does not compile them (about 0.3 s) on every start; and the
// validators of the built-in actions' input schemas, so that `ferry run` compiles none of its
// own (the first Ajv compile in a process takes 10-20 ms).
// `npm run build` runs this before tsup; the output is not committed.
//
// The workflow schema is read from schemas/workflow.schema.json, which a test keeps equal to
// the schema the code builds. The module exports the schema it was made from, as JSON, and
// src/workflow/validate.ts uses the validator only for a registry whose schema is that one:
// a stale file is slower (compiled at run time), never wrong.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Ajv } from 'ajv';
import ts from 'typescript';
import standaloneCode from 'ajv/dist/standalone/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const schemaFile = path.join(root, 'schemas/workflow.schema.json');
const outFile = path.join(root, 'src/workflow/validators.generated.js');

/**
 * One validator as an expression. Ajv's CommonJS output runs in a scope of its own (each
 * validator names its functions validate10, schema11, ...), and its `require` of Ajv's
 * runtime helpers goes to a real require: a default import of those CommonJS modules means
 * different things to Node and to vitest.
 */
function standalone(ajv, validate) {
  const code = standaloneCode(ajv, validate).replace(/\brequire\(("ajv\/dist\/runtime\/[\w-]+")\)/g, 'requireRuntime($1)');
  return `(() => {\nconst module = { exports: {} };\n${code}\nreturn module.exports;\n})()`;
}

/**
 * The built-in providers, from the TypeScript sources (the build has not run yet): the files
 * src/providers/index.ts imports, transpiled one by one into a folder of the repository (so
 * that packages resolve), imported, and removed.
 */
async function builtinProviders() {
  const src = path.join(root, 'src');
  const out = mkdtempSync(path.join(root, '.validators-'));
  try {
    const pending = ['providers/index.ts'];
    const seen = new Set(pending);
    // The registry reads the module this script writes; nothing here calls it.
    const generated = 'workflow/validators.generated.ts';
    seen.add(generated);
    mkdirSync(path.join(out, 'workflow'));
    writeFileSync(path.join(out, generated.replace(/\.ts$/, '.js')), 'export const validateDraft07 = undefined;\nexport const actionInputValidators = new Map();\n');
    while (pending.length > 0) {
      const file = pending.pop();
      const text = readFileSync(path.join(src, file), 'utf8');
      const { outputText } = ts.transpileModule(text, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true } });
      mkdirSync(path.dirname(path.join(out, file)), { recursive: true });
      writeFileSync(path.join(out, file.replace(/\.ts$/, '.js')), outputText);
      for (const [, spec] of outputText.matchAll(/\bfrom\s+'(\.[^']+)'/g)) {
        const next = path.relative(src, path.resolve(src, path.dirname(file), spec)).replace(/\.js$/, '.ts');
        if (seen.has(next)) continue;
        seen.add(next);
        pending.push(next);
      }
    }
    writeFileSync(path.join(out, 'package.json'), '{"type":"module"}');
    return (await import(pathToFileURL(path.join(out, 'providers/index.js')).href)).builtinProviders;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/**
 * The validators of the built-in actions' input schemas (and of the properties-only schemas
 * their `checks` use), by the schema's JSON text: src/providers/registry.ts uses one only for
 * a schema with exactly that text, so a stale file is slower, never wrong.
 */
function actionValidators(providers) {
  // The options of src/providers/registry.ts.
  const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: false, code: { source: true } });
  const schemas = new Map();
  for (const provider of providers) {
    for (const action of provider.actions) {
      schemas.set(JSON.stringify(action.input), action.input);
      if (action.checks?.length) {
        const properties = { type: 'object', properties: action.input.properties ?? {} };
        schemas.set(JSON.stringify(properties), properties);
      }
    }
  }
  // A schema with `format` would need ajv-formats' code in the standalone module: compiled at run time instead.
  const entries = [...schemas].filter(([json]) => !json.includes('"format"'));
  return `new Map([\n${entries.map(([json, schema]) => `[${JSON.stringify(json)}, ${standalone(ajv, ajv.compile(schema))}]`).join(',\n')}\n])`;
}

/** The module text for a workflow schema and the built-in providers. */
function generate(schema, providers) {
  // WORKFLOW_AJV_OPTIONS of src/workflow/validate.ts.
  const workflow = new Ajv({ allErrors: true, strict: false, verbose: true, code: { optimize: false, source: true } });
  // The options of src/workflow/input-schema.ts.
  const meta = new Ajv({ allErrors: true, strict: false, logger: false, code: { source: true } });
  return [
    '/* eslint-disable */',
    '// Generated by scripts/validators.mjs (npm run build). Do not edit.',
    "import { createRequire } from 'node:module';",
    'const requireRuntime = createRequire(import.meta.url);',
    '',
    `export const workflowSchemaJson = ${JSON.stringify(JSON.stringify(schema))};`,
    '',
    `export const validateWorkflow = ${standalone(workflow, workflow.compile(schema))};`,
    '',
    `export const validateDraft07 = ${standalone(meta, meta.getSchema('http://json-schema.org/draft-07/schema'))};`,
    '',
    `export const actionInputValidators = ${actionValidators(providers)};`,
    '',
  ].join('\n');
}

// `--check` writes nothing and fails when the file is missing or differs (a test runs it).
const text = generate(JSON.parse(readFileSync(schemaFile, 'utf8')), await builtinProviders());
let current;
try {
  current = readFileSync(outFile, 'utf8');
} catch {
  current = undefined;
}
if (process.argv.includes('--check')) {
  if (current !== text) {
    console.error(`${path.relative(root, outFile)} is not what schemas/workflow.schema.json and this Ajv make; run \`npm run build\``);
    process.exitCode = 1;
  }
} else if (current !== text) {
  // Unchanged output keeps its timestamp: watchers and tsup see nothing new.
  writeFileSync(outFile, text);
}
