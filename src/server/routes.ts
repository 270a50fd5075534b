import { isIP } from 'node:net';
import path from 'node:path';
import { errorMessage, type WorkflowIssue } from '../errors.js';
import { envSecrets, type SecretSource } from '../engine/secrets.js';
import type { Registry } from '../providers/registry.js';
import type { CompiledValue } from '../template/value.js';
import { locate, parseSource, readSource, type YamlPath } from '../workflow/load.js';
import { validateSource } from '../workflow/validate.js';
import type { Route, ServedWorkflow } from './handler.js';
import { STANDARD_SECRET_PREFIX, standardKey } from './signature.js';

export interface LoadRoutesOptions {
  /** Workflow files, relative to `cwd` (as `expandPaths` gives them). */
  files: readonly string[];
  cwd: string;
  env: Record<string, string | undefined>;
  /** Where the workflows' declared secrets are read. @default the environment `env` */
  secrets?: SecretSource;
  registry: Registry;
  /** Whether the listener is reachable only from this machine. */
  loopback: boolean;
}

export interface LoadedRoutes {
  routes: Route[];
  served: ServedWorkflow[];
  /** Every reason not to start, as `file:line:col` issues. */
  issues: WorkflowIssue[];
  /** Workflows left out because declared secrets are missing (FERRY_SECRET_MISSING), one issue per secret: the others are served. */
  left: WorkflowIssue[];
  /** Reasons to start with care (an unsigned webhook on loopback). */
  warnings: string[];
}

/** True for hosts only this machine can reach: 127.0.0.0/8, ::1 and `localhost`. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const bare = host.replace(/^\[|\]$/g, '');
  if (isIP(bare) === 4) return bare.startsWith('127.');
  return bare === '::1' || /^::ffff:127\./i.test(bare);
}

/**
 * Loads the workflows a listener serves and checks what only the listener cares about: no two
 * triggers share a path, every `secret:` renders, and an unsigned trigger is served on
 * loopback only. Collects every issue instead of stopping at one. A workflow whose declared
 * secrets are missing is left out (listed in `left`), so the others can still be served.
 */
export async function loadRoutes(options: LoadRoutesOptions): Promise<LoadedRoutes> {
  const out: LoadedRoutes = { routes: [], served: [], issues: [], left: [], warnings: [] };
  const names = new Map<string, string>();
  const owners = new Map<string, string>();
  for (const file of options.files) {
    const abs = path.resolve(options.cwd, file);
    const read = await readSource(abs, file);
    if ('issue' in read) {
      out.issues.push(read.issue);
      continue;
    }
    const { text } = read;
    const { workflow, issues } = validateSource(abs, text, options.registry);
    out.issues.push(...issues.map((i) => ({ ...i, file })));
    if (!workflow) continue;
    const at = positions(file, text);
    const issue = (where: YamlPath, code: string, message: string): void => void out.issues.push({ ...at(where), code, message });

    const folderKey = `${path.dirname(abs)}\0${workflow.name}`;
    const other = names.get(folderKey);
    if (other) issue(['name'], 'FERRY_NAME_DUPLICATE', `workflow name \`${workflow.name}\` is already used by ${other}`);
    else names.set(folderKey, file);

    const found = await (options.secrets ?? envSecrets(options.env)).lookup(workflow.secrets);
    const secrets: Record<string, string> = {};
    const missing: string[] = [];
    for (const name of workflow.secrets) {
      const value = found[name];
      if (value === undefined || value === '') missing.push(name);
      else secrets[name] = value;
    }
    if (missing.length > 0) {
      // Left out whole, its paths unclaimed: a run of it could only fail at its first call.
      const where = at(['secrets']);
      for (const name of missing) out.left.push({ ...where, code: 'FERRY_SECRET_MISSING', message: `missing secret \`${name}\`: set it in the environment of ferry serve; \`${workflow.name}\` is not served` });
      continue;
    }
    const served: ServedWorkflow = { workflow, file, secrets };
    // A schedule trigger is served too: `ferry serve` fires it.
    let serves = workflow.triggers.some((t) => t.type === 'schedule');
    workflow.triggers.forEach((trigger, i) => {
      if (trigger.type !== 'webhook') return;
      const where = at(['triggers', i, 'path']);
      const owner = owners.get(trigger.path);
      if (owner !== undefined) {
        issue(['triggers', i, 'path'], 'FERRY_ROUTE_DUPLICATE', `webhook path \`${trigger.path}\` is already served by ${owner}`);
        return;
      }
      owners.set(trigger.path, `${where.file}:${where.line}:${where.col}`);
      let secret: string | undefined;
      if (trigger.secret) {
        const rendered = renderSecret(trigger.secret, secrets, options.env);
        if (typeof rendered !== 'string') {
          issue(['triggers', i, 'secret'], 'FERRY_SECRET_EMPTY', rendered.problem);
          return;
        }
        secret = rendered;
      } else if (!options.loopback) {
        issue(['triggers', i], 'FERRY_WEBHOOK_UNSIGNED', `webhook \`${trigger.path}\` has no \`secret\`: unsigned deliveries are accepted only when the listener is on loopback (--host 127.0.0.1)`);
        return;
      } else {
        out.warnings.push(`${where.file}:${where.line}:${where.col}: webhook \`${trigger.path}\` has no \`secret\`: accepting unsigned deliveries because the listener is on loopback`);
      }
      out.routes.push({ path: trigger.path, served, secret });
      serves = true;
    });
    if (serves) out.served.push(served);
  }
  const order = new Map(options.files.map((f, i) => [f, i]));
  const byPlace = (a: WorkflowIssue, b: WorkflowIssue): number => (order.get(a.file) ?? 0) - (order.get(b.file) ?? 0) || a.line - b.line || a.col - b.col;
  out.issues.sort(byPlace);
  out.left.sort(byPlace);
  return out;
}

/** The trigger's secret, or why there is none: with an empty key every signature is forgeable. */
function renderSecret(template: CompiledValue, secrets: Record<string, string>, env: Record<string, string | undefined>): string | { problem: string } {
  try {
    const rendered = template({ secrets, env: { ...env } });
    if (typeof rendered === 'string' && rendered.startsWith(STANDARD_SECRET_PREFIX) && !standardKey(rendered)) {
      return { problem: `the webhook \`secret\` starts with \`${STANDARD_SECRET_PREFIX}\` but is not base64 after it, as Standard Webhooks secrets are` };
    }
    if (typeof rendered === 'string' && rendered !== '') return rendered;
    return { problem: 'the webhook `secret` renders to nothing: no delivery could be checked' };
  } catch (error) {
    return { problem: `the webhook \`secret\` cannot be rendered: ${errorMessage(error)}` };
  }
}

/** Positions in a valid file, parsed again only when a listener-level issue needs one. */
function positions(file: string, text: string): (where: YamlPath) => { file: string; line: number; col: number } {
  let source: ReturnType<typeof parseSource>['source'] | undefined;
  return (where) => {
    source ??= parseSource(file, text).source;
    const { line, col } = locate(source, where);
    return { file, line, col };
  };
}
