import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { FerryError, UsageError } from '../errors.js';

/**
 * Turns a file system error on the state dir into one that says what to do. A read-only or
 * foreign state dir and a full disk are situations a user fixes, not bugs with a stack trace.
 */
export function stateDirError(error: unknown, stateDir: string): unknown {
  const code = writeErrorCode(error as NodeJS.ErrnoException | undefined);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FerryError('FERRY_DISK_FULL', `the disk holding the state dir ${stateDir} is full (${code}): free some space there, or choose another state dir with --state-dir DIR or FERRY_STATE_DIR`, { cause: error });
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    // Nothing ran yet: like a wrong option, exit 2.
    return new UsageError(`the state dir ${stateDir} is not writable (${code}): choose another with --state-dir DIR or FERRY_STATE_DIR, or make it writable`, 'FERRY_STATE_DIR_NOT_WRITABLE');
  }
  return error;
}

/**
 * The code of a failed write. A recursive mkdir on a read-only file system reports ENOENT
 * (node's mkdir -p gives up on the parent it cannot create): ask the nearest folder that
 * exists whether it can be written, which names the real reason (EROFS, EACCES).
 */
function writeErrorCode(error: NodeJS.ErrnoException | undefined): string | undefined {
  if (error?.code !== 'ENOENT' || error.syscall !== 'mkdir' || error.path === undefined) return error?.code;
  let folder = path.dirname(error.path);
  while (!existsSync(folder) && path.dirname(folder) !== folder) folder = path.dirname(folder);
  try {
    accessSync(folder, constants.W_OK);
    return error.code;
  } catch (cause) {
    return (cause as NodeJS.ErrnoException).code ?? error.code;
  }
}
