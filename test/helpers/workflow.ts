import { Registry } from '../../src/providers/registry.js';
import { builtinProviders } from '../../src/providers/index.js';
import type { ProviderDefinition } from '../../src/providers/define.js';
import { loadWorkflowText } from '../../src/workflow/validate.js';
import type { Workflow } from '../../src/workflow/types.js';

/** A registry of the built-in providers plus the given test providers. */
export function registryWith(...extra: ProviderDefinition[]): Registry {
  return new Registry([...builtinProviders, ...extra]);
}

/** Loads workflow text written inline in a test; throws with every issue when it is invalid. */
export function workflowFrom(yaml: string, registry: Registry, file = 'test.yaml'): Workflow {
  return loadWorkflowText(file, yaml.replace(/^\n/, ''), registry);
}
