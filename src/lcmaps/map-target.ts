/**
 * The mapping of a run through the site's lcmaps.db, by the built-in backend or the LCMAPS library,
 * and the certdir its verify_proxy module names. pipeline.ts and certdir.ts load this module (and
 * with it the lcmaps.db parser, the plug-ins and pool accounts) only when lcmaps_db_file is set: a
 * grid-mapfile run never evaluates that code. Installed, it is the entry of glexec-lcmaps.js
 * (src/lazy.ts).
 */
import type { Config } from '../config/schema';
import type { Log } from '../log/logger';
import { targetFromMapping } from '../mapping/mapped-target';
import type { VerifiedProxy } from '../proxy/verify';
import type { Target } from '../target';
import { effectiveCertdir } from './certdir';
import { readLcmapsDb } from './db';
import { runLcmapsLibrary } from './library';
import { compileAccountPolicies, type MappingInput, mapAccount } from './modules';
import { readVomsAttributes } from '../voms/load';

export function mapWithLcmaps(proxy: VerifiedProxy & { readonly pem: string }, config: Config, log: Log): Target {
  if (config.lcmaps_backend === 'library') {
    const run = runLcmapsLibrary(
      config,
      Buffer.from(proxy.pem, 'latin1'),
      effectiveCertdir(config, lcmapsDbCertdir),
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
  const now = new Date();
  const voms = trustedVomsAttributes(proxy, config, now, log);
  const mapping = mapAccount(readLcmapsDb(config.lcmaps_db_file), config.lcmaps_get_account_policy, {
    identityDn: proxy.identityDn,
    proxy,
    now,
    verifiedAgainstCertdir: effectiveCertdir(config, lcmapsDbCertdir),
    ...(voms === undefined ? {} : { voms }),
  });
  log.info('lcmaps policy mapped', {
    policy: mapping.policy,
    via: mapping.via,
    account: mapping.account,
    gid: mapping.gid,
    groups: mapping.groups,
    ...(mapping.fqans === undefined ? {} : { fqans: mapping.fqans }),
  });
  return targetFromMapping(mapping, proxy.identityDn);
}

/** The FQANs of the proxy's trusted ACs for the VOMS modules; each dropped AC is logged with why. */
function trustedVomsAttributes(proxy: VerifiedProxy, config: Config, now: Date, log: Log): MappingInput['voms'] {
  const judgement = readVomsAttributes(proxy, {
    vomsdir: config.vomsdir,
    certdir: effectiveCertdir(config, lcmapsDbCertdir),
    now,
  });
  if (judgement === undefined) return undefined;
  for (const dropped of judgement.dropped) log.warn('VOMS AC dropped', { ...dropped });
  return {
    fqans: judgement.trusted.flatMap((ac) => ac.fqans),
    validity: judgement.trusted.map(({ notBefore, notAfter }) => ({ notBefore, notAfter })),
  };
}

/** The -certdir of the first verify_proxy module in the selected policies (certdir.ts decides). */
export function lcmapsDbCertdir(config: Config): string | undefined {
  const compiled = compileAccountPolicies(readLcmapsDb(config.lcmaps_db_file), config.lcmaps_get_account_policy);
  for (const policy of compiled.policies) {
    for (const label of policy.rules.keys()) {
      const module = compiled.modules.get(label);
      if (module?.config.kind === 'verify_proxy' && module.config.certdir !== undefined) return module.config.certdir;
    }
  }
  return undefined;
}
