import { describe, expect, it } from 'vitest';
import { envSecrets, placeholderSecrets, readSecrets, type SecretSource } from '../../src/engine/secrets.js';
import { builtinRegistry } from '../../src/providers/index.js';
import { workflowFrom } from '../helpers/workflow.js';

const workflow = workflowFrom('name: s\nsecrets: [AMP_KEY, SEG_WRITE_KEY]\nsteps: [{ id: s, action: core.log, with: { message: hi } }]\n', builtinRegistry());

describe('secret sources', () => {
  it('reads declared secrets from the environment', async () => {
    expect(await readSecrets(workflow, envSecrets({ AMP_KEY: 'a-1', SEG_WRITE_KEY: 's-1', OTHER: 'x' }))).toEqual({ AMP_KEY: 'a-1', SEG_WRITE_KEY: 's-1' });
  });

  it('names every missing (or empty) variable and says how to set it', async () => {
    await expect(readSecrets(workflow, envSecrets({ SEG_WRITE_KEY: '' }))).rejects.toMatchObject({
      code: 'FERRY_SECRET_MISSING',
      message: 'missing secrets `AMP_KEY`, `SEG_WRITE_KEY`: set them in the environment (e.g. export AMP_KEY=...), or try the run with --sandbox',
    });
    await expect(readSecrets(workflow, envSecrets({ AMP_KEY: 'a-1' }), 'then retry again')).rejects.toThrow('missing secret `SEG_WRITE_KEY`: set it in the environment (e.g. export SEG_WRITE_KEY=...), then retry again');
  });

  it('stands placeholders in for what the environment lacks in the sandbox, and only placeholders in a dry run', async () => {
    expect(await readSecrets(workflow, envSecrets({ AMP_KEY: 'a-1' }, { placeholders: true }))).toEqual({ AMP_KEY: 'a-1', SEG_WRITE_KEY: 'sandbox-seg-write-key' });
    expect(await readSecrets(workflow, placeholderSecrets)).toEqual({ AMP_KEY: 'sandbox-amp-key', SEG_WRITE_KEY: 'sandbox-seg-write-key' });
  });

  it('takes any source that answers lookups, also asynchronously', async () => {
    const vault: SecretSource = { lookup: async (names) => Object.fromEntries(names.map((n) => [n, `vault:${n}`])) };
    expect(await readSecrets(workflow, vault)).toEqual({ AMP_KEY: 'vault:AMP_KEY', SEG_WRITE_KEY: 'vault:SEG_WRITE_KEY' });
  });
});
