/** The local account the proxy's owner maps to, with its groups from the group database. */
import { authorizationError } from './errors';
import { type Account, findAccount, findGroup, type Gid, ROOT_GID, groupsOf, type Identity } from './sys/identity';

export interface Target extends Account, Identity {
  readonly groupName: string;
  /** Supplementary groups from the group database, the primary gid included. */
  readonly groups: readonly Gid[];
  /** The VOMS FQANs the lcmaps.db policy mapped (then `groups` are the policy's, not the group database's). */
  readonly fqans?: readonly string[];
}

export function resolveTarget(accountName: string, dn: string): Target {
  const account = findAccount(accountName);
  if (account === undefined)
    throw authorizationError('mapping.no_account', `${dn} maps to account '${accountName}', which does not exist`);
  if (account.uid === 0)
    throw authorizationError(
      'mapping.root',
      `${dn} maps to '${accountName}', which has uid 0; glexec never runs payloads as root`,
    );
  if (account.gid === 0)
    throw authorizationError(
      'mapping.root',
      `${dn} maps to '${accountName}', whose primary group is gid 0; glexec never runs payloads in the root group`,
    );
  const groups = groupsOf(account);
  if (groups.includes(ROOT_GID))
    throw authorizationError(
      'mapping.root',
      `${dn} maps to '${accountName}', which is a member of group 0; glexec never runs payloads in the root group`,
    );
  return { ...account, groupName: findGroup(account.gid)?.name ?? String(account.gid), groups };
}
