import type { TemplateRef } from '../template/compile.js';
import type { Step } from './types.js';

/**
 * What the templates of a workflow read of its steps' outputs, found from their paths at
 * validation time. It decides what a loop keeps of each item (README, "What a loop keeps"):
 * an action step inside a loop learns which fields of its output are read
 * (`ActionStep.outputReads`), and may leave out large ones nobody reads (http.request's
 * `headers` and `body`), so that a 20,000-item loop does not hold 20,000 answers.
 *
 * The analysis errs on the side of keeping: a path it cannot follow (`@root`, `../` inside a
 * block, `steps` or a step passed whole to a helper) counts as reading everything it may reach.
 */
export class OutputReads {
  /** A template may read any step's whole output. */
  #everything = false;
  /** Per step id: the output fields read, or `*` for the whole output (or, for a loop, its items). */
  readonly #read = new Map<string, Set<string> | '*'>();

  /** Notes what one template reads; `source` is its text, for the paths that `refs` cannot hold. */
  add(refs: readonly TemplateRef[], source: string): void {
    // Block-relative paths (`../`) and `@root` are not among `refs`: such a template may read anything.
    if (source.includes('@root') || source.includes('../')) this.#everything = true;
    for (const { parts } of refs) {
      const [root, id, field, name] = parts;
      if (root === undefined) this.#everything = true; // `this` at the top: the whole context
      if (root !== 'steps') continue;
      if (id === undefined) this.#everything = true;
      else if (field === undefined || (field === 'output' && name === undefined)) this.#read.set(id, '*');
      else if (field === 'output' && name !== undefined) {
        const known = this.#read.get(id);
        if (known === undefined) this.#read.set(id, new Set([name]));
        else if (known !== '*') known.add(name);
      }
    }
  }

  /** Sets `outputReads` on every action step inside a loop whose items no template reads. */
  apply(steps: readonly Step[], inLoop = false, itemsRead = false): void {
    for (const step of steps) {
      const read = this.#everything ? '*' : this.#read.get(step.id);
      if (step.kind === 'loop') {
        // `count` is all a loop's output has besides `items`.
        const readsItems = read === '*' || (read !== undefined && [...read].some((f) => f !== 'count'));
        this.apply(step.steps, true, itemsRead || readsItems);
      } else {
        step.outputReads = !inLoop || itemsRead || read === '*' ? undefined : (read ?? new Set());
      }
    }
  }
}
