/**
 * `lcmaps_backend = library`: the real LCMAPS maps, in the root-only lcmaps-helper process
 * (shim/lcmaps-helper.c), because lcmaps_posix_enf.mod switches the identity of whatever process
 * runs it. glexec has verified the proxy before; here it checks that only root can change the
 * library, the plug-in directory and every plug-in the policies use (202 naming the file), runs
 * the helper with a fixed environment and the proxy on its standard input, and reads back uid,
 * gids and pool index. A refusal is a 203 carrying LCMAPS's own reason from its log.
 */
import { join } from 'node:path';
import type { Config } from '../config/schema';
import { authorizationError, systemError } from '../errors';
import { pathExists, readLink, lstatPath } from '../sys/files';
import { type TrustPolicy, UntrustedPath, walkTrustedPath, walkTrustedPathFollowingLinks } from '../trust';
import { type LcmapsDb, readLcmapsDb } from './db';
import type { AccountMapping } from './modules';
import { parsePolicyNames } from './modules';
import { findAccount } from '../sys/identity';
import { runLcmapsHelper } from '../sys/lcmaps-helper';

export const LIBRARY_NAME = 'liblcmaps.so.0';
const LIBRARY_DIRS = ['/usr/lib64', '/usr/lib/x86_64-linux-gnu', '/usr/lib'];
/** LCMAPS logs a module's reason for a refusal at notice level (3). */
const MIN_DEBUG_LEVEL = 3;
const rootOnly: TrustPolicy = { trustedUids: [], trustedGids: [], finalType: 'file' };

/** The library file: lcmaps_libdir's, or the first system directory that has one. */
export function libraryFile(config: Config): string {
  if (config.lcmaps_libdir !== '') return join(config.lcmaps_libdir, LIBRARY_NAME);
  const found = LIBRARY_DIRS.map((dir) => join(dir, LIBRARY_NAME)).find((path) => pathExists(path));
  if (found === undefined)
    throw systemError(
      'lcmaps.no_library',
      `lcmaps_backend = library, but no ${LIBRARY_NAME} in ${LIBRARY_DIRS.join(', ')}; install liblcmaps0 or set lcmaps_libdir`,
    );
  return found;
}

/**
 * Only root can change `path`: its directories, the name itself, and (for a symbolic link, as
 * plug-ins and sonames are) the file it resolves to. Returns the resolved file.
 */
export function requireRootOnlyFile(what: string, path: string): string {
  try {
    // Every directory that holds a link on the way is checked too: a link in a directory someone
    // else can write could be pointed elsewhere after this check.
    return walkTrustedPathFollowingLinks(path, rootOnly, lstatPath, readLink).resolved;
  } catch (error) {
    if (error instanceof UntrustedPath)
      throw systemError(
        'lcmaps.untrusted',
        `${what} ${path} is not trusted: ${error.message}`,
        undefined,
        error.problem,
      );
    const code = (error as { code?: string }).code ?? String(error);
    throw systemError('lcmaps.untrusted', `${what} ${path} cannot be checked: ${code}`);
  }
}

/** The plug-in files of the modules the policies use, as LCMAPS resolves them against `path =`. */
export function pluginFiles(db: LcmapsDb): string[] {
  const used = new Set(
    db.policies.flatMap((policy) => policy.rules.flatMap((rule) => [rule.from, rule.onSuccess, rule.onFailure])),
  );
  const files: string[] = [];
  for (const [label, module] of db.modules) {
    if (!used.has(label)) continue;
    if (!module.file.startsWith('/') && db.path === undefined) {
      throw systemError(
        'lcmaps.no_plugin_dir',
        `${db.file} line ${module.line}: module '${label}' (${module.file}) is not an absolute path and the file has no 'path =': with lcmaps_backend = library glexec must know which plug-in files LCMAPS loads`,
      );
    }
    files.push(module.file.startsWith('/') ? module.file : join(db.path ?? '', module.file));
  }
  return files;
}

/** The library and every plug-in LCMAPS would load, checked; returns the resolved library file. */
export function checkLibraryTrust(config: Config, db: LcmapsDb): string {
  const library = requireRootOnlyFile('LCMAPS library', libraryFile(config));
  if (db.path !== undefined) {
    try {
      walkTrustedPath(db.path, { ...rootOnly, finalType: 'directory' }, lstatPath);
    } catch (error) {
      if (error instanceof UntrustedPath)
        throw systemError('lcmaps.untrusted', `LCMAPS plug-in directory ${db.path} is not trusted: ${error.message}`);
      throw systemError(
        'lcmaps.untrusted',
        `LCMAPS plug-in directory ${db.path} cannot be checked: ${(error as { code?: string }).code ?? String(error)}`,
      );
    }
  }
  for (const file of pluginFiles(db)) requireRootOnlyFile('LCMAPS plug-in', file);
  return library;
}

/** What lcmaps-helper printed for a mapping. */
export interface LibraryMapping {
  readonly uid: number;
  readonly primaryGids: readonly number[];
  readonly secondaryGids: readonly number[];
  readonly poolindex?: string;
}

export function parseHelperOutput(stdout: string): LibraryMapping {
  const numbers = (name: string): number[] | undefined => {
    const line = stdout.split('\n').find((text) => text === name || text.startsWith(`${name} `));
    if (line === undefined) return undefined;
    const words = line
      .slice(name.length)
      .trim()
      .split(' ')
      .filter((word) => word !== '');
    if (!words.every((word) => /^[0-9]+$/.test(word))) return undefined;
    return words.map(Number);
  };
  const [uid] = numbers('uid') ?? [];
  const primaryGids = numbers('pgids');
  const secondaryGids = numbers('sgids');
  if (uid === undefined || primaryGids === undefined || primaryGids.length === 0 || secondaryGids === undefined) {
    throw systemError(
      'lcmaps.helper_output',
      `lcmaps-helper printed no complete mapping: ${JSON.stringify(stdout.slice(0, 200))}`,
    );
  }
  const poolindex = /^poolindex (.*)$/m.exec(stdout)?.[1];
  return { uid, primaryGids, secondaryGids, ...(poolindex === undefined ? {} : { poolindex }) };
}

/**
 * LCMAPS's reason from its log: the last error or warning, else the last notice that is not its
 * closing summary, without the `lcmaps[pid] LOG_X: time:` prefix.
 */
export function lcmapsReason(log: string): string {
  const lines = log.split('\n').filter((line) => line.trim() !== '');
  const message = (line: string): string => line.replace(/^lcmaps\[\d+\]\s+LOG_[A-Z]+:\s+\S+:\s*/, '').trim();
  const last = (levels: RegExp): string | undefined =>
    lines.filter((line) => levels.test(line) && !/LCMAPS CRED FINAL/.test(line)).at(-1);
  const chosen = last(/LOG_(ERR|WARNING):/) ?? last(/LOG_NOTICE:/);
  return chosen === undefined ? "LCMAPS gave no reason (see its log lines in glexec's log)" : message(chosen);
}

export interface LibraryRun {
  readonly mapping: AccountMapping;
  readonly poolindex?: string;
  /** LCMAPS's log lines, for glexec's log. */
  readonly log: string;
}

/** mapWithLibrary, with LCMAPS's log lines in glexec's log whatever the outcome. */
export function runLcmapsLibrary(
  config: Config,
  proxyPem: Buffer,
  certdir: string,
  dn: string,
  log: { debug(msg: string, fields?: Record<string, unknown>): void },
): LibraryRun {
  return mapWithLibrary(config, proxyPem, certdir, dn, (lines) => {
    if (lines.trim() !== '') log.debug('lcmaps log', { lines: lines.trim().split('\n') });
  });
}

/** Maps through the real LCMAPS. `certdir` is the CA directory glexec verified the proxy against. */
export function mapWithLibrary(
  config: Config,
  proxyPem: Buffer,
  certdir: string,
  dn: string,
  onLog: (lines: string) => void = () => undefined,
): LibraryRun {
  const db = readLcmapsDb(config.lcmaps_db_file);
  const library = checkLibraryTrust(config, db);
  const policies = parsePolicyNames(config.lcmaps_get_account_policy);
  const env: Record<string, string> = {
    PATH: '/usr/bin:/bin',
    LCMAPS_DB_FILE: config.lcmaps_db_file,
    LCMAPS_DEBUG_LEVEL: String(Math.max(MIN_DEBUG_LEVEL, config.lcmaps_debug_level)),
    X509_CERT_DIR: certdir,
    ...(config.vomsdir === '' ? {} : { X509_VOMS_DIR: config.vomsdir }),
  };
  const result = runLcmapsHelper([library, ...policies], proxyPem, env);
  if (result.errorCode !== undefined)
    throw systemError('lcmaps.helper_failed', `cannot run lcmaps-helper: ${result.errorCode}`);
  const log = result.stderr;
  onLog(log);
  if (result.status === 1)
    throw authorizationError('mapping.lcmaps_refused', `LCMAPS maps no account for ${dn}: ${lcmapsReason(log)}`);
  if (result.status !== 0)
    throw systemError(
      'lcmaps.helper_failed',
      `LCMAPS could not run (lcmaps-helper exit ${result.status ?? result.signal}): ${lcmapsReason(log.replace(/^lcmaps-helper: /gm, 'lcmaps[0] LOG_ERR: - : '))}`,
    );
  const mapped = parseHelperOutput(result.stdout);
  const gid = mapped.primaryGids[0] ?? -1;
  const account = findAccount(mapped.uid);
  return {
    mapping: {
      account: account?.name ?? String(mapped.uid),
      policy: policies.join(':'),
      via: 'library',
      uid: mapped.uid,
      gid,
      groups: [...new Set([gid, ...mapped.secondaryGids])].sort((a, b) => a - b),
    },
    ...(mapped.poolindex === undefined ? {} : { poolindex: mapped.poolindex }),
    log,
  };
}
