// Preloaded into a `ferry` process under test (`NODE_OPTIONS=--import <this file>`): records
// every module the process loads, one file URL or path a line, in the file named by
// FERRY_TEST_MODULES_OUT. ES modules are seen by a resolve hook (module.register, run in
// Node's loader thread); CommonJS ones, which Node 20 loads without hooks, are read from
// require.cache as the process exits.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

const out = process.env.FERRY_TEST_MODULES_OUT;
if (out) {
  register(new URL('./loaded-modules-hooks.mjs', import.meta.url), { data: { out } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => appendFileSync(out, Object.keys(cache).map((file) => `${file}\n`).join('')));
}
