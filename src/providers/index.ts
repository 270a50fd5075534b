import { amplitude } from './amplitude/index.js';
import { core, http } from './core/index.js';
import { segment } from './segment/index.js';
import type { ProviderDefinition } from './define.js';
import { Registry } from './registry.js';

/** Every provider that ships with ferry. */
export const builtinProviders: readonly ProviderDefinition[] = [core, http, amplitude, segment];

/**
 * A new registry of the built-in providers. Each call makes one (their input schemas are
 * compiled then): hold on to it, as a runtime does (`ferry.registry`).
 */
export function builtinRegistry(): Registry {
  return new Registry(builtinProviders);
}
