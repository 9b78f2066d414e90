/**
 * user_white_list and group_white_list, as gLExec reads them: `*` alone allows anyone (with a
 * warning), `.pool` and `pool*` allow the pool accounts pool001, pool002…, anything else is an
 * exact name. Empty or absent lists allow nobody.
 */
import type { CallerAccount } from './caller';
import type { Config } from './config/schema';
import { authorizationError } from './errors';
import { findGroup } from './sys/identity';
import type { Log } from './log/logger';

export const EVERYONE_WARNING = 'All users are allowed to use glexec, this might not be what you want.';

export function entryMatches(entry: string, name: string): boolean {
  if (entry === '*') return true;
  const pool = entry.startsWith('.') ? entry.slice(1) : entry.endsWith('*') ? entry.slice(0, -1) : undefined;
  if (pool !== undefined) {
    return pool !== '' && name.startsWith(pool) && /^\d+$/.test(name.slice(pool.length));
  }
  return entry === name;
}

export function checkCallerWhiteLists(
  caller: Pick<CallerAccount, 'uid' | 'name' | 'gid' | 'groups'>,
  config: Config,
  log: Log,
): void {
  if (config.user_white_list.includes('*') || config.group_white_list.includes('*')) log.warn(EVERYONE_WARNING);
  if (config.user_white_list.some((entry) => entryMatches(entry, caller.name))) return;
  const groupNames = [caller.gid, ...caller.groups].map((gid) => findGroup(gid)?.name ?? String(gid));
  if (config.group_white_list.some((entry) => groupNames.some((group) => entryMatches(entry, group)))) return;
  // An admin trying glexec out from a root shell: say what to do instead.
  if (caller.uid === 0)
    throw authorizationError(
      'caller.root',
      'glexec was run as root: run it as the pilot account; root is not in the white list',
    );
  throw authorizationError(
    'caller.not_white_listed',
    `caller ${caller.name} (uid ${caller.uid}) is not in user_white_list or group_white_list`,
  );
}
