import { createHash } from 'node:crypto';
import { link, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { replaceFile } from './record.js';

/** `<state-dir>/copies/`: one file per workflow source, which run folders' copies are hard links to. */
export const COPIES_DIR = 'copies';

/** Errors of a file system (or a file) that takes no more links: the copy is written as a file of its own. */
const NO_LINK = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EXDEV', 'EMLINK']);

/**
 * The workflow copies of the runs the listener makes: a run folder's `workflow.yaml` is a hard
 * link to `<state-dir>/copies/<sha256 of the source>.yaml`, not a file of its own, because a
 * new file costs the file system an inode (on a busy ext4, most of the listener's time) and the
 * listener makes a folder for every delivery. The shared file is named by its content, written
 * aside and renamed, and read back once per process before it is linked; it is never written
 * in place, so every link keeps the source it was made from. One that takes no more links
 * (EMLINK) is replaced by a fresh file under the same name; links made before stay valid.
 */
export class WorkflowCopies {
  readonly #dir: string;
  /** Source -> its shared file, once known to hold it. */
  readonly #known = new Map<string, Promise<string>>();

  constructor(stateDir: string) {
    this.#dir = path.join(stateDir, COPIES_DIR);
  }

  /** Puts a copy of `source` at `target` (which must not exist): a link where it can, a file where it cannot. */
  async put(target: string, source: string): Promise<void> {
    const shared = this.#known.get(source) ?? this.#learn(source, false);
    try {
      await link(await shared, target);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      // Full of links: the next run links to a fresh file. Removed by someone: written again.
      if (code === 'EMLINK') this.#learn(source, true);
      else if (code === 'ENOENT') this.#known.delete(source);
      else if (!NO_LINK.has(code)) throw error;
    }
    await writeFile(target, source, { mode: 0o600 });
  }

  #learn(source: string, fresh: boolean): Promise<string> {
    const shared = this.#shared(source, fresh);
    this.#known.set(source, shared);
    shared.catch(() => {
      if (this.#known.get(source) === shared) this.#known.delete(source);
    });
    return shared;
  }

  /** The shared file of `source`: the existing one when it holds exactly `source`, else a new one. */
  async #shared(source: string, fresh: boolean): Promise<string> {
    const file = path.join(this.#dir, `${createHash('sha256').update(source).digest('hex').slice(0, 32)}.yaml`);
    if (!fresh && (await readFile(file, 'utf8').catch(() => undefined)) === source) return file;
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    await replaceFile(file, source);
    return file;
  }
}
