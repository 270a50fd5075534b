import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import readline from 'node:readline';

/** Starts bench/emulator.mjs in a child process; returns urls and a stats() call. */
export async function startEmulator(env = {}) {
  const child = spawn(process.execPath, [new URL('./emulator.mjs', import.meta.url).pathname], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout });
  const next = () => once(lines, 'line').then(([l]) => JSON.parse(l));
  const urls = await next();
  return {
    ...urls,
    stats: async () => {
      child.stdin.write('stats\n');
      return next();
    },
    reset: async () => {
      child.stdin.write('reset\n');
      return next();
    },
    close: async () => {
      child.stdin.end();
      await once(child, 'exit');
    },
  };
}

export function machine() {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Replaces the section between <!-- bench:name --> markers in docs/BENCHMARKS.md, keeping the rest. */
export function writeSection(name, markdown) {
  const file = new URL('../docs/BENCHMARKS.md', import.meta.url).pathname;
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text = '# Benchmarks\n\n`npm run bench` measures these; every number is a ratio or a bound measured in one run, on the machine named with it.\n';
  }
  const start = `<!-- bench:${name} -->`;
  const end = `<!-- /bench:${name} -->`;
  const block = `${start}\n${markdown.trim()}\n${end}`;
  const at = text.indexOf(start);
  text = at === -1 ? `${text.trimEnd()}\n\n${block}\n` : `${text.slice(0, at)}${block}${text.slice(text.indexOf(end) + end.length)}`;
  writeFileSync(file, text);
}

export const today = () => new Date().toISOString().slice(0, 10);
