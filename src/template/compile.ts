import { createRequire } from 'node:module';
import type HandlebarsModule from 'handlebars';
import { TemplateError } from '../errors.js';
import { MAX_TEMPLATE_LENGTH } from '../limits.js';
import { closest, nearPath } from '../suggest.js';
import { literalArgumentProblem } from './convert.js';
import { arityProblem, builtinHelpers, helpers, isKnownHelper, lenientHelpers } from './helpers.js';
import { plainProgram } from './plain-parse.js';
import { isPath, nestingError, parseMessage, pathNode, split, stringLiteral, syntaxError, templateErrorOffset, toHandlebars, type AstNode, type CallNode, type PathNode, type Segment } from './source.js';

export { templateErrorOffset };

/** The values a template can see: inputs, trigger, steps, env, secrets, loop item names, loop, run, workflow. */
export type TemplateContext = Record<string, unknown>;

/** A path a template reads, for reference checks at validation time. */
export interface TemplateRef {
  /** Path segments, e.g. `['steps', 'amp', 'output']`. */
  parts: string[];
  original: string;
  /** Offset of the `<<` of the expression that holds it, in the template source. */
  offset: number;
}

export interface TemplateHelperUse {
  name: string;
  offset: number;
}

export interface CompiledTemplate {
  readonly source: string;
  /** True when the source is exactly one `<<expr>>`: the value keeps its type. */
  readonly whole: boolean;
  /** Paths read outside `#each`/`#with` blocks (whose paths are relative to the block). */
  readonly refs: TemplateRef[];
  readonly helpersUsed: TemplateHelperUse[];
  render(context: TemplateContext): unknown;
}

/** What compiling a template found: the compiled template when it has no errors, and every path it reads either way. */
export interface TemplateInspection {
  template: CompiledTemplate | undefined;
  refs: TemplateRef[];
  /** Every syntax error, in source order; one unknown helper does not hide the others. */
  errors: TemplateError[];
}

export interface CompileOptions {
  /** Missing paths render as `undefined` instead of throwing (the `if:` field). */
  lenient?: boolean;
}

type HandlebarsEnv = typeof HandlebarsModule;

export function isTemplate(value: string): boolean {
  return value.includes('<<');
}

function missingPath(original: string, parts: readonly string[], context: unknown): TemplateError {
  const near = nearPath(parts, context);
  return new TemplateError(
    'FERRY_TEMPLATE_MISSING_PATH',
    `\`${original}\` is not defined in the run context${near ? `; did you mean \`${near}\`?` : ''}; make it optional with <<default ${original} "…">> or an \`if:\``,
    original,
  );
}

/** Text rendering of a value inside a mixed template: objects as JSON, null/undefined as empty. */
export function stringify(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

type Getter = (context: TemplateContext) => unknown;

/** Own-property lookup: never walks prototypes, so `constructor` or `__proto__` read nothing. */
function lookup(parts: readonly string[], context: TemplateContext): unknown {
  let value: unknown = context;
  for (const part of parts) {
    if (value === null || value === undefined) return undefined;
    const holder = Object(value) as Record<string, unknown>;
    if (!Object.hasOwn(holder, part)) return undefined;
    value = holder[part];
  }
  return value;
}

function simplePath(node: AstNode): PathNode | null {
  if (!isPath(node) || node.data || node.depth !== 0 || node.parts.length === 0) return null;
  if (/^(this|\.)/.test(node.original)) return null;
  return node;
}

/** The one argument each built-in block helper takes, and an example of it. */
const BLOCK_ARGUMENT: Record<string, [what: string, example: string]> = {
  if: ['the value to test', 'user.email'],
  unless: ['the value to test', 'user.email'],
  each: ['the list or mapping to repeat over', 'inputs.users'],
  with: ['the value to enter', 'user.traits'],
};

/**
 * Compiles templates and keeps what compiling them costs: the Handlebars environment with
 * ferry's helpers, and every template inspected so far. One per runtime or command (a
 * workflow loader holds one); two never share anything.
 */
export class Templates {
  #env: HandlebarsEnv | undefined;
  // Whole-scalar templates hand their value out through this slot: rendering is synchronous,
  // so one slot is enough and avoids an allocation per render.
  #captured: unknown;
  // Templates repeat, within a file (`<<user.id>>` in every step of a loop) and across the
  // files of a repository: each is inspected once. Only templates without errors are kept
  // (an error may be thrown and changed); the bound is far above any repository's.
  readonly #inspected = new Map<string, Inspected>();

  /**
   * Compiles a `<<...>>` template once. Rendering is strict: a missing path throws a
   * TemplateError, except inside `default`, `if`, `unless` or when `lenient` is set.
   * Throws the first syntax error; `inspect` returns them all.
   */
  compile(source: string, options: CompileOptions = {}): CompiledTemplate {
    const { template, errors } = this.inspect(source, options);
    if (!template) throw errors[0] ?? syntaxError('invalid template', source, 0);
    return template;
  }

  /**
   * Compiles a template and reports what validation needs even when it is broken: every
   * syntax error, and the paths read by the parts that did parse, so that one unknown
   * helper does not hide a reference error next to it.
   */
  inspect(source: string, options: CompileOptions = {}): TemplateInspection {
    const lenient = options.lenient === true;
    const key = `${lenient ? 'lenient' : 'strict'}:${source}`;
    let found = this.#inspected.get(key);
    if (!found) {
      found = inspect(this, source, lenient, true);
      if (found.render) {
        if (this.#inspected.size >= MAX_INSPECTED) this.#inspected.clear();
        this.#inspected.set(key, found);
      }
    }
    const { errors, whole, render } = found;
    // Each caller gets lists of its own: a CompiledTemplate is public API.
    const refs = found.refs.map((r) => ({ ...r, parts: [...r.parts] }));
    const helpersUsed = found.helpersUsed.map((h) => ({ ...h }));
    if (!render) return { template: undefined, refs, errors };
    const wrapped = (context: TemplateContext): unknown => {
      try {
        return render(context);
      } catch (error) {
        if (error instanceof TemplateError) {
          // Thrown where the template is unknown (a path lookup, a helper): named here.
          if (error.code === 'FERRY_TEMPLATE_MISSING_PATH' || error.code === 'FERRY_TEMPLATE_VALUE') throw new TemplateError(error.code, error.message, source);
          throw error;
        }
        throw new TemplateError('FERRY_TEMPLATE_RENDER', `template failed: ${(error as Error).message}`, source, { cause: error });
      }
    };
    return { template: { source, whole, refs, helpersUsed, render: wrapped }, refs, errors };
  }

  /**
   * Handlebars with ferry's helpers, loaded when a template first needs it: templates of
   * text, paths and helper calls with plain arguments are parsed by plain-parse.ts, and
   * those of text and paths also render without it (fastRenderer). Loading it and warming
   * up its parser takes longer than validating twenty workflow files.
   */
  handlebars(): HandlebarsEnv {
    if (this.#env) return this.#env;
    const hb = (createRequire(import.meta.url)('handlebars') as HandlebarsEnv).create();
    for (const [name, fn] of Object.entries(helpers)) hb.registerHelper(name, fn as HandlebarsModule.HelperDelegate);
    hb.registerHelper('__cap', (value: unknown) => {
      this.#captured = value;
      return '';
    });
    hb.registerHelper('__str', (value: unknown) => stringify(value));
    // `this` is the context the path was looked up in: the root, or a block's (`#each`, `#with`).
    hb.registerHelper('__req', function (this: unknown, value: unknown, original: unknown) {
      if (value === undefined) throw missingPath(String(original), String(original).split('.'), this);
      return value;
    });
    this.#env = hb;
    return hb;
  }

  /** Renders a compiled whole-scalar template, whose value comes out through `__cap`. */
  capture(compiled: (context: TemplateContext) => string, context: TemplateContext): unknown {
    this.#captured = undefined;
    compiled(context);
    const value = this.#captured;
    this.#captured = undefined;
    return value;
  }
}

/** `Templates.compile`; without `templates`, with a Templates of its own (one-off use, the public API). */
export function compileTemplate(source: string, options: CompileOptions = {}, templates = new Templates()): CompiledTemplate {
  return templates.compile(source, options);
}

/** `Templates.inspect`; without `templates`, with a Templates of its own. */
export function inspectTemplate(source: string, options: CompileOptions = {}, templates = new Templates()): TemplateInspection {
  return templates.inspect(source, options);
}

type Render = (context: TemplateContext) => unknown;
const MAX_INSPECTED = 10_000;

interface Inspected {
  refs: TemplateRef[];
  helpersUsed: TemplateHelperUse[];
  errors: TemplateError[];
  whole: boolean;
  /** Set when there are no errors. */
  render?: Render;
}

/** inspectTemplate without the error wrapping of `render`; `plain`: try plain-parse.ts before Handlebars. */
function inspect(templates: Templates, source: string, lenient: boolean, plain: boolean): Inspected {
  const broken = (error: TemplateError): Inspected => ({ refs: [], helpersUsed: [], errors: [error], whole: false });
  if (source.length > MAX_TEMPLATE_LENGTH) {
    return broken(syntaxError(`a string with templates holds at most ${MAX_TEMPLATE_LENGTH} characters, this one ${source.length}; build long text in several steps, or send data as a value (\`<<json ...>>\`)`, source, 0, 'FERRY_TEMPLATE_TOO_LONG'));
  }
  let segments: Segment[];
  try {
    segments = split(source);
  } catch (error) {
    if (error instanceof TemplateError) return broken(error);
    throw error;
  }
  const deep = nestingError(source, segments);
  if (deep) return broken(deep);
  const { hbSource, starts } = toHandlebars(segments);
  const plainAst = plain ? plainProgram(segments, hbSource, starts) : undefined;
  let program: AstNode;
  try {
    program = plainAst ?? (templates.handlebars().parse(hbSource) as unknown as AstNode);
  } catch (error) {
    return { refs: [], helpersUsed: [], errors: [syntaxError(`invalid template: ${parseMessage((error as Error).message)}`, source, starts[0]?.offset ?? 0)], whole: false };
  }

  const lineStarts = [0];
  for (let i = 0; i < hbSource.length; i++) if (hbSource[i] === '\n') lineStarts.push(i + 1);
  const offsetOf = (node: AstNode): number => {
    const loc = node.loc?.start;
    if (!loc) return 0;
    const hbOffset = (lineStarts[loc.line - 1] ?? 0) + loc.column;
    // The last expression starting at or before it (binary search: a template may hold thousands).
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((starts[mid] as { hbOffset: number }).hbOffset <= hbOffset) lo = mid + 1;
      else hi = mid;
    }
    return lo === 0 ? 0 : (starts[lo - 1] as { offset: number }).offset;
  };

  const refs: TemplateRef[] = [];
  const helpersUsed: TemplateHelperUse[] = [];
  const errors: TemplateError[] = [];
  const fail = (message: string, node: AstNode): void => {
    errors.push(syntaxError(message, source, offsetOf(node)));
  };
  const body = (program.body as AstNode[]).filter((n) => !(n.type === 'ContentStatement' && n.value === ''));
  const whole = segments.length === 1 && segments[0]?.exprOffset !== undefined && body.length === 1 && body[0]?.type === 'MustacheStatement';

  // Rewrites the AST in place: strict paths get `__req`, top-level mustaches `__str`/`__cap`.
  // Errors are collected, not thrown, so the rest of the template is still walked for refs.
  const isCall = (n: CallNode): boolean => n.params.length > 0 || (n.hash?.pairs.length ?? 0) > 0 || (isPath(n.path) && n.path.parts.length === 1 && isKnownHelper(n.path.original));
  const visitValue = (n: AstNode, lenientHere: boolean, scoped: boolean): AstNode => {
    if (n.type === 'SubExpression') {
      visitCall(n as CallNode, scoped, true);
      return n;
    }
    if (!isPath(n)) return n;
    if (!scoped && !n.data) refs.push({ parts: n.parts, original: n.original, offset: offsetOf(n) });
    if (lenient || lenientHere) return n;
    return { type: 'SubExpression', path: pathNode('__req'), params: [n, stringLiteral(n.original)], loc: n.loc } as AstNode;
  };
  // Blocks check their one argument themselves (BLOCK_ARGUMENT); `arity` is for the others.
  const visitCall = (n: CallNode, scoped: boolean, record: boolean, arity = true): void => {
    const name = isPath(n.path) ? n.path.original : '';
    if (name.startsWith('__')) fail(`unknown helper \`${name}\``, n);
    else if (record) helpersUsed.push({ name, offset: offsetOf(n) });
    const wrongCount = arity ? arityProblem(name, n.params.length) : undefined;
    if (wrongCount !== undefined) errors.push(syntaxError(wrongCount, source, offsetOf(n), 'FERRY_TEMPLATE_ARITY'));
    // `number "abc"`, `now "-1x"`: an argument written in the file is checked here, not at the run.
    else for (const [i, param] of n.params.entries()) {
      const problem = literalArgumentProblem(name, i, param);
      if (problem) errors.push(syntaxError(problem.message, source, offsetOf(n), problem.code));
    }
    const lenientArgs = lenientHelpers.has(name);
    n.params = n.params.map((p) => visitValue(p, lenientArgs, scoped));
    for (const pair of n.hash?.pairs ?? []) pair.value = visitValue(pair.value, lenientArgs, scoped);
  };
  const visitProgram = (p: AstNode | null | undefined, scoped: boolean, top: boolean): void => {
    if (!p) return;
    const statements = p.body as AstNode[];
    for (let i = 0; i < statements.length; i++) {
      const st = statements[i] as AstNode;
      if (st.type === 'MustacheStatement') {
        const m = st as CallNode;
        let expr: AstNode;
        if (isCall(m)) {
          visitCall(m, scoped, true);
          expr = { type: 'SubExpression', path: m.path, params: m.params, hash: m.hash, loc: m.loc };
        } else {
          expr = visitValue(m.path, false, scoped);
        }
        m.path = pathNode(top && whole ? '__cap' : '__str');
        m.params = [expr];
        m.hash = undefined;
      } else if (st.type === 'BlockStatement') {
        const b = st as CallNode;
        const name = isPath(b.path) ? b.path.original : '';
        const known = builtinHelpers.has(name);
        if (!known) fail(`unknown block helper \`#${name}\`; use #if, #unless, #each or #with`, b);
        // Handlebars only notices a missing argument when the block renders.
        const argument = BLOCK_ARGUMENT[name];
        if (argument && b.params.length !== 1) fail(`\`<<#${name}>>\` takes exactly one argument, ${argument[0]}: \`<<#${name} ${argument[1]}>>...<</${name}>>\``, b);
        visitCall(b, scoped, known, false);
        const inner = scoped || name === 'each' || name === 'with';
        visitProgram(b.program as AstNode, inner, false);
        visitProgram(b.inverse as AstNode, scoped, false);
      } else if (st.type === 'PartialStatement' || st.type === 'PartialBlockStatement' || st.type === 'DecoratorBlock' || st.type === 'Decorator') {
        fail('partials and decorators are not supported in templates', st);
      }
    }
  };

  // Fast paths for the common shapes: `<<a.b>>` and text with plain paths. They skip
  // Handlebars entirely on the hot path of a loop.
  const fast = fastRenderer(body, segments, lenient);
  visitProgram(program, false, true);
  for (const h of helpersUsed) {
    if (isKnownHelper(h.name)) continue;
    const known = [...Object.keys(helpers), ...builtinHelpers];
    const near = closest(h.name, known);
    errors.push(syntaxError(`unknown helper \`${h.name}\`; ${near ? `did you mean \`${near}\`? ` : ''}known helpers: ${known.join(', ')}`, source, h.offset));
  }
  if (errors.length > 0) return { refs, helpersUsed, whole, errors: errors.sort((a, b) => templateErrorOffset(a) - templateErrorOffset(b)) };

  let render: Render;
  if (fast) {
    render = fast;
  } else if (plainAst) {
    // plain-parse.ts's AST is for reading: Handlebars compiles its own, parsed at the first render.
    let compiled: Render | undefined;
    render = (context) => (compiled ??= inspect(templates, source, lenient, false).render as Render)(context);
  } else {
    const compiled = templates.handlebars().compile(program as unknown as hbs.AST.Program, { noEscape: true, knownHelpersOnly: false });
    render = whole ? (context) => templates.capture(compiled, context) : (context) => compiled(context);
  }
  return { refs, helpersUsed, errors, whole, render };
}

/** The AST `inspectTemplate` walks; with `plain: false` always Handlebars' (tests compare the two). */
export function templateAst(source: string, options: { plain: boolean }): unknown {
  const segments = split(source);
  const { hbSource, starts } = toHandlebars(segments);
  return (options.plain ? plainProgram(segments, hbSource, starts) : undefined) ?? new Templates().handlebars().parse(hbSource);
}

function fastRenderer(body: AstNode[], segments: Segment[], lenient: boolean): Getter | null {
  const getters: (string | { parts: string[]; original: string })[] = [];
  for (const st of body) {
    if (st.type === 'ContentStatement') {
      getters.push(String(st.value));
      continue;
    }
    if (st.type !== 'MustacheStatement') return null;
    const m = st as CallNode;
    if (m.params.length > 0 || (m.hash?.pairs.length ?? 0) > 0) return null;
    const path = simplePath(m.path);
    if (!path || (path.parts.length === 1 && isKnownHelper(path.original))) return null;
    getters.push({ parts: path.parts, original: path.original });
  }
  // Escaped `{{` text makes Handlebars emit several content nodes; keep to the simple case.
  if (segments.some((s) => s.exprOffset === undefined && s.text.includes('{{'))) return null;
  const get = (g: { parts: string[]; original: string }, context: TemplateContext): unknown => {
    const value = lookup(g.parts, context);
    if (value === undefined && !lenient) throw missingPath(g.original, g.parts, context);
    return value;
  };
  const only = getters[0];
  if (getters.length === 1 && typeof only === 'object' && segments.length === 1) return (context) => get(only, context);
  return (context) => {
    let out = '';
    for (const g of getters) out += typeof g === 'string' ? g : stringify(get(g, context));
    return out;
  };
}
