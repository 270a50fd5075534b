import { TemplateError } from '../errors.js';
import { isTemplate, Templates, type CompileOptions, type TemplateContext, type TemplateRef } from './compile.js';

/** A value from the workflow file with its templates compiled: renders to plain data. */
export type CompiledValue = (context: TemplateContext) => unknown;

/** Where a template sits inside a value (the key path from the value's root) and what it reads. */
export interface TemplateSite {
  path: (string | number)[];
  /** The template's text. */
  source: string;
  /** Also filled for a template with syntax errors: the paths of the parts that parsed. */
  refs: readonly TemplateRef[];
}

/**
 * Compiles every template in a value tree once. Literal subtrees are returned as they are
 * (not copied): actions must not mutate their inputs. `onError` receives every syntax error
 * with its path so that validation can report them all; without it the first one throws.
 */
export function compileValue(
  value: unknown,
  options: CompileOptions & { templates?: Templates; sites?: TemplateSite[]; onError?: (error: TemplateError, path: (string | number)[]) => void } = {},
  path: (string | number)[] = [],
): CompiledValue {
  // One Templates for the whole tree: the caller's (a workflow loader's), or one of its own.
  if (options.templates === undefined) options = { ...options, templates: new Templates() };
  if (typeof value === 'string') {
    if (!isTemplate(value)) return () => value;
    const { template, refs, errors } = (options.templates as Templates).inspect(value, options);
    options.sites?.push({ path, source: value, refs });
    if (!template) {
      if (!options.onError) throw errors[0];
      for (const error of errors) options.onError(error, path);
      return () => value;
    }
    const field = path.join('.');
    return (context) => {
      try {
        return template.render(context);
      } catch (error) {
        if (error instanceof TemplateError) error.field ??= field || undefined;
        throw error;
      }
    };
  }
  if (Array.isArray(value)) {
    const items = value.map((v, i) => compileValue(v, options, [...path, i]));
    if (!hasTemplates(value)) return () => value;
    return (context) => items.map((item) => item(context));
  }
  if (value !== null && typeof value === 'object') {
    if (!hasTemplates(value)) return () => value;
    const entries = Object.entries(value).map(([k, v]) => [k, compileValue(v, options, [...path, k])] as const);
    return (context) => {
      const out: Record<string, unknown> = {};
      for (const [k, fn] of entries) {
        const rendered = fn(context);
        // An optional value that rendered to nothing is left out rather than sent as null.
        if (rendered !== undefined) out[k] = rendered;
      }
      return out;
    };
  }
  return () => value;
}

export function hasTemplates(value: unknown): boolean {
  if (typeof value === 'string') return isTemplate(value);
  if (Array.isArray(value)) return value.some(hasTemplates);
  if (value !== null && typeof value === 'object') return Object.values(value).some(hasTemplates);
  return false;
}
