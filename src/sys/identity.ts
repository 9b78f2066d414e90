/** Account and group look-ups through NSS (the posix addon and Node's initgroups). */
import { readFileSync } from 'node:fs';
import { posix } from './posix';

export interface Account {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
  readonly shell: string;
}

export function findAccount(nameOrUid: string | number): Account | undefined {
  try {
    const entry = posix().getpwnam(nameOrUid);
    return { name: entry.name, uid: entry.uid, gid: entry.gid, home: entry.dir, shell: entry.shell };
  } catch {
    return undefined;
  }
}

export function findGroup(nameOrGid: string | number): { name: string; gid: number } | undefined {
  try {
    const entry = posix().getgrnam(nameOrGid);
    return { name: entry.name, gid: entry.gid };
  } catch {
    return undefined;
  }
}

/**
 * The supplementary groups the group database gives an account, as initgroups(3) computes them.
 * PRIVILEGE: initgroups sets this root process's own groups for a moment; the shim left it with
 * none, and they are cleared again before returning, so nothing is inherited from it. The list
 * is read from the kernel (/proc/thread-self/status), because process.getgroups() adds the
 * effective gid (0 here) whether or not the account has it.
 */
export function groupsOf(account: Account): number[] {
  // @types/node 20 does not declare initgroups, which Node has on every POSIX platform.
  const proc = process as NodeJS.Process & { initgroups?: (user: string, extraGroup: number) => void };
  if (!proc.initgroups || !proc.setgroups) throw new Error('this platform has no initgroups');
  proc.initgroups(account.name, account.gid);
  try {
    const line = /^Groups:(.*)$/m.exec(readFileSync('/proc/thread-self/status', 'utf8'))?.[1] ?? '';
    const groups = line.trim() === '' ? [] : line.trim().split(/\s+/).map(Number);
    return [...new Set(groups)].sort((a, b) => a - b);
  } finally {
    proc.setgroups([]);
  }
}
