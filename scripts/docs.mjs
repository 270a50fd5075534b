// Writes the generated references and the test file schema from the built CLI
// (`npm run docs` builds first). test/docs checks that the committed files match.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist/cli.js');
const ferry = (...args) => execFileSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });

for (const line of ferry('docs', '--list').trim().split('\n')) {
  const [name, file] = line.split('\t');
  const target = path.join(root, file);
  mkdirSync(path.dirname(target), { recursive: true });
  writeFileSync(target, ferry('docs', name));
  console.log(`wrote ${file}`);
}
