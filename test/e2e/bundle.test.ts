import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The CLI build carries some packages inside dist/cli/ (tsup.config.ts): each one's licence
// must ship with it, so the list in the config has to follow what the bundle really holds.
const dist = path.resolve(__dirname, '../../dist');

function bundledPackages(): Set<string> {
  const maps = [path.join(dist, 'cli.js.map'), ...readdirSync(path.join(dist, 'cli')).filter((f) => f.endsWith('.map')).map((f) => path.join(dist, 'cli', f))];
  const names = new Set<string>();
  for (const map of maps) {
    for (const source of (JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] }).sources) {
      const inside = source.split('node_modules/')[1];
      if (inside) names.add(inside.startsWith('@') ? inside.split('/').slice(0, 2).join('/') : (inside.split('/')[0] as string));
    }
  }
  return names;
}

describe('the CLI bundle', () => {
  it('ships the licence of every package it carries', () => {
    const packages = bundledPackages();
    expect(packages.has('yaml')).toBe(true);
    const licences = readFileSync(path.join(dist, 'cli', 'THIRD-PARTY-LICENSES.txt'), 'utf8');
    const listed = new Set([...licences.matchAll(/^(\S+)@\d[^ ]* \(/gm)].map((m) => m[1]));
    expect([...packages].filter((p) => !listed.has(p))).toEqual([]);
  });
});
