import { FerryError } from '../errors.js';

/**
 * Turns a file system error on the state dir into one that says what to do. A read-only or
 * foreign state dir and a full disk are situations a user fixes, not bugs with a stack trace.
 */
export function stateDirError(error: unknown, stateDir: string): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FerryError('FERRY_DISK_FULL', `the disk holding the state dir ${stateDir} is full (${code}): free some space there, or choose another state dir with --state-dir DIR or FERRY_STATE_DIR`, { cause: error });
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new FerryError('FERRY_STATE_DIR_NOT_WRITABLE', `the state dir ${stateDir} is not writable (${code}): choose another with --state-dir DIR or FERRY_STATE_DIR, or make it writable`, { cause: error });
  }
  return error;
}
