import { closest } from '../suggest.js';
import type { TemplateRef } from '../template/compile.js';
import type { YamlPath } from './load.js';

/** What a template may read at its place in the workflow. */
export interface Scope {
  /**
   * The pre-order position of the step this template belongs to: a step with a smaller
   * position in this loop or one around it ran before (one number per step instead of a copy
   * of the set of earlier steps keeps validation linear in the number of steps).
   */
  order: number;
  /** Ids of the loops around this point, outermost first. */
  loops: string[];
  /** Item names (`as`) of the loops around this point. */
  items: string[];
  /** `workflow`, `trigger`, `provider` or "step `id`": where the template sits. */
  where: string;
}

export interface ReferenceProblem {
  offset: number;
  code: string;
  message: string;
}

interface Known {
  secrets: Set<string>;
  inputs: Set<string> | undefined;
  allSteps: Map<string, { path: YamlPath; loop: string | undefined; order: number }>;
  /** Loop item names (`as`) and the loop that defines each. */
  loopItems: Map<string, string>;
}

const ROOTS = ['inputs', 'trigger', 'steps', 'env', 'secrets', 'run', 'workflow'];
const TRIGGER_FIELDS = new Set(['type', 'body', 'headers', 'query', 'scheduled_at']);

/** "; did you mean `a.b`?": the path with its name at `at` replaced by the nearest of `options`, or nothing. */
function didYouMean(ref: TemplateRef, at: number, options: Iterable<string>): string {
  const near = closest(ref.parts[at] ?? '', [...options]);
  return near === undefined ? '' : `; did you mean \`${ref.parts.map((p, i) => (i === at ? near : p)).join('.')}\`?`;
}

/** Checks every path a template reads against what exists at its place in the workflow. */
export function checkReferences(refs: readonly TemplateRef[], scope: Scope, known: Known): ReferenceProblem[] {
  const problems: ReferenceProblem[] = [];
  const add = (ref: TemplateRef, code: string, message: string): void => {
    problems.push({ offset: ref.offset, code, message: `\`${ref.original}\`: ${message}` });
  };
  const restricted = scope.where === 'trigger' ? ['secrets', 'env'] : scope.where === 'provider' ? ['secrets', 'env', 'inputs', 'run', 'workflow'] : undefined;

  for (const ref of refs) {
    const [root, second] = ref.parts;
    if (root === undefined) continue;
    if (restricted && !restricted.includes(root)) {
      add(ref, 'FERRY_REF_SCOPE', `${scope.where === 'trigger' ? 'a trigger secret' : 'a provider setting'} can only read ${restricted.join(', ')}`);
      continue;
    }
    if (scope.items.includes(root)) continue;
    switch (root) {
      case 'steps': {
        if (second === undefined) break;
        if (scope.loops.includes(second)) {
          add(ref, 'FERRY_REF_LATER_STEP', `step \`${second}\` is the loop this template runs in, and a loop has no output until it ends; read it after the loop, or use the item and \`loop.index\` inside`);
          break;
        }
        const other = known.allSteps.get(second);
        if (other && other.order < scope.order && (other.loop === undefined || scope.loops.includes(other.loop))) {
          const third = ref.parts[2];
          if (third !== undefined && third !== 'output' && third !== 'status') add(ref, 'FERRY_REF_STEP_FIELD', `a step exposes \`output\` and \`status\`; did you mean \`steps.${second}.output.${ref.parts.slice(2).join('.')}\`?`);
          break;
        }
        if (!other) add(ref, 'FERRY_REF_UNKNOWN_STEP', `there is no step \`${second}\`${didYouMean(ref, 1, known.allSteps.keys())}`);
        else if (other.loop && !scope.loops.includes(other.loop)) add(ref, 'FERRY_REF_INNER_STEP', `step \`${second}\` runs inside loop \`${other.loop}\`; outside it, read \`steps.${other.loop}.output.items\``);
        else add(ref, 'FERRY_REF_LATER_STEP', `step \`${second}\` runs later; a step can only read the steps before it`);
        break;
      }
      case 'secrets':
        if (second !== undefined && !known.secrets.has(second)) add(ref, 'FERRY_REF_SECRET', `secret \`${second}\` is not declared; add it to \`secrets:\`${didYouMean(ref, 1, known.secrets)}`);
        break;
      case 'inputs':
        if (second !== undefined && known.inputs && !known.inputs.has(second)) add(ref, 'FERRY_REF_INPUT', `input \`${second}\` is not declared by any trigger (declared: ${[...known.inputs].join(', ') || 'none'})${didYouMean(ref, 1, known.inputs)}`);
        break;
      case 'trigger':
        if (second !== undefined && !TRIGGER_FIELDS.has(second)) add(ref, 'FERRY_REF_TRIGGER', `the trigger has \`type\`, \`body\`, \`headers\`, \`query\` and (for a schedule) \`scheduled_at\`${didYouMean(ref, 1, TRIGGER_FIELDS)}`);
        break;
      case 'loop':
        if (scope.loops.length === 0) add(ref, 'FERRY_REF_LOOP', '`loop` only exists inside a loop');
        else if (second !== undefined && second !== 'index') add(ref, 'FERRY_REF_LOOP', 'a loop exposes `loop.index`');
        break;
      case 'run':
        if (second !== undefined && second !== 'id') add(ref, 'FERRY_REF_RUN', 'a run exposes `run.id`');
        break;
      case 'workflow':
        if (second !== undefined && second !== 'name') add(ref, 'FERRY_REF_WORKFLOW', 'the workflow exposes `workflow.name`');
        break;
      case 'env':
        break;
      default: {
        const loop = known.loopItems.get(root);
        if (loop) {
          add(ref, 'FERRY_REF_ITEM_SCOPE', `\`${root}\` is the item of loop \`${loop}\` and only exists inside it`);
          break;
        }
        const names = [...ROOTS, ...(scope.loops.length ? ['loop'] : []), ...scope.items];
        // `<<uuidd>>` reads as a path: the helpers that take no arguments are candidates too.
        add(ref, 'FERRY_REF_UNKNOWN', `unknown name \`${root}\`; templates read ${names.join(', ')}${didYouMean(ref, 0, [...names, 'now', 'uuid'])}`);
      }
    }
  }
  return problems;
}
