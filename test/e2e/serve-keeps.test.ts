import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { githubSignature } from '../../src/server/signature.js';
import { assertBuilt, ferry, spawnFerry, until, type Result } from '../helpers/cli.js';
import { tempDirs } from '../helpers/tmp.js';

const tempDir = tempDirs();

const HOOK_SECRET = 'hook-secret-8d1f3a77';
let root: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  assertBuilt();
  root = await tempDir('ferry-serve-keeps-');
});
afterAll(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

const hook = (name: string, hookPath: string, secrets: string[], extra = '') => `name: ${name}
triggers:
  - type: webhook
    path: ${hookPath}
${secrets.length > 0 ? `    secret: <<secrets.${secrets[0]}>>\n` : ''}${extra}${secrets.length > 0 ? `secrets: [${secrets.join(', ')}]\n` : ''}steps:
  - { id: say, action: core.log, with: { message: "got it" } }
`;

async function serve(dir: string, env: Record<string, string>, extra: string[] = []): Promise<{ url: string; stderr: () => string; stop: () => Promise<Result> }> {
  const { child, done } = spawnFerry(['serve', '--dir', dir, '--port', '0', '--state-dir', path.join(root, `${path.basename(dir)}-state`), ...extra], { cwd: root, env });
  children.push(child);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = done.then((r) => Promise.reject(new Error(`ferry serve exited with ${r.code}:\n${r.stderr}`)));
  await Promise.race([until(() => /listening on http/.test(err)), exited]);
  const url = /listening on (http:\/\/\S+)/.exec(err)?.[1] ?? '';
  return {
    url,
    stderr: () => err,
    stop: () => {
      child.kill('SIGTERM');
      return done;
    },
  };
}

describe('ferry serve keeps serving what it can', () => {
  it('reports a workflow whose secret is missing, leaves it out, and serves the others', async () => {
    const dir = path.join(root, 'mixed');
    await mkdir(dir);
    await writeFile(path.join(dir, 'ok.yaml'), hook('ok', '/hooks/ok', []));
    await writeFile(path.join(dir, 'needs.yaml'), hook('needs', '/hooks/needs', ['NOT_SET_SECRET']));
    const s = await serve(dir, {});
    expect(s.stderr()).toContain('mixed/needs.yaml:6:10: missing secret `NOT_SET_SECRET`: set it in the environment of ferry serve; `needs` is not served');
    expect(s.stderr()).toContain('ferry serve: left out 1 workflow whose secrets are missing');
    expect(s.stderr()).toMatch(/POST \/hooks\/ok +-> ok/);
    expect(s.stderr()).not.toMatch(/POST \/hooks\/needs +->/);
    expect((await fetch(`${s.url}/hooks/ok`, { method: 'POST', body: '{}' })).status).toBe(202);
    expect((await fetch(`${s.url}/hooks/needs`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await s.stop()).code).toBe(0);
  });

  it('exits 2 when every workflow lacks a secret: nothing is left to serve', async () => {
    const dir = path.join(root, 'none');
    await mkdir(dir);
    await writeFile(path.join(dir, 'needs.yaml'), hook('needs', '/hooks/needs', ['NOT_SET_SECRET']));
    const r = await ferry(['serve', '--dir', 'none', '--port', '0'], { cwd: root });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('none/needs.yaml:6:10: missing secret `NOT_SET_SECRET`');
    expect(r.stderr).toContain('nothing left to serve in none: set the missing secrets and start again');
    expect(r.stderr).not.toContain('listening');
  });

  it('logs each refused delivery with its status, path and reason, never its body, query or a secret', async () => {
    const dir = path.join(root, 'refusals');
    await mkdir(dir);
    await writeFile(path.join(dir, 'signed.yaml'), hook('signed', '/hooks/signed', ['HOOK_SECRET'], '    inputs: { email: { type: string } }\n'));
    const s = await serve(dir, { HOOK_SECRET });
    const post = (target: string, body: string, headers: Record<string, string> = {}) => fetch(`${s.url}${target}`, { method: 'POST', body, headers }).then((r) => r.status);
    const body = JSON.stringify({ email: ['value-marker-91'], marker: 'body-marker-5c1e' });
    expect(await post('/hooks/signed?token=query-marker-77', body, { 'x-hub-signature-256': 'sha256=00' })).toBe(401);
    expect(await post('/hooks/signed', 'not json body-marker-5c1e', { 'x-hub-signature-256': githubSignature(HOOK_SECRET, 'not json body-marker-5c1e') })).toBe(400);
    expect(await post('/hooks/signed', body, { 'x-hub-signature-256': githubSignature(HOOK_SECRET, body) })).toBe(400);
    expect(await post('/hooks/nope', body)).toBe(404);
    expect((await fetch(`${s.url}/hooks/signed`)).status).toBe(405);
    await until(() => s.stderr().includes('refused GET /hooks/signed'));
    const log = s.stderr();
    expect(log).toContain('refused POST /hooks/signed: 401 invalid or missing signature');
    expect(log).toContain('refused POST /hooks/signed: 400 body is not JSON');
    expect(log).toContain("refused POST /hooks/signed: 400 the body does not match the trigger's `inputs:`");
    expect(log).toContain('refused POST /hooks/nope: 404 no webhook at this path');
    expect(log).toContain('refused GET /hooks/signed: 405 method not allowed; use POST');
    expect(log).not.toMatch(/body-marker|query-marker|value-marker/);
    expect(log).not.toContain(HOOK_SECRET);
    expect((await s.stop()).code).toBe(0);
  });
});
