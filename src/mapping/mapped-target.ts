/**
 * The target of an lcmaps.db mapping: the account and exactly the groups the policy gave (as
 * LCMAPS's posix_enf would set them), never uid 0, gid 0 or group 0.
 */
import { authorizationError } from '../errors';
import type { AccountMapping } from '../lcmaps/modules';
import { asGid, findAccount, findGroup } from '../sys/identity';
import type { Target } from '../target';

export function targetFromMapping(mapping: AccountMapping, dn: string): Target {
  const account = findAccount(mapping.uid);
  if (account === undefined)
    throw authorizationError('mapping.no_account', `${dn} maps to uid ${mapping.uid}, which has no account`);
  const name = `'${mapping.account}'`;
  if (mapping.uid === 0)
    throw authorizationError(
      'mapping.root',
      `${dn} maps to ${name}, which has uid 0; glexec never runs payloads as root`,
    );
  if (mapping.gid === 0)
    throw authorizationError(
      'mapping.root',
      `${dn} maps to ${name} with primary group gid 0; glexec never runs payloads in the root group`,
    );
  if (mapping.groups.includes(0))
    throw authorizationError(
      'mapping.root',
      `${dn} maps to ${name} with group 0 among its groups; glexec never runs payloads in the root group`,
    );
  const gid = asGid(mapping.gid);
  return {
    ...account,
    gid,
    groupName: findGroup(gid)?.name ?? String(gid),
    groups: mapping.groups.map(asGid),
    ...(mapping.fqans === undefined ? {} : { fqans: mapping.fqans }),
  };
}
