import { amplitude } from './amplitude/index.js';
import { core, http } from './core/index.js';
import { segment } from './segment/index.js';
import type { ProviderDefinition } from './define.js';
import { Registry } from './registry.js';

/** Every provider that ships with ferry. */
export const builtinProviders: readonly ProviderDefinition[] = [core, http, amplitude, segment];

let registry: Registry | undefined;
/** The registry of built-in providers, created once per process. */
export function builtinRegistry(): Registry {
  registry ??= new Registry(builtinProviders);
  return registry;
}
