import { createHash } from 'node:crypto';
import type { ProviderDefinition } from '../providers/define.js';
import type { Registry } from '../providers/registry.js';
import { locate, parseSource, sourceData, type SourceDocument } from '../workflow/load.js';
import type { ProviderSettings, Workflow } from '../workflow/types.js';
import type { Account, QueueLimits } from './queue.js';

/**
 * The account a rendered provider block names: the provider, its base URL (else region) and a
 * hash of its account fields. The hash keeps the credential out of scope keys, which are logged.
 */
export function accountOf(definition: ProviderDefinition | undefined, provider: string, config: Record<string, unknown>): Account {
  const baseUrl = accountBase(definition, config);
  const fields = definition?.accountFields ?? definition?.secretFields ?? [];
  if (fields.length === 0) return { provider, baseUrl, credentialHash: '' };
  const hash = createHash('sha256');
  for (const field of fields) hash.update(`${field}\0${JSON.stringify(config[field] ?? null)}\0`);
  return { provider, baseUrl, credentialHash: hash.digest('hex') };
}

/**
 * Where an account lives, as one string: the URL of the provider's first host as the block
 * resolves it, so `region: us`, no region, and a `base_url` of that very host name one
 * account. A provider without hosts (http) is named by its `base_url`, else its region.
 */
function accountBase(definition: ProviderDefinition | undefined, config: Record<string, unknown>): string {
  if (definition?.hosts && Object.keys(definition.hosts).length > 0) {
    try {
      const first = Object.values(accountUrls(definition, config))[0];
      if (first !== undefined) return first;
    } catch {
      // A region the provider lacks: the run fails on it; the scope is named by its text.
    }
  }
  const base = config.base_url;
  return typeof base === 'string' && base !== '' ? base.replace(/\/+$/, '') : typeof config.region === 'string' ? config.region : '';
}

/**
 * The account's URL of each host the provider declares, without a trailing slash: the block's
 * `base_url` replaces them all, else its `region` (`us` by default) picks each host's URL.
 */
export function accountUrls(definition: ProviderDefinition, config: Record<string, unknown>): Record<string, string> {
  const urls: Record<string, string> = {};
  const base = typeof config.base_url === 'string' && config.base_url !== '' ? config.base_url : undefined;
  const region = typeof config.region === 'string' ? config.region : 'us';
  for (const [name, byRegion] of Object.entries(definition.hosts ?? {})) {
    const url = base ?? byRegion[region];
    if (url === undefined) {
      throw new Error(`provider \`${definition.name}\` has no \`${name}\` host in region \`${region}\` (it has ${Object.keys(byRegion).join(', ')}); set \`base_url\` or another \`region\``);
    }
    urls[name] = url.replace(/\/+$/, '');
  }
  return urls;
}

/** A workflow's limits for a provider: its own `concurrency`/`rate`, else the provider's defaults. */
export function limitsOf(settings: ProviderSettings | undefined, definition: ProviderDefinition): QueueLimits {
  return { concurrency: settings?.concurrency ?? definition.defaults.concurrency, rate: settings?.rate ?? definition.defaults.rate };
}

/** One workflow's use of an account, for the "different limits" warning. */
export interface AccountUse {
  /** The file as the user named it. */
  file: string;
  /** Line of the limit that differs (`concurrency:`, `rate:`), else of the provider block. */
  line: () => number;
  provider: string;
  /** Tells accounts apart: a scope key, or (statically) the literal texts of the block. */
  key: string;
  /** How messages name the account: its base URL or region. */
  label: string;
  limits: QueueLimits;
}

/**
 * One warning per account that workflows name with different limits, naming every file and
 * line; every workflow on the account runs at the stricter limits (Limiter.scope).
 */
export function limitConflicts(uses: readonly AccountUse[]): string[] {
  const byAccount = new Map<string, AccountUse[]>();
  for (const use of uses) {
    const key = `${use.provider}\0${use.key}`;
    byAccount.set(key, [...(byAccount.get(key) ?? []), use]);
  }
  const warnings: string[] = [];
  for (const group of byAccount.values()) {
    const first = group[0] as AccountUse;
    if (group.every((u) => sameLimits(u.limits, first.limits))) continue;
    const strict = group.map((u) => u.limits).reduce(strictest);
    const where = group.map((u) => `${u.file}:${u.line()} (${describeLimits(u.limits)})`);
    const list = where.length === 2 ? where.join(' and ') : `${where.slice(0, -1).join(', ')} and ${where.at(-1) ?? ''}`;
    warnings.push(`${first.provider} account ${first.label || '(default hosts)'} is named with different limits by ${list}; runs of all of them get the stricter: ${describeLimits(strict)}`);
  }
  return warnings;
}

/** The stricter of two limits: the lower concurrency, the rate with fewer requests per unit of time. */
export function strictest(a: QueueLimits, b: QueueLimits): QueueLimits {
  const rate = !a.rate ? b.rate : !b.rate ? a.rate : b.rate.limit / b.rate.intervalMs < a.rate.limit / a.rate.intervalMs ? b.rate : a.rate;
  return { concurrency: Math.min(a.concurrency, b.concurrency), rate };
}

function sameLimits(a: QueueLimits, b: QueueLimits): boolean {
  return a.concurrency === b.concurrency && a.rate?.limit === b.rate?.limit && a.rate?.intervalMs === b.rate?.intervalMs;
}

function describeLimits(limits: QueueLimits): string {
  const rate = limits.rate ? `, rate ${limits.rate.limit} per ${limits.rate.intervalMs % 1000 === 0 ? `${limits.rate.intervalMs / 1000}s` : `${limits.rate.intervalMs}ms`}` : '';
  return `concurrency ${limits.concurrency}${rate}`;
}

/** A loaded workflow and the file name the user gave for it. */
export interface NamedWorkflow {
  file: string;
  workflow: Workflow;
}

/**
 * Accounts as `ferry validate` can tell them without running anything: the same provider, the
 * same literal `base_url` (else `region`) text and the same account field text (such as
 * `<<secrets.AMPLITUDE_API_KEY>>`). `accounts` gives rendered accounts instead (`ferry serve`
 * renders the blocks with its secrets); a provider missing there is compared by its text.
 */
export function accountUses(workflows: readonly NamedWorkflow[], registry: Registry, accounts?: (named: NamedWorkflow, provider: string) => Account | undefined): AccountUse[] {
  const uses: AccountUse[] = [];
  // Only a provider that workflows give different limits can warn: the others need no account.
  const seen = new Map<string, QueueLimits>();
  const differ = new Set<string>();
  for (const { workflow } of workflows) {
    for (const [provider, settings] of Object.entries(workflow.providers)) {
      const definition = registry.provider(provider);
      if (!definition) continue;
      const limits = limitsOf(settings, definition);
      const before = seen.get(provider);
      if (before === undefined) seen.set(provider, limits);
      else if (!sameLimits(before, limits)) differ.add(provider);
    }
  }
  for (const named of workflows) {
    let source: SourceDocument | undefined;
    // The YAML is parsed again only for a warning's line or a literal text, and at most once.
    const doc = (): SourceDocument => (source ??= parseSource(named.workflow.file, named.workflow.source).source);
    for (const [provider, settings] of Object.entries(named.workflow.providers)) {
      const definition = registry.provider(provider);
      if (!definition || !differ.has(provider)) continue;
      const line = (): number => {
        const field = settings.concurrency !== undefined ? 'concurrency' : settings.rate !== undefined ? 'rate' : undefined;
        return locate(doc(), field ? ['providers', provider, field] : ['providers', provider], 'key').line;
      };
      const rendered = accounts?.(named, provider);
      const limits = limitsOf(settings, definition);
      if (rendered) {
        uses.push({ file: named.file, line, provider, key: `${rendered.baseUrl ?? ''}\0${rendered.credentialHash ?? ''}`, label: rendered.baseUrl ?? '', limits });
        continue;
      }
      uses.push({ file: named.file, line, provider, ...literalAccount(doc(), provider, definition), limits });
    }
  }
  return uses;
}

/** The account as written: literal texts, templates unrendered. */
function literalAccount(source: SourceDocument, provider: string, definition: ProviderDefinition): { key: string; label: string } {
  const data = sourceData(source) as { providers?: Record<string, Record<string, unknown> | null> } | null;
  const block = data?.providers?.[provider] ?? {};
  const text = (value: unknown): string => (value === undefined || value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value));
  // Resolved like a run resolves it (accountBase): `region: us` and no region are one account.
  const label = accountBase(definition, { base_url: block.base_url, region: block.region });
  const fields = definition.accountFields ?? definition.secretFields ?? [];
  return { key: [label, ...fields.map((f) => text(block[f]))].join('\0'), label };
}
