/**
 * Starting and signalling processes: the only place that spawns or kills.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export const SETPRIV = '/usr/bin/setpriv';

export interface TargetIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
}

/** setpriv's arguments that switch to `who` and exec `program` with `args`. */
export function setprivArgs(who: TargetIdentity, program: string, args: readonly string[]): string[] {
  const groups = who.groups.length > 0 ? ['--groups', who.groups.join(',')] : ['--clear-groups'];
  return ['--reuid', String(who.uid), '--regid', String(who.gid), ...groups, '--', program, ...args];
}

export function setprivAvailable(): boolean {
  return existsSync(SETPRIV);
}

/**
 * PRIVILEGE: setpriv (util-linux) runs as root only long enough to set groups, then gid, then
 * uid (real, effective and saved), and execs the payload; the environment it gets was built from
 * nothing (payload/env.ts), so no caller variable can steer it while it is root. `detached` gives
 * the payload a new session and process group, so pid = pgid = sid = the pid returned here.
 */
export function spawnAsTarget(who: TargetIdentity, program: string, args: readonly string[], env: Record<string, string>, cwd: string): ChildProcess {
  return spawn(SETPRIV, setprivArgs(who, program, args), { detached: true, env, cwd, stdio: 'inherit', argv0: 'setpriv' });
}

/**
 * PRIVILEGE: signals a whole process group that glexec created; root may signal anything, so
 * only pgids that glexec got from its own spawn are ever passed here. False when the group is gone.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  if (!(pgid > 1)) throw new Error(`refusing to signal process group ${pgid}`);
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

export function groupExists(pgid: number): boolean {
  return signalGroup(pgid, 0);
}
