/**
 * flock(2) locks on a descriptor glexec holds. Node has no flock(2), and glexec wants no extra
 * native code, so util-linux flock(1) takes the lock: the child inherits the descriptor as its
 * fd 3 and calls flock(3, ...). A flock lock belongs to the open file description, which the child
 * shares with glexec, not to the process that asked for it; so it stays held after the child
 * exits, until glexec closes its last descriptor for that file (or a flock(LOCK_UN) on it).
 * POSIX record locks (fcntl F_SETLK) belong to the process instead and would vanish with the child:
 * they cannot be taken this way.
 */
import { spawnSync } from 'node:child_process';

export const FLOCK = '/usr/bin/flock';

/** flock(1)'s exit code when the lock was not granted within --wait (chosen, not its default 1). */
const CONFLICT_EXIT_CODE = 75;
/** The slot the descriptor gets in the child. */
const CHILD_FD = 3;

/** Someone else held a conflicting lock for the whole wait. */
export class LockTimeout extends Error {}
/** The lock could not be attempted (no flock(1), or it failed for another reason). */
export class LockUnavailable extends Error {}

/**
 * PRIVILEGE: runs /usr/bin/flock as root with an empty environment (no caller variable can reach
 * it) and only `fd` passed on; it locks the file behind `fd`, waiting at most `waitSeconds`.
 * Closing `fd` releases the lock.
 */
export function flockDescriptor(fd: number, mode: 'shared' | 'exclusive', waitSeconds: number): void {
  const result = spawnSync(
    FLOCK,
    [
      mode === 'shared' ? '--shared' : '--exclusive',
      '--wait',
      String(waitSeconds),
      '--conflict-exit-code',
      String(CONFLICT_EXIT_CODE),
      String(CHILD_FD),
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe', fd],
      env: {},
      cwd: '/',
      encoding: 'utf8',
      timeout: (waitSeconds + 10) * 1000,
      killSignal: 'SIGKILL',
    },
  );
  if (result.error !== undefined)
    throw new LockUnavailable(
      `${FLOCK} could not be run (${(result.error as NodeJS.ErrnoException).code ?? result.error.message})`,
    );
  if (result.status === CONFLICT_EXIT_CODE)
    throw new LockTimeout(`another process held a conflicting lock for ${waitSeconds} s`);
  if (result.status !== 0) {
    const why =
      result.stderr.trim().replace(/\s+/g, ' ') ||
      (result.signal === null ? `exit ${String(result.status)}` : result.signal);
    throw new LockUnavailable(`${FLOCK} failed: ${why}`);
  }
}
