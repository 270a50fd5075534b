import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The folders tell the architecture (STYLE.md, "Layout"): these checks keep it so. They read
// the sources as text, so they see type-only imports too: a type cycle is still a cycle for
// a reader, and `import type` today often becomes a value import tomorrow.

const SRC = path.resolve(import.meta.dirname, '../src');

/** Every .ts file under src/, as paths relative to it (`engine/steps.ts`). */
function sources(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path.relative(SRC, full)] : [];
  });
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^'"]*?\bfrom\s+'(\.[^']+)'|\bimport\(\s*'(\.[^']+)'\s*\)/g;

/** The files of src/ a file imports (static, type-only and dynamic), as paths relative to src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(SRC, file), 'utf8');
  const out: string[] = [];
  for (const match of text.matchAll(IMPORT)) {
    const spec = match[1] ?? match[2];
    if (spec === undefined) continue;
    out.push(path.relative(SRC, path.resolve(SRC, path.dirname(file), spec)).replace(/\.js$/, '.ts'));
  }
  return out;
}

const files = sources();
const graph = new Map(files.map((f) => [f, importsOf(f)]));

/** The import cycles among `within`, each as the files around it. */
function cycles(within: (file: string) => boolean): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const trail: string[] = [];
  const visit = (file: string): void => {
    state.set(file, 'open');
    trail.push(file);
    for (const next of graph.get(file) ?? []) {
      if (!within(next)) continue;
      if (state.get(next) === 'open') found.push([...trail.slice(trail.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    trail.pop();
    state.set(file, 'done');
  };
  for (const file of files) if (within(file) && !state.has(file)) visit(file);
  return found;
}

/** `from -> to` for every import of a file in folder `from` of a file in folder `to`. */
function crossings(from: string, to: string): string[] {
  return files.filter((f) => f.startsWith(`${from}/`)).flatMap((f) => (graph.get(f) ?? []).filter((t) => t.startsWith(`${to}/`)).map((t) => `${f} -> ${t}`));
}

describe('the source layout', () => {
  it('finds the imports it checks (the parser reads this codebase)', () => {
    expect(graph.get('engine/session.ts')).toContain('engine/run.ts');
    expect(graph.get('store/journal.ts')).toContain('types.ts');
  });

  it('has no import cycle inside src/engine/, type-only imports included', () => {
    expect(cycles((f) => f.startsWith('engine/')).map((c) => c.join(' -> '))).toEqual([]);
  });

  it.each([
    ['store', 'engine'],
    ['store', 'providers'],
    ['providers', 'engine'],
    ['providers', 'store'],
    ['sandbox', 'engine'],
    ['template', 'engine'],
    ['workflow', 'engine'],
    ['engine', 'cli'],
    ['engine', 'server'],
  ])('src/%s imports nothing from src/%s', (from, to) => {
    expect(crossings(from, to)).toEqual([]);
  });

  it('keeps the shared modules below everything: types.ts, errors.ts and redact.ts import no folder of src/', () => {
    const below = ['types.ts', 'errors.ts', 'redact.ts'];
    expect(below.flatMap((f) => (graph.get(f) ?? []).filter((t) => t.includes('/')).map((t) => `${f} -> ${t}`))).toEqual([]);
  });

  it('names no provider in the engine: the registry hands providers over', () => {
    expect(crossings('engine', 'providers').filter((c) => /providers\/(amplitude|segment|core)\//.test(c))).toEqual([]);
  });

  it('keeps no mutable state at module level: no module `let`/`var`, no module Map or Set that anything changes', () => {
    const found: string[] = [];
    const text = new Map(files.map((f) => [f, readFileSync(path.join(SRC, f), 'utf8')]));
    const all = [...text.values()].join('\n');
    for (const [file, source] of text) {
      for (const match of source.matchAll(/^(?:export )?(let|var) (\w+)/gm)) found.push(`${file}: module-level ${match[1]} ${match[2]}`);
      for (const match of source.matchAll(/^(?:export )?const (\w+)(?:: [^=]+)? = new (Map|Set|WeakMap|WeakSet)\b/gm)) {
        const name = match[1] as string;
        // A constant lookup table is fine; one that is added to, set or cleared is shared state.
        if (new RegExp(`\\b${name}\\.(set|add|delete|clear)\\(`).test(all)) found.push(`${file}: module-level ${match[2]} ${name} is changed`);
      }
    }
    expect(found).toEqual([]);
  });

  it('keeps engine files short: none over 400 lines', () => {
    const long = files.filter((f) => f.startsWith('engine/')).map((f) => [f, readFileSync(path.join(SRC, f), 'utf8').split('\n').length] as const);
    expect(long.filter(([, lines]) => lines > 400).map(([f, lines]) => `${f}: ${lines} lines`)).toEqual([]);
  });
});
