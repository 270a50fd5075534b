import { readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { FerryError } from '../errors.js';

/**
 * Where a file path that comes from data (inputs, a webhook body, a step's output) may point:
 * the workflow's folder and the state dir. `real` holds them with symlinks resolved, which is
 * what paths are compared against; the others are shown in messages as the user knows them.
 */
export interface DataRoots {
  folder: string;
  stateDir: string | undefined;
  real: readonly string[];
}

export async function dataRoots(workflowFile: string, stateDir: string | undefined): Promise<DataRoots> {
  const folder = path.dirname(path.resolve(workflowFile));
  const given = stateDir === undefined ? [folder] : [folder, path.resolve(stateDir)];
  return { folder, stateDir: stateDir === undefined ? undefined : path.resolve(stateDir), real: await Promise.all(given.map(realpathOfExisting)) };
}

/**
 * Resolves `value` against `baseDir` and checks that it stays inside the roots, following
 * symlinks: `..`, an absolute path or a link inside the folder that points out are all refused.
 * Returns the resolved real path, which is what the caller should open (a link swapped in
 * afterwards is then not followed again).
 */
export async function confineDataPath(value: string, what: string, baseDir: string, roots: DataRoots): Promise<string> {
  const real = await realpathOfExisting(path.resolve(baseDir, value));
  if (roots.real.some((root) => isInside(real, root))) return real;
  const allowed = roots.stateDir === undefined ? `the workflow's folder (${roots.folder})` : `the workflow's folder (${roots.folder}) and the state dir (${roots.stateDir})`;
  throw new FerryError(
    'FERRY_PATH_OUTSIDE',
    `${what} ${JSON.stringify(value)} resolves to ${real}, outside ${allowed}; a path that comes from a template (inputs, a webhook body, a step's output) must stay inside ${roots.stateDir === undefined ? 'it' : 'them'}. To use a file elsewhere, write its path literally in the workflow, or copy the file inside.`,
  );
}

function isInside(target: string, root: string): boolean {
  const rel = path.relative(root, target);
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * The real path of the longest part of `file` that exists, with the rest appended: the rest
 * does not exist yet (an export's output), so it holds no link to follow. A dangling link is
 * followed to where it points, since writing through it would create its target.
 */
export async function realpathOfExisting(file: string): Promise<string> {
  const rest: string[] = [];
  let head = path.resolve(file);
  for (let links = 0; ; ) {
    try {
      return path.join(await realpath(head), ...rest);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      const target = await readlink(head).catch(() => undefined);
      if (target !== undefined && links++ < MAX_LINKS) {
        head = path.resolve(path.dirname(head), target);
        continue;
      }
      const parent = path.dirname(head);
      if (parent === head) return path.resolve(file);
      rest.unshift(path.basename(head));
      head = parent;
    }
  }
}

/** Links followed by hand before giving up, as the kernel's own limit (ELOOP). */
const MAX_LINKS = 40;
