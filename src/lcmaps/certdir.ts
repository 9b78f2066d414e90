/**
 * The CA directory glexec verifies proxies against. gLExec 0.9's glexec.conf had no certdir:
 * its lcmaps.db's verify_proxy -certdir decided. So glexec.conf's certdir wins when set; else the
 * first -certdir of a verify_proxy module in the selected lcmaps.db policies; else the default.
 */
import type { Config } from '../config/schema';
import { lcmapsCode } from '../lazy';

export const DEFAULT_CERTDIR = '/etc/grid-security/certificates';

/** The first verify_proxy -certdir of the lcmaps.db policies glexec.conf selects, if any. */
export type LcmapsDbCertdir = (config: Config) => string | undefined;

/**
 * `fromLcmapsDb` reads the lcmaps.db: by default the lcmaps.db code is loaded for it (a run without
 * lcmaps.db never loads it); code that holds its own copy (glexec-lcmaps.js, glexec-check.js)
 * passes lcmapsDbCertdir (map-target.ts), not to load a second bundle.
 */
export function effectiveCertdir(
  config: Config,
  fromLcmapsDb: LcmapsDbCertdir = (withDb) => lcmapsCode().lcmapsDbCertdir(withDb),
): string {
  if (config.certdir !== '') return config.certdir;
  if (config.lcmaps_db_file === '') return DEFAULT_CERTDIR;
  return fromLcmapsDb(config) ?? DEFAULT_CERTDIR;
}
