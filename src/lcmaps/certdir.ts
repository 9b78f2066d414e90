/**
 * The CA directory glexec verifies proxies against. gLExec 0.9's glexec.conf had no certdir:
 * its lcmaps.db's verify_proxy -certdir decided. So glexec.conf's certdir wins when set; else the
 * first -certdir of a verify_proxy module in the selected lcmaps.db policies; else the default.
 */
import type { Config } from '../config/schema';

export const DEFAULT_CERTDIR = '/etc/grid-security/certificates';

export function effectiveCertdir(config: Config): string {
  if (config.certdir !== '') return config.certdir;
  if (config.lcmaps_db_file === '') return DEFAULT_CERTDIR;
  // Required here, not imported: a run without lcmaps.db never evaluates the lcmaps.db code.
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { readLcmapsDb } = require('./db') as typeof import('./db');
  const { compileAccountPolicies } = require('./modules') as typeof import('./modules');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const compiled = compileAccountPolicies(readLcmapsDb(config.lcmaps_db_file), config.lcmaps_get_account_policy);
  for (const policy of compiled.policies) {
    for (const label of policy.rules.keys()) {
      const module = compiled.modules.get(label);
      if (module?.config.kind === 'verify_proxy' && module.config.certdir !== undefined) return module.config.certdir;
    }
  }
  return DEFAULT_CERTDIR;
}
