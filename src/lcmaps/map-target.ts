/**
 * The mapping of a run through the site's lcmaps.db, by the built-in backend or the LCMAPS library.
 * pipeline.ts loads this module (and with it the lcmaps.db parser, the plug-ins and pool accounts)
 * only when lcmaps_db_file is set: a grid-mapfile run never evaluates that code.
 */
import type { Config } from '../config/schema';
import type { Log } from '../log/logger';
import { targetFromMapping } from '../mapping/mapped-target';
import type { VerifiedProxy } from '../proxy/verify';
import type { Target } from '../target';
import { effectiveCertdir } from './certdir';
import { readLcmapsDb } from './db';
import { runLcmapsLibrary } from './library';
import { mapAccount } from './modules';

export function mapWithLcmaps(proxy: VerifiedProxy & { readonly pem: string }, config: Config, log: Log): Target {
  if (config.lcmaps_backend === 'library') {
    const run = runLcmapsLibrary(
      config,
      Buffer.from(proxy.pem, 'latin1'),
      effectiveCertdir(config),
      proxy.identityDn,
      log,
    );
    log.info('lcmaps library mapped', {
      policy: run.mapping.policy,
      account: run.mapping.account,
      uid: run.mapping.uid,
      gid: run.mapping.gid,
      groups: run.mapping.groups,
      poolindex: run.poolindex,
    });
    return targetFromMapping(run.mapping, proxy.identityDn);
  }
  const mapping = mapAccount(readLcmapsDb(config.lcmaps_db_file), config.lcmaps_get_account_policy, {
    identityDn: proxy.identityDn,
    proxy,
    now: new Date(),
    verifiedAgainstCertdir: effectiveCertdir(config),
  });
  log.info('lcmaps policy mapped', {
    policy: mapping.policy,
    via: mapping.via,
    account: mapping.account,
    gid: mapping.gid,
    groups: mapping.groups,
  });
  return targetFromMapping(mapping, proxy.identityDn);
}
