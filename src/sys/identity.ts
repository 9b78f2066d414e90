/**
 * Account and group look-ups through NSS (the posix addon and Node's initgroups), and acting on
 * files with another account's identity.
 */
import { readFileSync, writeSync } from 'node:fs';
import { type PosixAddon, posix } from './posix';

/** Kernel ids, branded so that a uid cannot stand where a gid or a pid is meant. */
export type Uid = number & { readonly __brand: 'Uid' };
export type Gid = number & { readonly __brand: 'Gid' };
export type Pid = number & { readonly __brand: 'Pid' };
export const asUid = (id: number): Uid => id as Uid;
export const asGid = (id: number): Gid => id as Gid;
export const asPid = (id: number): Pid => id as Pid;
export const ROOT_GID = asGid(0);

/** Who a process runs as, or a file operation is done as: uid, primary gid, supplementary groups. */
export interface Identity {
  readonly uid: Uid;
  readonly gid: Gid;
  readonly groups: readonly Gid[];
}

export interface Account {
  readonly name: string;
  readonly uid: Uid;
  readonly gid: Gid;
  readonly home: string;
  readonly shell: string;
}

export function findAccount(nameOrUid: string | number): Account | undefined {
  try {
    const entry = posix().getpwnam(nameOrUid);
    return { name: entry.name, uid: asUid(entry.uid), gid: asGid(entry.gid), home: entry.dir, shell: entry.shell };
  } catch {
    return undefined;
  }
}

export function findGroup(nameOrGid: string | number): { name: string; gid: Gid } | undefined {
  try {
    const entry = posix().getgrnam(nameOrGid);
    return { name: entry.name, gid: asGid(entry.gid) };
  } catch {
    return undefined;
  }
}

/**
 * The supplementary groups the group database gives an account, as initgroups(3) computes them.
 * PRIVILEGE: sets this process's groups for a moment (docs/security.md, "An account's groups").
 */
export function groupsOf(account: Account): Gid[] {
  // @types/node 20 does not declare initgroups, which Node has on every POSIX platform.
  const proc = process as NodeJS.Process & { initgroups?: (user: string, extraGroup: number) => void };
  if (!proc.initgroups || !proc.setgroups) throw new Error('this platform has no initgroups');
  proc.initgroups(account.name, account.gid);
  try {
    const line = /^Groups:(.*)$/m.exec(readFileSync('/proc/thread-self/status', 'utf8'))?.[1] ?? '';
    const groups =
      line.trim() === ''
        ? []
        : line
            .trim()
            .split(/\s+/)
            .map((id) => asGid(Number(id)));
    return [...new Set(groups)].sort((a, b) => a - b);
  } finally {
    proc.setgroups([]);
  }
}

/** The largest id the posix addon passes through unchanged (it takes an int32). */
const MAX_ID = 0x7fffffff;

function checkedId(id: number, what: string): number {
  if (!Number.isInteger(id) || id < 0 || id > MAX_ID)
    throw new Error(`withEffectiveIdentity: ${what} ${id} is not a valid id`);
  return id;
}

/**
 * Runs `fn` (synchronous) with the file-access identity of `who`, so the kernel checks every path
 * it opens as that account's. PRIVILEGE: effective ids only, root restored or the process killed
 * (docs/security.md, "Acting as another account").
 */
export function withEffectiveIdentity<T>(who: Identity, fn: () => T): T {
  const addon = posix();
  if (process.geteuid?.() !== 0 || addon.getegid() !== 0) {
    // Nested or non-root use would make the restore below grant rights this process did not have.
    throw new Error('withEffectiveIdentity needs effective uid and gid 0 (it is not re-entrant)');
  }
  const uid = checkedId(who.uid, 'uid');
  const gid = checkedId(who.gid, 'gid');
  const groups = who.groups.map((group) => checkedId(group, 'group'));
  if (!process.setgroups) throw new Error('this platform has no setgroups');
  try {
    process.setgroups(groups);
    addon.setegid(gid);
    addon.seteuid(uid);
    return fn();
  } finally {
    restoreRoot(addon);
  }
}

/** euid 0 first (it is what allows the other two), then egid 0, then no supplementary groups. */
function restoreRoot(addon: PosixAddon): void {
  try {
    addon.seteuid(0);
    addon.setegid(0);
    process.setgroups?.([]);
    if (addon.geteuid() !== 0 || addon.getegid() !== 0)
      throw new Error('the effective ids are not 0 after the restore');
  } catch (error) {
    // Not an exception: a caller could catch it and carry on as the other account.
    writeSync(
      2,
      `glexec: fatal: cannot return to root after acting as another account: ${String(error).replace(/\s+/g, ' ')}\n`,
    );
    process.kill(process.pid, 'SIGKILL');
    throw error; // not reached
  }
}
