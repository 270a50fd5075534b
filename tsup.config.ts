import { readFile, writeFile } from 'node:fs/promises';
import { defineConfig, type Options } from 'tsup';

const common: Options = {
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  splitting: true,
};

/** Packages the CLI build carries inside dist/cli/: their licences ship beside them. */
const BUNDLED = ['yaml', 'ajv', 'ajv-formats', 'fast-deep-equal', 'fast-uri', 'json-schema-traverse'];

async function writeBundledLicences(): Promise<void> {
  const parts = await Promise.all(
    BUNDLED.map(async (name) => {
      const { version, license } = JSON.parse(await readFile(`node_modules/${name}/package.json`, 'utf8')) as { version: string; license: string };
      return `${name}@${version} (${license})\n\n${(await readFile(`node_modules/${name}/LICENSE`, 'utf8')).trim()}\n`;
    }),
  );
  await writeFile('dist/cli/THIRD-PARTY-LICENSES.txt', `The ferry command bundles these packages in this folder.\n\n${parts.join('\n---\n\n')}`);
}

export default defineConfig([
  // The library: its dependencies stay dependencies.
  {
    ...common,
    entry: { index: 'src/index.ts', sandbox: 'src/sandbox/index.ts' },
    dts: { entry: { index: 'src/index.ts', sandbox: 'src/sandbox/index.ts' } },
    // Both builds write to dist/ at once: each cleans only its own files.
    clean: ['!cli.js', '!cli.js.map', '!cli/**'],
  },
  // The command line, with the parsers every command loads at start-up bundled in: as
  // packages they are some 140 CommonJS files to resolve and read, a quarter of the time
  // `ferry validate` takes for one file. (Handlebars and undici are loaded when needed.)
  {
    ...common,
    entry: { cli: 'src/cli/main.ts' },
    noExternal: ['yaml', 'ajv', 'ajv-formats'],
    onSuccess: writeBundledLicences,
    // What they require of Node's own modules is required at run time.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    esbuildOptions(options) {
      options.chunkNames = 'cli/[name]-[hash]';
    },
    // Its chunks are in dist/cli/, which is all it cleans: files in the root (`*.*`) are the
    // library's, or cli.js, which it overwrites.
    clean: ['!*.*'],
  },
]);
