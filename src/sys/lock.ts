/**
 * flock(2) locks on a descriptor glexec holds. Node has no flock(2), so a tiny addon
 * (shim/flock-addon.c, flock.node) makes the call in this process, waiting in flock(2) as flock(1)
 * does: no flock(1) spawn (two a run cost 12 ms or more). A flock lock belongs to the open file description, so closing `fd` (its last
 * duplicate) releases it. POSIX record locks (fcntl F_SETLK) are not taken (see proxy/target.ts).
 */
import { constants } from 'node:os';
import { join } from 'node:path';
import { installedPath } from '../installed';

/** Someone else held a conflicting lock for the whole wait. */
export class LockTimeout extends Error {}
/** The lock could not be attempted (no addon, or flock(2) failed for another reason). */
export class LockUnavailable extends Error {}

interface FlockAddon {
  /** 0 when locked, else an errno value; EWOULDBLOCK when the wait ran out. */
  lock(fd: number, exclusive: boolean, waitMs: number): number;
}

let addon: FlockAddon | undefined;

/** By absolute path only: the install's own root-owned copy next to the bundle, or the build's. */
export function flockAddonPath(): string {
  return installedPath('flock.node', () => join(__dirname, '../../c/flock.node'));
}

function flockAddon(): FlockAddon {
  if (addon === undefined) {
    const path = flockAddonPath();
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      addon = require(path) as FlockAddon;
    } catch (error) {
      throw new LockUnavailable(`${path} could not be loaded (${(error as Error).message})`);
    }
  }
  return addon;
}

const errnoName = (errno: number): string =>
  Object.entries(constants.errno).find(([, value]) => value === errno)?.[0] ?? `errno ${errno}`;

/**
 * PRIVILEGE: flock(2) on `fd`, as this (root) process, waiting at most `waitSeconds` for a
 * conflicting lock to go. Closing `fd` releases the lock.
 */
export function flockDescriptor(fd: number, mode: 'shared' | 'exclusive', waitSeconds: number): void {
  const result = flockAddon().lock(fd, mode === 'exclusive', Math.round(waitSeconds * 1000));
  if (result === constants.errno.EWOULDBLOCK)
    throw new LockTimeout(`another process held a conflicting lock for ${waitSeconds} s`);
  if (result !== 0) throw new LockUnavailable(`flock(2) failed: ${errnoName(result)}`);
}
