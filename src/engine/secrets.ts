import { UsageError } from '../errors.js';
import type { Workflow } from '../workflow/types.js';

/**
 * Where a run's declared secrets come from: the environment today; another host (a vault, a
 * shared store) implements the same method. `ferry run`, `retry`, `serve`, `test` and
 * `--dry-run` all read secrets through one of these.
 */
export interface SecretSource {
  /** The values of `names` this source holds; a name it has no (non-empty) value for is left out. */
  lookup(names: readonly string[]): Record<string, string> | Promise<Record<string, string>>;
}

export interface EnvSecretsOptions {
  /**
   * A secret the environment lacks gets a readable placeholder (`sandbox-amp-key` for
   * `AMP_KEY`) instead of being missing: the sandbox and `ferry test` take any key.
   * @default false
   */
  placeholders?: boolean;
}

/** What stands in for secret `name` in the sandbox, `ferry test` and a dry run. */
export function secretPlaceholder(name: string): string {
  return `sandbox-${name.toLowerCase().replace(/_/g, '-')}`;
}

/** Secrets from environment variables of the same name. */
export function envSecrets(env: Record<string, string | undefined>, options: EnvSecretsOptions = {}): SecretSource {
  return {
    lookup(names) {
      const values: Record<string, string> = {};
      for (const name of names) {
        const value = env[name];
        if (value !== undefined && value !== '') values[name] = value;
        else if (options.placeholders) values[name] = secretPlaceholder(name);
      }
      return values;
    },
  };
}

/** Placeholders only: a dry run never reads a real secret. */
export const placeholderSecrets: SecretSource = envSecrets({}, { placeholders: true });

/**
 * The workflow's declared secrets from `source`. Throws FERRY_SECRET_MISSING (exit 2) naming
 * every missing variable; `hint` says what else the user can do.
 */
export async function readSecrets(workflow: Workflow, source: SecretSource, hint = 'or try the run with --sandbox'): Promise<Record<string, string>> {
  const found = await source.lookup(workflow.secrets);
  const secrets: Record<string, string> = {};
  const missing: string[] = [];
  for (const name of workflow.secrets) {
    const value = found[name];
    if (value !== undefined && value !== '') secrets[name] = value;
    else missing.push(name);
  }
  if (missing.length > 0) {
    throw new UsageError(`missing secret${missing.length > 1 ? 's' : ''} ${missing.map((m) => `\`${m}\``).join(', ')}: set ${missing.length > 1 ? 'them' : 'it'} in the environment (e.g. export ${missing[0]}=...), ${hint}`, 'FERRY_SECRET_MISSING');
  }
  return secrets;
}
