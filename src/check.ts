/**
 * `glexec --check`: reads glexec.conf as a real run would, then checks every part of the
 * installation that a run depends on, and reports one line per item: what is fine, and for each
 * problem what is wrong and how to fix it. It runs nothing and changes nothing.
 */
import { X509Certificate } from 'node:crypto';
import { dirname, join } from 'node:path';
import { parseConfigText } from './config/load';
import type { Config } from './config/schema';
import { checkEpilogue, resolveEpilogueRunner } from './epilogue';
import { GlexecError, type Problem } from './errors';
import { clampLogLevel } from './log/logger';
import { readLcmapsDb } from './lcmaps/db';
import { compileAccountPolicies, moduleKindOf, parsePolicyNames } from './lcmaps/modules';
import { checkLibraryTrust, pluginFiles } from './lcmaps/library';
import { lcmapsHelper } from './sys/lcmaps-helper';
import { mapDn, readGridMap, unquotedDnMistake } from './mapping/gridmap';
import { childrenOf, contextTag, encodingOf, readRoot, Tag } from './proxy/der';
import { subjectHash } from './proxy/dn';
import { readAnchorFile } from './proxy/verify';
import { listDirectory, lstatPath, pathExists, readUnfollowedFile, realPath } from './sys/files';
import { findAccount, findGroup } from './sys/identity';
import { cgroupMounts, isCgroup2Directory } from './sys/cgroup';
import { flockAddonPath } from './sys/lock';
import { startPayloadHelper } from './sys/proc';
import { SYSLOG_UNHEARD, syslogListening } from './sys/syslog';
import { requireTrustedPath, type TrustPolicy } from './trust';
import { DEFAULT_CERTDIR, effectiveCertdir } from './lcmaps/certdir';
import { lcmapsDbCertdir } from './lcmaps/map-target';
import { summarizeVomsdir, type VomsdirSummary } from './voms/trust';

export interface Finding {
  readonly level: 'ok' | 'warning' | 'error';
  readonly item: string;
  readonly message: string;
  readonly fix?: string;
}

const ok = (item: string, message: string): Finding => ({ level: 'ok', item, message });
const warning = (item: string, message: string, fix?: string): Finding => ({
  level: 'warning',
  item,
  message,
  ...(fix ? { fix } : {}),
});
const error = (item: string, message: string, fix: string): Finding => ({ level: 'error', item, message, fix });

const rootOnly: TrustPolicy = { trustedUids: [], trustedGids: [], finalType: 'file' };
const rootOnlyDirectory: TrustPolicy = { ...rootOnly, finalType: 'directory' };

/** How to fix the problems that have one fix whatever the file, by their stable code. */
const fixByCode: Record<string, string> = {
  'config.unknown_key': 'remove the key or correct its name (glexec.conf(5) lists every key)',
  'config.duplicate_key': 'keep only one of the two lines',
  'config.unsupported': 'remove the key (or set it to its default); this glexec cannot honour it',
  'config.outside_section': 'move the key below the [glexec] line',
  'config.no_section': 'add a line [glexec] above the keys',
  'gridmap.syntax': 'correct that line: expected "DN" account[,account…], the DN in double quotes',
  'lcmaps.syntax':
    'correct that line: lcmaps.db holds name = "module options" definitions, then policy: lines with a -> b rules',
  'lcmaps.undefined_module': 'define the module above the policy, or correct its name in the rule',
  'lcmaps.unknown_option': "correct or remove the option (the README's LCMAPS section lists the options glexec knows)",
  'lcmaps.unsupported_option':
    "correct or remove the option (the README's LCMAPS section lists the options glexec knows)",
  'lcmaps.bad_option': "correct the option's value",
  'lcmaps.unknown_policy': 'correct lcmaps_get_account_policy: it must name policies of lcmaps.db',
  'lcmaps.no_policy': 'set lcmaps_get_account_policy to the policies of lcmaps.db to try',
  'lcmaps.policy_loop': 'correct the rules so that no policy leads back to itself',
  'epilogue.bad_user': 'create the account, or correct epilogue_user',
  'epilogue.bad_group': 'create the group, or correct epilogue_group',
  'epilogue.needs_glexec_switch': 'set user_identity_switch_by = glexec, or remove epilogue_user and epilogue_group',
  'mapping.pool_unsupported':
    "set lcmaps_db_file to an lcmaps.db whose policy uses lcmaps_poolaccount.mod (see the README's LCMAPS section), or map those DNs to plain accounts",
};

/** The glexec.conf key that names the file being checked, and its value. */
interface Setting {
  readonly key: string;
  readonly value: string;
}

function canonicalPath(path: string): string | undefined {
  try {
    return realPath(path);
  } catch {
    return undefined;
  }
}

/** The fix for one kind of problem: only what would remove the problem shown. */
function fixForProblem(problem: Problem, setting: Setting | undefined): string {
  switch (problem.kind) {
    case 'missing':
      return setting ? `create ${problem.path}, or set ${setting.key} to the right path` : `create ${problem.path}`;
    case 'symlink': {
      const canonical = setting ? canonicalPath(setting.value) : undefined;
      const example = 'e.g. /usr/bin/… rather than /bin/… on merged-/usr systems';
      return setting && canonical
        ? `use the canonical path: set ${setting.key} = ${canonical} (${example})`
        : `use the canonical path, ${example}`;
    }
    case 'writable':
      return `chmod go-w ${problem.path}`;
    case 'owner':
      return `chown root:root ${problem.path}`;
    case 'not-canonical':
      return `write ${setting?.key ?? 'the path'} as an absolute path without ., .., // or a trailing /`;
    case 'wrong-type':
      return `${problem.path} must be a ${problem.expected === 'file' ? 'regular file' : 'directory'}: replace it${setting ? `, or correct ${setting.key}` : ''}`;
    case 'syntax':
      return `correct ${problem.file}${problem.line === undefined ? '' : ` line ${problem.line}`}: ${problem.expected}`;
  }
}

function fixFor(caught: unknown, setting: Setting | undefined): string {
  if (caught instanceof GlexecError) {
    if (caught.problem) return fixForProblem(caught.problem, setting);
    const byCode = fixByCode[caught.code];
    if (byCode) return byCode;
  }
  return "see glexec.conf(5) and the README's Troubleshooting section";
}

function messageOf(caught: unknown): string {
  return caught instanceof Error ? caught.message : String(caught);
}

/** Runs `check` and turns a thrown error into an error finding with the fix for its kind. */
function attempt(item: string, setting: Setting | undefined, check: () => Finding | Finding[]): Finding[] {
  try {
    const result = check();
    return Array.isArray(result) ? result : [result];
  } catch (caught) {
    return [error(item, messageOf(caught), fixFor(caught, setting))];
  }
}

function checkConfig(
  path: string,
  trustedUids: readonly number[],
): { findings: Finding[]; config: Config | undefined } {
  let missing = false;
  const findings = attempt('config', undefined, () => {
    try {
      const st = requireTrustedPath(
        'configuration file',
        path,
        { ...rootOnly, trustedUids },
        lstatPath,
        'config.untrusted',
      );
      return ok(
        'config',
        `${path}: owned by uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}; only root can change it or the directories above it`,
      );
    } catch (caught) {
      const problem = caught instanceof GlexecError ? caught.problem : undefined;
      missing = problem?.kind === 'missing';
      // Its path is compiled into glexec, so "set a key" is no fix here.
      if (problem?.kind === 'missing' && problem.path === path) {
        return error(
          'config',
          messageOf(caught),
          `install etc/glexec.conf (a commented example) as ${path}, root-owned, mode 0600`,
        );
      }
      const canonical = problem?.kind === 'symlink' ? canonicalPath(path) : undefined;
      if (canonical !== undefined)
        return error(
          'config',
          messageOf(caught),
          `run install-system again with --config=${canonical} (the canonical path)`,
        );
      throw caught;
    }
  });
  if (missing) return { findings, config: undefined };
  let text: string;
  try {
    text = readUnfollowedFile(path, 1024 * 1024).toString('utf8');
  } catch (caught) {
    findings.push(
      error('config', `cannot read ${path}: ${messageOf(caught)}`, `make ${path} a regular file root can read`),
    );
    return { findings, config: undefined };
  }
  const problems: GlexecError[] = [];
  const { config, notes } = parseConfigText(text, path, (problem) => problems.push(problem));
  for (const problem of problems) findings.push(error('config', problem.message, fixFor(problem, undefined)));
  if (problems.length === 0) findings.push(ok('config', `${path}: every key is known and every value understood`));
  for (const note of notes.filter((candidate) => candidate.level === 'warn'))
    findings.push(warning('config', note.msg, 'move the key below the [glexec] line'));
  const { warning: clampWarning } = clampLogLevel(config.log_level);
  if (clampWarning) findings.push(warning('log_level', clampWarning, 'set log_level between 0 and 5'));
  return { findings, config };
}

function findWhiteListProblems(config: Config): Finding[] {
  const entries = [...config.user_white_list, ...config.group_white_list];
  if (entries.length === 0)
    return [
      warning(
        'white lists',
        'user_white_list and group_white_list are empty: nobody may call glexec',
        'list the pilot accounts in user_white_list',
      ),
    ];
  const findings: Finding[] = [];
  if (entries.includes('*'))
    findings.push(
      warning('white lists', 'a white list is *: any account may call glexec', 'list the pilot accounts instead'),
    );
  const plain = (entry: string) => entry !== '*' && !entry.startsWith('.') && !entry.endsWith('*');
  const unknownUsers = config.user_white_list.filter((name) => plain(name) && findAccount(name) === undefined);
  const unknownGroups = config.group_white_list.filter((name) => plain(name) && findGroup(name) === undefined);
  if (unknownUsers.length > 0)
    findings.push(
      warning(
        'white lists',
        `user_white_list names accounts that do not exist: ${unknownUsers.join(', ')}`,
        'create them, or correct user_white_list',
      ),
    );
  if (unknownGroups.length > 0)
    findings.push(
      warning(
        'white lists',
        `group_white_list names groups that do not exist: ${unknownGroups.join(', ')}`,
        'create them, or correct group_white_list',
      ),
    );
  if (findings.length === 0)
    findings.push(
      ok('white lists', `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${entries.join(', ')}`),
    );
  return findings;
}

/** A CA certificate file in the certdir: its subject hash, which names the file proxies look for. */
interface CaFile {
  readonly name: string;
  readonly hash: string;
  readonly expired: boolean;
  readonly isCa: boolean;
}

const HASH_NAME = /^[0-9a-f]{8}\.\d+$/;

/** The certificate in `path` (the first, for a bundle), or undefined when there is none. */
function readCaFile(path: string, name: string): CaFile | undefined {
  const text = readAnchorFile(path);
  if (text === undefined) return undefined;
  // The run's own reader (links followed to a file only root can change), so --check sees what a run sees.
  const certificate = new X509Certificate(Buffer.from(text, 'latin1'));
  const [tbs] = childrenOf(readRoot(certificate.raw, Tag.sequence));
  if (tbs === undefined) return undefined;
  const fields = childrenOf(tbs);
  // TBSCertificate: [0] version (optional), serial, signature, issuer, validity, subject, …
  const subject = fields[fields[0]?.tag === contextTag(0, true) ? 5 : 4];
  if (subject === undefined) return undefined;
  return {
    name,
    hash: subjectHash(encodingOf(subject)),
    expired: new Date(certificate.validTo) < new Date(),
    isCa: certificate.ca,
  };
}

/** The certdir a run would use; an lcmaps.db that cannot be read is reported by its own check. */
function certdirToCheck(config: Config): string {
  try {
    return effectiveCertdir(config, lcmapsDbCertdir);
  } catch {
    return config.certdir === '' ? DEFAULT_CERTDIR : config.certdir;
  }
}

function checkCertdir(certdir: string): Finding[] {
  return attempt('certdir', { key: 'certdir', value: certdir }, () => {
    requireTrustedPath('certdir', certdir, rootOnlyDirectory, lstatPath, 'proxy.certdir');
    const names = listDirectory(certdir);
    const anchors = names.filter((name) => HASH_NAME.test(name));
    const unreadable: string[] = [];
    const misnamed: string[] = [];
    const expired: string[] = [];
    for (const name of anchors) {
      try {
        const file = readCaFile(join(certdir, name), name);
        if (file === undefined) unreadable.push(name);
        else {
          if (file.expired) expired.push(name);
          if (!name.startsWith(`${file.hash}.`)) misnamed.push(`${name} (its subject hash is ${file.hash})`);
        }
      } catch {
        unreadable.push(name);
      }
    }
    // CA certificates copied in as *.pem or *.crt without the <hash>.N name proxies are looked up by.
    const hashes = new Set(anchors.map((name) => name.slice(0, 8)));
    const unhashed: string[] = [];
    for (const name of names.filter((candidate) => /\.(pem|crt)$/.test(candidate))) {
      try {
        const file = readCaFile(join(certdir, name), name);
        if (file?.isCa && !hashes.has(file.hash)) unhashed.push(`${name} (${file.hash}.0)`);
      } catch {
        // Not a certificate (a key, a CRL): not the certdir's business here.
      }
    }
    const rehash = `run openssl rehash ${certdir} (or c_rehash ${certdir})`;
    if (anchors.length === 0 && unhashed.length === 0) {
      return error(
        'certdir',
        `${certdir} has no CA certificates (<hash>.0 files)`,
        `install the IGTF CA bundle (or your CA's certificate) into ${certdir}, then ${rehash}`,
      );
    }
    const findings: Finding[] = [];
    if (anchors.length > 0)
      findings.push(ok('certdir', `${certdir}: ${anchors.length} CA certificate file(s), only root can change them`));
    if (unhashed.length > 0)
      findings.push(
        error(
          'certdir',
          `CA certificates in ${certdir} have no <hash>.0 file, so proxies they issued are refused: ${unhashed.join(', ')}`,
          rehash,
        ),
      );
    if (misnamed.length > 0)
      findings.push(
        error(
          'certdir',
          `CA files in ${certdir} are not named by their subject hash, so proxies are not checked against them: ${misnamed.join(', ')}`,
          rehash,
        ),
      );
    if (unreadable.length > 0)
      findings.push(
        error('certdir', `cannot parse ${unreadable.join(', ')} in ${certdir}`, 'replace or remove these files'),
      );
    if (expired.length > 0)
      findings.push(
        warning('certdir', `expired CA certificates in ${certdir}: ${expired.join(', ')}`, 'update the CA bundle'),
      );
    return findings;
  });
}

function checkGridMap(path: string): Finding[] {
  return attempt('grid-mapfile', { key: 'gridmapfile', value: path }, () => {
    const entries = readGridMap(path);
    const findings = [
      ok(
        'grid-mapfile',
        `${path}: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, syntax fine, only root can change it`,
      ),
    ];
    // A pool entry fails every run that maps through it: the run's own refusal, as an error.
    for (const entry of entries) {
      const mistake = unquotedDnMistake(entry, path);
      if (mistake !== undefined)
        findings.push(error('grid-mapfile', mistake, `write that line as "DN" account, the DN in double quotes`));
    }
    const poolEntry = entries.find((entry) => (entry.accounts[0] ?? '').startsWith('.'));
    if (poolEntry !== undefined) {
      try {
        mapDn(entries, poolEntry.dn, path);
      } catch (caught) {
        findings.push(error('grid-mapfile', messageOf(caught), fixFor(caught, undefined)));
      }
    }
    const problems = new Map<string, string[]>();
    const note = (why: string, account: string) => problems.set(why, [...(problems.get(why) ?? []), account]);
    for (const account of new Set(entries.map((entry) => entry.accounts[0] ?? ''))) {
      if (account.startsWith('.') || /[ \t]/.test(account)) continue;
      const found = findAccount(account);
      if (found === undefined) note('accounts that do not exist', account);
      else if (found.uid === 0 || found.gid === 0)
        note('root or root-group accounts, which glexec always refuses', account);
    }
    const fixes: Record<string, string> = {
      'accounts that do not exist': `create them, or correct their lines in ${path}`,
      'root or root-group accounts, which glexec always refuses': `map those DNs to unprivileged accounts in ${path}`,
    };
    for (const [why, accounts] of problems)
      findings.push(
        warning(
          'grid-mapfile',
          `${path} maps to ${why}: ${accounts.slice(0, 5).join(', ')}${accounts.length > 5 ? ', …' : ''}`,
          fixes[why],
        ),
      );
    return findings;
  });
}

function checkLcmaps(config: Config): Finding[] {
  if (config.lcmaps_backend === 'library') {
    return attempt('lcmaps', { key: 'lcmaps_libdir', value: config.lcmaps_libdir }, () => {
      const db = readLcmapsDb(config.lcmaps_db_file);
      parsePolicyNames(config.lcmaps_get_account_policy);
      const library = checkLibraryTrust(config, db);
      if (!pathExists(lcmapsHelper()))
        return error('lcmaps', `${lcmapsHelper()} is missing`, 'run npm run install-system again');
      const plugins = pluginFiles(db);
      return ok(
        'lcmaps',
        `backend library: ${library}, ${db.path ?? 'the plug-in directory'} and ${plugins.length} plug-in(s) (${plugins.join(', ')}) can only be changed by root`,
      );
    });
  }
  const missing = modulesWithoutBuiltin(config);
  if (missing.length > 0) {
    return [
      error(
        'lcmaps',
        `backend builtin lacks the plug-in(s) ${missing.join(', ')} of ${config.lcmaps_db_file}`,
        'set lcmaps_backend = library, so that the real LCMAPS runs them',
      ),
    ];
  }
  return attempt('lcmaps.db', { key: 'lcmaps_db_file', value: config.lcmaps_db_file }, () => {
    const db = readLcmapsDb(config.lcmaps_db_file);
    const compiled = compileAccountPolicies(db, config.lcmaps_get_account_policy);
    const policies = compiled.policies.map((policy) => policy.name).join(', ');
    return ok(
      'lcmaps.db',
      `${config.lcmaps_db_file}: backend builtin; syntax fine, only root can change it; policies ${policies} use only modules and options glexec knows`,
    );
  });
}

/** The modules of the lcmaps.db policies that glexec's built-in backend has no equivalent of. */
function modulesWithoutBuiltin(config: Config): string[] {
  try {
    const db = readLcmapsDb(config.lcmaps_db_file);
    const used = new Set(
      db.policies.flatMap((policy) => policy.rules.flatMap((rule) => [rule.from, rule.onSuccess, rule.onFailure])),
    );
    return [...db.modules.values()]
      .filter((module) => used.has(module.name) && moduleKindOf(module.file) === undefined)
      .map((module) => `${module.name} (${module.file})`);
  } catch {
    // An unreadable lcmaps.db is reported by the attempt that follows.
    return [];
  }
}

/** The vomsdir, when the built-in lcmaps.db policies use VOMS modules (src/voms/trust.ts reads it). */
function checkVomsdir(config: Config): Finding[] {
  if (config.lcmaps_db_file === '' || config.lcmaps_backend !== 'builtin' || !usesVomsModules(config)) return [];
  return attempt('vomsdir', { key: 'vomsdir', value: config.vomsdir }, () => {
    let summary: VomsdirSummary;
    try {
      summary = summarizeVomsdir(config.vomsdir);
    } catch (caught) {
      if ((caught as NodeJS.ErrnoException).code !== 'ENOENT') throw caught;
      return warning(
        'vomsdir',
        `${config.vomsdir} does not exist: every VOMS AC is dropped, so only the DN rules map`,
        'create it with a <vo>/<host>.lsc file per VOMS server (or set vomsdir)',
      );
    }
    const findings = [
      ok(
        'vomsdir',
        `${config.vomsdir}: ${summary.lscFiles.length} .lsc file(s) (${summary.lscFiles.join(', ') || 'none'}) and ${summary.certificateFiles} server certificate file(s); only root can change them`,
      ),
    ];
    if (summary.emptyLscFiles.length > 0)
      findings.push(
        warning(
          'vomsdir',
          `.lsc files without a DN chain (subject and issuer lines) vouch for no server: ${summary.emptyLscFiles.join(', ')}`,
          'write the server certificate subject DN, then its issuer DN, one per line',
        ),
      );
    return findings;
  });
}

function usesVomsModules(config: Config): boolean {
  try {
    const compiled = compileAccountPolicies(readLcmapsDb(config.lcmaps_db_file), config.lcmaps_get_account_policy);
    return [...compiled.modules.values()].some(
      (module) => module.config.kind.startsWith('voms') || module.config.kind === 'ban_fqan',
    );
  } catch {
    // The lcmaps.db check reports why it cannot be read.
    return false;
  }
}

function checkEpilogueSetting(config: Config): Finding[] {
  return attempt('epilogue', { key: 'epilogue', value: config.epilogue }, () => {
    const runner = resolveEpilogueRunner(config);
    if (runner === undefined) return ok('epilogue', 'none set');
    let interpreters: readonly string[];
    try {
      ({ interpreters } = checkEpilogue(runner));
    } catch (caught) {
      if (caught instanceof GlexecError && caught.code === 'epilogue.not_executable')
        return error('epilogue', caught.message, `chmod a+x ${runner.path}`);
      throw caught;
    }
    const runBy = interpreters.length === 0 ? '' : `, run by ${interpreters.join(' → ')} (trusted too)`;
    const findings = [
      ok(
        'epilogue',
        `${runner.path}: trusted${runBy}, runs as ${runner.user}:${runner.group}, timeout ${config.epilogue_timeout} s, then SIGKILL after ${config.kill_grace} s`,
      ),
    ];
    if (runner.uid !== 0 && config.epilogue_group === '') {
      findings.push(
        warning(
          'epilogue',
          `epilogue_user ${runner.user} runs the epilogue with gid 0 (gLExec's default when epilogue_group is unset): ${runner.user} may own the epilogue, and through it reads and writes what group root may`,
          `set epilogue_group to a group of ${runner.user}'s own`,
        ),
      );
    }
    return findings;
  });
}

async function checkLog(config: Config): Promise<Finding[]> {
  if (config.log_destination === 'syslog') {
    const facility = `LOG_${config.syslog_facility.toUpperCase()}`;
    return [
      (await syslogListening())
        ? ok('log', `syslog, facility ${facility}`)
        : warning('log', SYSLOG_UNHEARD, 'start the syslog daemon, or set log_destination = file'),
    ];
  }
  const setting = { key: 'log_file', value: config.log_file };
  return attempt('log', setting, () => {
    const path = config.log_file;
    if (findGroup(config.log_file_group) === undefined) {
      return error(
        'log',
        `log_file_group '${config.log_file_group}' does not exist`,
        'create the group, or correct log_file_group',
      );
    }
    if (!pathExists(dirname(path))) {
      requireTrustedPath('log directory parent', dirname(dirname(path)), rootOnlyDirectory, lstatPath, 'log.untrusted');
      return ok('log', `${path}: its directory will be created on the first run`);
    }
    requireTrustedPath('log directory', dirname(path), rootOnlyDirectory, lstatPath, 'log.untrusted');
    let st;
    try {
      st = lstatPath(path);
    } catch {
      return ok('log', `${path}: will be created on the first run`);
    }
    if (!st.isFile() || st.uid !== 0 || st.nlink !== 1 || st.mode & 0o022) {
      return error(
        'log',
        `log file ${path} must be a regular root-owned file with one link, not writable by group or others`,
        `remove it (glexec recreates it), or make it a root-owned file of mode 0600 with one link`,
      );
    }
    return ok('log', `${path}: JSON lines, only root can change it or its directory`);
  });
}

/** Where payload cgroups would go, and whether a run would fall back to the process group. */
function checkContainment(config: Config): Finding[] {
  if (config.containment !== 'cgroup') return [ok('containment', `containment = ${config.containment}`)];
  const mounts = cgroupMounts();
  const base =
    config.cgroup_base !== '' ? config.cgroup_base : mounts.v2 !== undefined ? join(mounts.v2, 'glexec') : undefined;
  const fallbackFix = 'mount cgroup v2 (Linux 5.14 or later), or set cgroup_base to a delegated cgroup v2 directory';
  const problem = (why: string): Finding =>
    config.max_processes > 0
      ? error('containment', `max_processes cannot be enforced: ${why}`, fallbackFix)
      : warning('containment', `payloads will be contained by process group only: ${why}`, fallbackFix);
  if (base === undefined || mounts.v2 === undefined) return [problem('no cgroup v2 is mounted')];
  if (!isCgroup2Directory(base)) return [problem(`${base} is not a cgroup v2 directory`)];
  return [
    ok(
      'containment',
      `payload cgroups under ${base}${config.max_processes > 0 ? `, pids.max ${config.max_processes}` : ''}`,
    ),
  ];
}

function checkTools(): Finding[] {
  // start-payload starts phase 2's epilogue (the monitor has its code linked in); flock.node takes the proxies' locks.
  const findings: Finding[] = [];
  for (const installed of [startPayloadHelper(), flockAddonPath()])
    findings.push(
      pathExists(installed)
        ? ok('tools', `${installed} present`)
        : error('tools', `${installed} is missing`, 'run npm run install-system again'),
    );
  return findings;
}

export async function checkInstallation(configPath: string, trustedUids: readonly number[]): Promise<Finding[]> {
  const { findings, config } = checkConfig(configPath, trustedUids);
  if (config === undefined) return findings;
  return [
    ...findings,
    ...findWhiteListProblems(config),
    ...checkCertdir(certdirToCheck(config)),
    ...(config.lcmaps_db_file === '' ? checkGridMap(config.gridmapfile) : checkLcmaps(config)),
    ...checkVomsdir(config),
    ...checkEpilogueSetting(config),
    ...(await checkLog(config)),
    ...checkContainment(config),
    ...checkTools(),
  ];
}

export function formatFinding(finding: Finding): string {
  const fix = finding.fix ? ` (fix: ${finding.fix})` : '';
  return `${finding.level.padEnd(7)} ${finding.item}: ${finding.message}${fix}`;
}
