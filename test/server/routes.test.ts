import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { builtinRegistry } from '../../src/providers/index.js';
import { isLoopback, loadRoutes } from '../../src/server/routes.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

describe('served routes', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.8.9.10', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['localhost', true],
    ['0.0.0.0', false],
    ['::', false],
    ['192.168.1.4', false],
    ['example.test', false],
  ])('counts %s as loopback: %s', (host, expected) => {
    expect(isLoopback(host)).toBe(expected);
  });

  it('renders each secret from the environment and marks triggers that declare inputs', async () => {
    const cwd = await tempDir('ferry-routes-');
    await writeFile(
      path.join(cwd, 'a.yaml'),
      'name: a\ntriggers:\n  - { type: webhook, path: /a, secret: "<<secrets.A_SECRET>>", inputs: { n: { type: integer } } }\n  - { type: webhook, path: /a2, secret: "x-<<env.SUFFIX>>" }\nsecrets: [A_SECRET]\nsteps: [{ id: s, action: core.log, with: { message: a } }]\n',
    );
    const loaded = await loadRoutes({ files: ['a.yaml'], cwd, env: { A_SECRET: 'from-env', SUFFIX: 'y' }, registry: builtinRegistry(), loopback: false });
    expect(loaded.issues).toEqual([]);
    expect(loaded.routes.map((r) => [r.path, r.secret])).toEqual([
      ['/a', 'from-env'],
      ['/a2', 'x-y'],
    ]);
    expect(loaded.served).toHaveLength(1);
    expect(loaded.served[0]?.secrets).toEqual({ A_SECRET: 'from-env' });
  });

  it('refuses a whsec_ secret that is not base64 after the prefix, at its position', async () => {
    const cwd = await tempDir('ferry-routes-');
    await writeFile(path.join(cwd, 'w.yaml'), 'name: w\ntriggers:\n  - type: webhook\n    path: /w\n    secret: "<<env.W>>"\nsteps: [{ id: s, action: core.log, with: { message: w } }]\n');
    const load = (w: string) => loadRoutes({ files: ['w.yaml'], cwd, env: { W: w }, registry: builtinRegistry(), loopback: false });
    expect((await load('whsec_not base64!')).issues).toEqual([
      { file: 'w.yaml', line: 5, col: 13, code: 'FERRY_SECRET_EMPTY', message: 'the webhook `secret` starts with `whsec_` but is not base64 after it, as Standard Webhooks secrets are' },
    ]);
    expect((await load('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw')).issues).toEqual([]);
  });
});
