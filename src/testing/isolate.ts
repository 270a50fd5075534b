import { copyFile, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RetryPolicy, Step, Workflow } from '../workflow/types.js';

/** A copy of a workflow whose steps went through `fn` (loops keep their inner steps mapped too). */
export function mapSteps(workflow: Workflow, fn: (step: Step) => Step): Workflow {
  const walk = (steps: readonly Step[]): Step[] => steps.map((s) => fn(s.kind === 'loop' ? { ...s, steps: walk(s.steps) } : { ...s }));
  return { ...workflow, steps: walk(workflow.steps) };
}

/**
 * Backoff waits shortened to a few ms, attempts kept: a test checks what was retried and how
 * often, not how long ferry slept. A Retry-After the provider sends is still honoured.
 */
export function fastRetries(workflow: Workflow): Workflow {
  const fast = (p: RetryPolicy): RetryPolicy => ({ ...p, initialMs: Math.min(p.initialMs, 1), maxMs: Math.min(p.maxMs, 10) });
  return mapSteps({ ...workflow, retry: fast(workflow.retry) }, (s) => (s.kind === 'action' && s.retry ? { ...s, retry: fast(s.retry) } : s));
}

export interface Isolated {
  workflow: Workflow;
  /** The folder that stands in for the workflow's own: files actions write land here. */
  dir: string;
  cleanup(): Promise<void>;
}

/**
 * Moves a workflow into a fresh temporary folder so that files it writes (an export's
 * NDJSON) never touch the user's tree. Loop files of the workflow's folder are linked in,
 * so a loop still reads them, or reads what an earlier step of this run wrote there.
 */
export async function isolate(workflow: Workflow): Promise<Isolated> {
  const dir = await mkdtemp(path.join(tmpdir(), 'ferry-'));
  const home = path.dirname(workflow.file);
  const links: Promise<void>[] = [];
  const moved = mapSteps({ ...workflow, file: path.join(dir, path.basename(workflow.file)) }, (step) => {
    if (step.kind !== 'loop' || step.file === undefined) return step;
    const rel = path.relative(home, step.file);
    if (rel.startsWith('..') || path.isAbsolute(rel)) return step;
    const target = path.join(dir, rel);
    links.push(link(step.file, target));
    return { ...step, file: target };
  });
  await Promise.all(links);
  return { workflow: moved, dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

async function link(real: string, target: string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  const exists = await stat(real).then(
    () => true,
    () => false,
  );
  if (!exists) return;
  // A link keeps a large input file where it is; where links are not allowed, copy it.
  await symlink(real, target).catch(async (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') await copyFile(real, target);
  });
}
