/**
 * `glexec --check`: reads glexec.conf as a real run would, then checks every part of the
 * installation that a run depends on, and reports one line per item: what is fine, and for each
 * problem what is wrong and how to fix it. It runs nothing and changes nothing.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseConfigText } from './config/load';
import type { Config } from './config/schema';
import { checkEpilogue, resolveEpilogueRunner } from './epilogue';
import { GlexecError } from './errors';
import { clampLogLevel } from './log/logger';
import { readLcmapsDb } from './lcmaps/db';
import { compileAccountPolicies, moduleKindOf, parsePolicyNames } from './lcmaps/modules';
import { checkLibraryTrust, pluginFiles } from './lcmaps/library';
import { lcmapsHelper } from './sys/lcmaps-helper';
import { readGridMap } from './mapping/gridmap';
import { openChecked, readAllAndClose } from './sys/files';
import { findAccount, findGroup } from './sys/identity';
import { cgroupMounts, isCgroup2Directory } from './sys/cgroup';
import { intoCgroupHelper, PRLIMIT, SETPRIV } from './sys/proc';
import { requireTrustedPath, type TrustPolicy } from './trust';
import { DEFAULT_CERTDIR, effectiveCertdir } from './lcmaps/certdir';

export interface Finding {
  readonly level: 'ok' | 'warning' | 'error';
  readonly item: string;
  readonly message: string;
  readonly fix?: string;
}

const ok = (item: string, message: string): Finding => ({ level: 'ok', item, message });
const warning = (item: string, message: string, fix?: string): Finding => ({ level: 'warning', item, message, ...(fix ? { fix } : {}) });
const error = (item: string, message: string, fix: string): Finding => ({ level: 'error', item, message, fix });

const rootOnly: TrustPolicy = { trustedUids: [], trustedGids: [], finalType: 'file' };
const rootOnlyDirectory: TrustPolicy = { ...rootOnly, finalType: 'directory' };

/** How to fix each kind of configuration problem, by its stable code. */
const configFixes: Record<string, string> = {
  'config.unknown_key': 'remove the key or correct its name (glexec.conf(5) lists every key)',
  'config.bad_value': 'give one of the values glexec.conf(5) lists for this key',
  'config.duplicate_key': 'keep only one of the two lines',
  'config.unsupported': 'remove the key (or set it to its default); this glexec cannot honour it',
  'config.outside_section': 'move the key below the [glexec] line',
  'config.no_section': 'add a line [glexec] above the keys',
};

const TRUST_FIX = 'make it and every directory above it owned by root and not writable by group or others (chown root:root, chmod go-w)';

function messageOf(caught: unknown): string {
  return caught instanceof Error ? caught.message : String(caught);
}

/** Runs `check` and turns a thrown GlexecError into an error finding. */
function attempt(item: string, fix: string, check: () => Finding | Finding[]): Finding[] {
  try {
    const result = check();
    return Array.isArray(result) ? result : [result];
  } catch (caught) {
    return [error(item, messageOf(caught), fix)];
  }
}

function checkConfig(path: string, trustedUids: readonly number[]): { findings: Finding[]; config: Config | undefined } {
  const findings = attempt('config', TRUST_FIX, () => {
    const st = requireTrustedPath('configuration file', path, { ...rootOnly, trustedUids }, lstatSync, 'config.untrusted');
    return ok('config', `${path}: owned by uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}; only root can change it or the directories above it`);
  });
  let text: string;
  try {
    text = readAllAndClose(openChecked(path, lstatSync(path)), 1024 * 1024).toString('utf8');
  } catch (caught) {
    findings.push(error('config', `cannot read ${path}: ${messageOf(caught)}`, `create it (etc/glexec.conf is a commented example) and install it root-owned, mode 0600`));
    return { findings, config: undefined };
  }
  const problems: GlexecError[] = [];
  const { config } = parseConfigText(text, path, (problem) => problems.push(problem));
  for (const problem of problems) findings.push(error('config', problem.message, configFixes[problem.code] ?? 'see glexec.conf(5)'));
  if (problems.length === 0) findings.push(ok('config', `${path}: every key is known and every value understood`));
  const { warning: clampWarning } = clampLogLevel(config.log_level);
  if (clampWarning) findings.push(warning('log_level', clampWarning, 'set log_level between 0 and 5'));
  return { findings, config };
}

function checkWhiteLists(config: Config): Finding[] {
  const entries = [...config.user_white_list, ...config.group_white_list];
  if (entries.length === 0) return [warning('white lists', 'user_white_list and group_white_list are empty: nobody may call glexec', 'list the pilot accounts in user_white_list')];
  const findings: Finding[] = [];
  if (entries.includes('*')) findings.push(warning('white lists', 'a white list is *: any account may call glexec', 'list the pilot accounts instead'));
  const plain = (entry: string) => entry !== '*' && !entry.startsWith('.') && !entry.endsWith('*');
  const unknownUsers = config.user_white_list.filter((name) => plain(name) && findAccount(name) === undefined);
  const unknownGroups = config.group_white_list.filter((name) => plain(name) && findGroup(name) === undefined);
  if (unknownUsers.length > 0) findings.push(warning('white lists', `user_white_list names accounts that do not exist: ${unknownUsers.join(', ')}`, 'correct the names'));
  if (unknownGroups.length > 0) findings.push(warning('white lists', `group_white_list names groups that do not exist: ${unknownGroups.join(', ')}`, 'correct the names'));
  if (findings.length === 0) findings.push(ok('white lists', `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}: ${entries.join(', ')}`));
  return findings;
}

/** The certdir a run would use; an lcmaps.db that cannot be read is reported by its own check. */
function certdirToCheck(config: Config): string {
  try {
    return effectiveCertdir(config);
  } catch {
    return config.certdir === '' ? DEFAULT_CERTDIR : config.certdir;
  }
}

function checkCertdir(certdir: string): Finding[] {
  return attempt('certdir', TRUST_FIX, () => {
    requireTrustedPath('certdir', certdir, rootOnlyDirectory, lstatSync, 'proxy.certdir');
    const anchors = readdirSync(certdir).filter((name) => /^[0-9a-f]{8}\.\d+$/.test(name));
    if (anchors.length === 0) return error('certdir', `${certdir} has no CA certificates (<hash>.0 files)`, 'install the IGTF CA bundle, or c_rehash the directory');
    const unreadable: string[] = [];
    const expired: string[] = [];
    for (const name of anchors) {
      try {
        const certificate = new X509Certificate(readFileSync(join(certdir, name)));
        if (new Date(certificate.validTo) < new Date()) expired.push(name);
      } catch {
        unreadable.push(name);
      }
    }
    const findings = [ok('certdir', `${certdir}: ${anchors.length} CA certificate file(s), only root can change them`)];
    if (unreadable.length > 0) findings.push(error('certdir', `cannot parse ${unreadable.join(', ')} in ${certdir}`, 'replace or remove these files'));
    if (expired.length > 0) findings.push(warning('certdir', `expired CA certificates in ${certdir}: ${expired.join(', ')}`, 'update the CA bundle'));
    return findings;
  });
}

function checkGridMap(path: string): Finding[] {
  return attempt('grid-mapfile', `${TRUST_FIX}; correct the line named`, () => {
    const entries = readGridMap(path);
    const findings = [ok('grid-mapfile', `${path}: ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, syntax fine, only root can change it`)];
    const problems = new Map<string, string[]>();
    const note = (why: string, account: string) => problems.set(why, [...(problems.get(why) ?? []), account]);
    for (const account of new Set(entries.map((entry) => entry.accounts[0] ?? ''))) {
      if (account.startsWith('.')) note('pool accounts, which this glexec does not support yet', account);
      else {
        const found = findAccount(account);
        if (found === undefined) note('accounts that do not exist', account);
        else if (found.uid === 0 || found.gid === 0) note('root or root-group accounts, which glexec always refuses', account);
      }
    }
    for (const [why, accounts] of problems) findings.push(warning('grid-mapfile', `${path} maps to ${why}: ${accounts.slice(0, 5).join(', ')}${accounts.length > 5 ? ', …' : ''}`, 'correct those entries'));
    return findings;
  });
}

function checkLcmaps(config: Config): Finding[] {
  if (config.lcmaps_backend === 'library') {
    return attempt('lcmaps', `${TRUST_FIX}; install liblcmaps0 and the plug-ins, or set lcmaps_libdir`, () => {
      const db = readLcmapsDb(config.lcmaps_db_file);
      parsePolicyNames(config.lcmaps_get_account_policy);
      const library = checkLibraryTrust(config, db);
      if (!existsSync(lcmapsHelper())) return error('lcmaps', `${lcmapsHelper()} is missing`, 'run npm run install-system again');
      const plugins = pluginFiles(db);
      return ok('lcmaps', `backend library: ${library}, ${db.path ?? 'the plug-in directory'} and ${plugins.length} plug-in(s) (${plugins.join(', ')}) can only be changed by root`);
    });
  }
  const missing = modulesWithoutBuiltin(config);
  if (missing.length > 0) {
    return [error('lcmaps', `backend builtin lacks the plug-in(s) ${missing.join(', ')} of ${config.lcmaps_db_file}`, 'set lcmaps_backend = library, so that the real LCMAPS runs them')];
  }
  return attempt('lcmaps.db', `${TRUST_FIX}; correct the item named (glexec.conf(5) lists the modules and options glexec knows)`, () => {
    const db = readLcmapsDb(config.lcmaps_db_file);
    const compiled = compileAccountPolicies(db, config.lcmaps_get_account_policy);
    const policies = compiled.policies.map((policy) => policy.name).join(', ');
    return ok('lcmaps.db', `${config.lcmaps_db_file}: backend builtin; syntax fine, only root can change it; policies ${policies} use only modules and options glexec knows`);
  });
}

/** The modules of the lcmaps.db policies that glexec's built-in backend has no equivalent of. */
function modulesWithoutBuiltin(config: Config): string[] {
  try {
    const db = readLcmapsDb(config.lcmaps_db_file);
    const used = new Set(db.policies.flatMap((policy) => policy.rules.flatMap((rule) => [rule.from, rule.onSuccess, rule.onFailure])));
    return [...db.modules.values()].filter((module) => used.has(module.name) && moduleKindOf(module.file) === undefined).map((module) => `${module.name} (${module.file})`);
  } catch {
    // An unreadable lcmaps.db is reported by the attempt that follows.
    return [];
  }
}

function checkEpilogueSetting(config: Config): Finding[] {
  return attempt('epilogue', `${TRUST_FIX}; the file must be executable by its runner`, () => {
    const runner = resolveEpilogueRunner(config);
    if (runner === undefined) return ok('epilogue', 'none set');
    checkEpilogue(runner);
    return ok('epilogue', `${runner.path}: trusted, runs as ${runner.user}:${runner.group}, timeout ${config.epilogue_timeout} s, then SIGKILL after ${config.kill_grace} s`);
  });
}

function checkLog(config: Config): Finding[] {
  if (config.log_destination === 'syslog') {
    const listening = existsSync('/dev/log') && lstatSync('/dev/log').isSocket();
    return [listening ? ok('log', `syslog, facility ${config.syslog_facility}`) : warning('log', 'log_destination = syslog, but nothing listens on /dev/log: log messages will be lost', 'start the syslog daemon, or set log_destination = file')];
  }
  return attempt('log', TRUST_FIX, () => {
    const path = config.log_file;
    if (findGroup(config.log_file_group) === undefined) {
      return error('log', `log_file_group '${config.log_file_group}' does not exist`, 'create the group or correct the name');
    }
    if (!existsSync(dirname(path))) {
      requireTrustedPath('log directory parent', dirname(dirname(path)), rootOnlyDirectory, lstatSync, 'log.untrusted');
      return ok('log', `${path}: its directory will be created on the first run`);
    }
    requireTrustedPath('log directory', dirname(path), rootOnlyDirectory, lstatSync, 'log.untrusted');
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return ok('log', `${path}: will be created on the first run`);
    }
    if (!st.isFile() || st.uid !== 0 || st.nlink !== 1 || st.mode & 0o022) {
      return error('log', `log file ${path} must be a regular root-owned file with one link, not writable by group or others`, 'remove it (glexec recreates it) or chown root, chmod 0600');
    }
    return ok('log', `${path}: JSON lines, only root can change it or its directory`);
  });
}

/** Where payload cgroups would go, and whether a run would fall back to the process group. */
function checkContainment(config: Config): Finding[] {
  if (config.containment !== 'cgroup') return [ok('containment', `containment = ${config.containment}`)];
  const mounts = cgroupMounts();
  const base = config.cgroup_base !== '' ? config.cgroup_base : mounts.v2 !== undefined ? join(mounts.v2, 'glexec') : undefined;
  const fallbackFix = 'mount cgroup v2 (Linux 5.14 or later), or set cgroup_base to a delegated cgroup v2 directory';
  const problem = (why: string): Finding =>
    config.max_processes > 0 ? error('containment', `max_processes cannot be enforced: ${why}`, fallbackFix) : warning('containment', `payloads will be contained by process group only: ${why}`, fallbackFix);
  if (base === undefined || mounts.v2 === undefined) return [problem('no cgroup v2 is mounted')];
  if (!isCgroup2Directory(base)) return [problem(`${base} is not a cgroup v2 directory`)];
  return [ok('containment', `payload cgroups under ${base}${config.max_processes > 0 ? `, pids.max ${config.max_processes}` : ''}`)];
}

function checkTools(config: Config): Finding[] {
  const findings = [SETPRIV, PRLIMIT].map((tool) => (existsSync(tool) ? ok('tools', `${tool} present`) : error('tools', `${tool} is missing`, 'install util-linux')));
  if (config.containment === 'cgroup' && !existsSync(intoCgroupHelper())) {
    findings.push(error('tools', `${intoCgroupHelper()} is missing`, 'run npm run install-system again'));
  }
  return findings;
}

export function checkInstallation(configPath: string, trustedUids: readonly number[]): Finding[] {
  const { findings, config } = checkConfig(configPath, trustedUids);
  if (config === undefined) return findings;
  return [
    ...findings,
    ...checkWhiteLists(config),
    ...checkCertdir(certdirToCheck(config)),
    ...(config.lcmaps_db_file === '' ? checkGridMap(config.gridmapfile) : checkLcmaps(config)),
    ...checkEpilogueSetting(config),
    ...checkLog(config),
    ...checkContainment(config),
    ...checkTools(config),
  ];
}

export function formatFinding(finding: Finding): string {
  const fix = finding.fix ? ` (fix: ${finding.fix})` : '';
  return `${finding.level.padEnd(7)} ${finding.item}: ${finding.message}${fix}`;
}
