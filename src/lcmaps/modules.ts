/**
 * glexec's built-in equivalents of the LCMAPS plug-ins a gLExec policy names, and the policy
 * runner. A module is recognised by its plug-in file's name (`lcmaps_poolaccount.mod`,
 * `/usr/lib64/lcmaps/liblcmaps_poolaccount.so`, OSG's copy `lcmaps_verify_proxy2.mod` …); nothing
 * is loaded. Each module knows its options exactly as the LCMAPS man pages list them; anything
 * else is a 202, so a site never runs with a setting glexec silently ignores.
 *
 * The VOMS modules map by the trusted FQANs of the proxy (src/voms/), as lcmaps-plugins-voms
 * 1.7.1 does (test/e2e/voms-oracle.test.ts).
 *
 * Running (as LCMAPS does, checked against Debian's LCMAPS 1.6.6 by test/e2e/lcmaps-oracle.test.ts): the policies named by lcmaps_get_account_policy run in the order of
 * the file; the first that maps an account wins. A policy starts at the left side of its first
 * rule; a module's success follows `->`, its failure `|` (no `|`: the policy fails); a module
 * that starts no rule ends the policy with its own result.
 */
import { GlexecError, authorizationError, systemError } from '../errors';
import { findGridMapEntry, type GridMapEntry, gridMapDnMatches, readGridMap } from '../mapping/gridmap';
import { type LeaseOptions, leasePoolAccount } from '../mapping/pool';
import { findAccount, findGroup, groupsOf } from '../sys/identity';
import type { LcmapsDb, LcmapsModule, LcmapsRule } from './db';

export type ModuleKind =
  | 'verify_proxy'
  | 'localaccount'
  | 'poolaccount'
  | 'posix_enf'
  | 'ban_dn'
  | 'dummy_good'
  | 'dummy_bad'
  | 'voms'
  | 'voms_localgroup'
  | 'voms_poolgroup'
  | 'voms_localaccount'
  | 'voms_poolaccount'
  | 'ban_fqan';

const KINDS: readonly ModuleKind[] = [
  'verify_proxy',
  'localaccount',
  'poolaccount',
  'posix_enf',
  'ban_dn',
  'dummy_good',
  'dummy_bad',
  'voms',
  'voms_localgroup',
  'voms_poolgroup',
  'voms_localaccount',
  'voms_poolaccount',
  'ban_fqan',
];

/** Where LCMAPS takes relative grid-mapfile and gridmapdir paths from in a setuid program. */
const GRID_SECURITY = '/etc/grid-security';
const DEFAULT_GRIDMAPFILE = `${GRID_SECURITY}/grid-mapfile`;
const DEFAULT_BANMAPFILE = `${GRID_SECURITY}/ban-mapfile`;
const DEFAULT_GROUPMAPFILE = `${GRID_SECURITY}/groupmapfile`;

/**
 * The module a plug-in file implements: `[lib]lcmaps_<name>[digits].mod|.so[.N…]`, any directory.
 * The digits allow the numbered copies sites make to load one plug-in twice with other options.
 */
export function moduleKindOf(file: string): ModuleKind | undefined {
  const base = file.slice(file.lastIndexOf('/') + 1);
  const match = /^(?:lib)?lcmaps_([a-z_]+?)[0-9]*\.(?:mod|so(?:\.[0-9]+)*)$/.exec(base);
  const name = match?.[1];
  return KINDS.find((kind) => kind === name);
}

/** The proxy facts verify_proxy judges; glexec's VerifiedProxy provides the first two. */
export interface ProxyFacts {
  /** Some proxy in the chain is limited. */
  readonly limited: boolean;
  /** Earliest notAfter of the chain. */
  readonly notAfter: Date;
  /** The last delegation (leaf) is limited; when absent, `limited` stands for it. */
  readonly leafLimited?: boolean;
  /**
   * Validity of each proxy certificate: the first delegation after the end-entity certificate
   * (LCMAPS level 0) first, the leaf last. Needed only by --max-proxy-level-ttl, which fails
   * without it.
   */
  readonly proxyValidity?: readonly { readonly notBefore: Date; readonly notAfter: Date }[];
  /** Whether the private key came with the chain; absent means it did. */
  readonly hasPrivateKey?: boolean;
}

export interface MappingInput {
  readonly identityDn: string;
  readonly proxy: ProxyFacts;
  readonly now: Date;
  /** The CA directory glexec verified the chain against; a verify_proxy -certdir must match it. */
  readonly verifiedAgainstCertdir?: string;
  /** The trusted VOMS attributes (src/voms/): FQANs of every trusted AC in order, and their validity. */
  readonly voms?: {
    readonly fqans: readonly string[];
    readonly validity: readonly { readonly notBefore: Date; readonly notAfter: Date }[];
  };
}

/** An account with the groups LCMAPS gives it: the primary gid and every group it is a member of. */
export interface ResolvedAccount {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
}

/** The file system and account database side of the modules; tests replace it. */
export interface MappingEnvironment {
  readGridMap(path: string, options?: { accountRequired?: boolean }): readonly GridMapEntry[];
  leasePoolAccount(gridmapdir: string, poolPrefix: string, dn: string, options: LeaseOptions): string;
  /** By name or uid; undefined if there is no such account. */
  lookupAccount(nameOrUid: string | number): ResolvedAccount | undefined;
  /** A group's gid by name or gid; undefined if there is no such group. */
  lookupGroup(nameOrGid: string | number): number | undefined;
  /** A gid's group name (for VOMS pool lease names); the number when absent. */
  groupNameOf?(gid: number): string | undefined;
}

function lookupSystemAccount(nameOrUid: string | number): ResolvedAccount | undefined {
  const account = findAccount(nameOrUid);
  return account === undefined
    ? undefined
    : { name: account.name, uid: account.uid, gid: account.gid, groups: groupsOf(account) };
}

export const systemMappingEnvironment: MappingEnvironment = {
  readGridMap,
  leasePoolAccount,
  lookupAccount: lookupSystemAccount,
  lookupGroup: (nameOrGid) => findGroup(nameOrGid)?.gid,
  groupNameOf: (gid) => findGroup(gid)?.name,
};

export type MappedBy =
  'localaccount' | 'poolaccount' | 'voms_localaccount' | 'voms_poolaccount' | 'dummy_good' | 'library';

export interface AccountMapping {
  readonly account: string;
  readonly policy: string;
  readonly via: MappedBy;
  readonly uid: number;
  /** The primary gid. */
  readonly gid: number;
  /** The groups the payload gets, the primary gid included, sorted. */
  readonly groups: readonly number[];
  /** The FQANs that VOMS modules mapped to the account or its groups, in the proxy's order. */
  readonly fqans?: readonly string[];
}

type LimitedProxyRule = 'deny' | 'allow' | 'require';

type ModuleConfig =
  | {
      readonly kind: 'verify_proxy';
      readonly certdir?: string;
      readonly limitedProxies: LimitedProxyRule;
      readonly acceptMissingPrivateKey: boolean;
      readonly onlyLifetimeChecks: boolean;
      /** Level (0 = first delegation after the EEC, 'leaf' = last) to the longest validity allowed. */
      readonly maxValiditySeconds: ReadonlyMap<number | 'leaf', number>;
      /** --max-voms-ttl: the longest validity a trusted AC may have. */
      readonly maxVomsSeconds?: number;
    }
  | { readonly kind: 'localaccount'; readonly gridmapfile: string }
  | {
      readonly kind: 'poolaccount';
      readonly gridmapfile: string;
      /** Unset: LCMAPS would read $GRIDMAPDIR, which glexec never passes, so the module fails. */
      readonly gridmapdir?: string;
      readonly overrideInconsistency: boolean;
      readonly strictPrefixMatch: boolean;
      readonly wildcards: boolean;
    }
  | {
      readonly kind: 'posix_enf';
      readonly maxUids?: number;
      readonly maxPrimaryGids?: number;
      readonly maxSecondaryGids?: number;
    }
  | { readonly kind: 'ban_dn'; readonly banmapfile: string; readonly wildcards: boolean }
  | {
      readonly kind: 'dummy_good';
      readonly account?: ResolvedAccount;
      readonly gid?: number;
      readonly secondaryGid?: number;
    }
  | { readonly kind: 'dummy_bad' }
  | { readonly kind: 'voms' }
  | {
      readonly kind: 'voms_localgroup';
      readonly groupmapfile: string;
      readonly mapToSecondary: boolean;
      readonly mapAll: boolean;
      readonly mapMin: number;
    }
  | {
      readonly kind: 'voms_poolgroup';
      readonly groupmapfile: string;
      readonly groupmapdir?: string;
      readonly mapToSecondary: boolean;
      readonly mapAll: boolean;
      readonly mapMin: number;
      readonly overrideInconsistency: boolean;
      readonly strictPrefixMatch: boolean;
    }
  | { readonly kind: 'voms_localaccount'; readonly gridmapfile: string; readonly accountGids: AccountGids }
  | {
      readonly kind: 'voms_poolaccount';
      readonly gridmapfile: string;
      readonly gridmapdir?: string;
      readonly accountGids: AccountGids;
      readonly requirePrimaryGid: boolean;
      readonly secondaryGidsInLease: boolean;
      readonly overrideInconsistency: boolean;
      readonly strictPrefixMatch: boolean;
    }
  | { readonly kind: 'ban_fqan'; readonly banmapfile: string; readonly wildcards: boolean };

export interface CompiledModule {
  readonly label: string;
  readonly line: number;
  readonly file: string;
  readonly config: ModuleConfig;
}

export interface CompiledPolicy {
  readonly name: string;
  readonly line: number;
  readonly start: string;
  readonly rules: ReadonlyMap<string, LcmapsRule>;
}

export interface CompiledPolicies {
  readonly file: string;
  /** The selected policies, in file order. */
  readonly policies: readonly CompiledPolicy[];
  readonly modules: ReadonlyMap<string, CompiledModule>;
}

// ---------------------------------------------------------------------------------------------
// Options

interface OptionSpec {
  /** All spellings; the first is the one messages use. */
  readonly names: readonly string[];
  /** What the value is, for messages; absent for a flag. */
  readonly value?: string;
  /** For options that carry part of their argument in the word itself. */
  readonly matches?: (word: string) => boolean;
}

interface GivenOption {
  readonly spec: OptionSpec;
  readonly word: string;
  readonly value: string;
}

/** The options of the VOMS account modules that choose which of the mapped account's own gids are added. */
const MAPPED_ACCOUNT_GID_OPTIONS: readonly OptionSpec[] = [
  { names: ['--use-voms-gid', '--use_voms_gid', '-use_voms_gid'] },
  { names: ['--use-account-gid'] },
  { names: ['--add-primary-gid-from-mapped-account'] },
  { names: ['--do-not-add-primary-gid-from-mapped-account'] },
  { names: ['--add-primary-gid-as-secondary-gid-from-mapped-account'] },
  { names: ['--add-secondary-gids-from-mapped-account'] },
  { names: ['--do-not-add-secondary-gids-from-mapped-account'] },
];

const OPTIONS: Record<ModuleKind, readonly OptionSpec[]> = {
  verify_proxy: [
    { names: ['-certdir', '-cadir', '-capath', '--capath'], value: 'a CA directory' },
    { names: ['--allow-limited-proxy'] },
    { names: ['--disallow-limited-proxy'] },
    { names: ['--require-limited-proxy'] },
    { names: ['--discard_private_key_absence'] },
    { names: ['--never_discard_private_key_absence'] },
    { names: ['--only-enforce-lifetime-checks'] },
    {
      names: ['--max-proxy-level-ttl=<level>', '--max-proxy-level-ttl@<level>'],
      value: 'a time period like 1d-00:00',
      matches: (word) => /^--max-proxy-level-ttl[=@]/.test(word),
    },
    { names: ['--max-voms-ttl'], value: 'a time period like 1d-00:00' },
  ],
  ban_dn: [{ names: ['-banmapfile'], value: 'a ban list' }, { names: ['-no_wildcard', '-disablewildcard'] }],
  localaccount: [{ names: ['-gridmapfile', '-gridmap'], value: 'a grid-mapfile' }],
  poolaccount: [
    { names: ['-gridmapfile', '-gridmap'], value: 'a grid-mapfile' },
    { names: ['-gridmapdir'], value: 'a gridmapdir' },
    { names: ['-override_inconsistency'] },
    { names: ['-max_mappings_per_credential'], value: 'a positive number' },
    { names: ['-no_wildcard', '-disablewildcard'] },
    { names: ['-strict_poolprefix_match'], value: 'yes or no' },
  ],
  posix_enf: [
    { names: ['-maxuid'], value: 'a number' },
    { names: ['-maxpgid'], value: 'a number' },
    { names: ['-maxsgid'], value: 'a number' },
    { names: ['-set_only_euid'], value: 'yes or no' },
    { names: ['-set_only_egid'], value: 'yes or no' },
  ],
  dummy_good: [
    { names: ['--dummy-uid'], value: 'a uid' },
    { names: ['--dummy-username'], value: 'a user name' },
    { names: ['--dummy-gid'], value: 'a gid' },
    { names: ['--dummy-group'], value: 'a group name' },
    { names: ['--dummy-sec-gid'], value: 'a gid' },
    { names: ['--dummy-sec-group'], value: 'a group name' },
  ],
  dummy_bad: [],
  voms: [
    { names: ['-vomsdir'], value: 'a vomsdir' },
    { names: ['-certdir'], value: 'a CA directory' },
  ],
  voms_localgroup: [
    { names: ['-groupmapfile', '-GROUPMAPFILE'], value: 'a group-mapfile' },
    { names: ['--map-to-secondary-groups'] },
    { names: ['-mapall'] },
    { names: ['-mapmin'], value: 'a number' },
  ],
  voms_poolgroup: [
    { names: ['-groupmapfile', '-GROUPMAPFILE'], value: 'a group-mapfile' },
    { names: ['-groupmapdir', '-GROUPMAPDIR'], value: 'a groupmapdir' },
    { names: ['--map-to-secondary-groups'] },
    { names: ['-override_inconsistency'] },
    { names: ['-mapall'] },
    { names: ['-mapmin'], value: 'a number' },
    { names: ['-strict_poolprefix_match'], value: 'yes or no' },
  ],
  voms_localaccount: [{ names: ['-gridmapfile', '-gridmap'], value: 'a grid-mapfile' }, ...MAPPED_ACCOUNT_GID_OPTIONS],
  voms_poolaccount: [
    { names: ['-gridmapfile', '-gridmap'], value: 'a grid-mapfile' },
    { names: ['-gridmapdir'], value: 'a gridmapdir' },
    ...MAPPED_ACCOUNT_GID_OPTIONS,
    { names: ['--do-not-require-primary-gid', '-do_not_require_primary_gid'] },
    { names: ['--require-primary-gid'] },
    { names: ['--do-not-use-secondary-gids', '-do_not_use_secondary_gids'] },
    { names: ['-override_inconsistency'] },
    { names: ['-max_mappings_per_credential'], value: 'a positive number' },
    { names: ['-strict_poolprefix_match'], value: 'yes or no' },
  ],
  ban_fqan: [{ names: ['-banmapfile'], value: 'a ban list' }, { names: ['-no_wildcard', '-disablewildcard'] }],
};

function where(db: LcmapsDb, module: LcmapsModule): string {
  return `${db.file} line ${module.line}: module '${module.name}' (${module.file})`;
}

function readOptions(db: LcmapsDb, module: LcmapsModule, kind: ModuleKind): GivenOption[] {
  const specs = OPTIONS[kind];
  const given: GivenOption[] = [];
  for (let index = 0; index < module.args.length; index++) {
    const word = module.args[index] ?? '';
    const spec = specs.find((candidate) => candidate.names.includes(word) || candidate.matches?.(word) === true);
    if (spec === undefined) {
      const known =
        specs.length === 0
          ? 'it takes none'
          : `known: ${specs.map((candidate) => candidate.names.join('|')).join(' ')}`;
      throw systemError('lcmaps.unknown_option', `${where(db, module)}: unknown option '${word}' (${known})`);
    }
    let value = '';
    if (spec.value !== undefined) {
      const next = module.args[index + 1];
      if (next === undefined || next.startsWith('-'))
        throw systemError('lcmaps.bad_option', `${where(db, module)}: option '${word}' needs ${spec.value}`);
      value = next;
      index++;
    }
    given.push({ spec, word, value });
  }
  return given;
}

function badValue(db: LcmapsDb, module: LcmapsModule, option: GivenOption, why: string): GlexecError {
  return systemError(
    'lcmaps.bad_option',
    `${where(db, module)}: option '${option.word}' value '${option.value}' ${why}`,
  );
}

function yesNo(db: LcmapsDb, module: LcmapsModule, option: GivenOption): boolean {
  const value = option.value.toLowerCase();
  if (value !== 'yes' && value !== 'no') throw badValue(db, module, option, 'is not yes or no');
  return value === 'yes';
}

/** LCMAPS's time period `[0-99]d-[0-23]:[00-59]`, e.g. 2d-13:37, in seconds. */
export function parseTimePeriod(text: string): number | undefined {
  const match = /^([0-9]{1,2})d-([0-9]{1,2}):([0-9]{2})$/.exec(text);
  if (match === null) return undefined;
  const [days, hours, minutes] = [Number(match[1]), Number(match[2]), Number(match[3])];
  if (hours > 23 || minutes > 59) return undefined;
  return ((days * 24 + hours) * 60 + minutes) * 60;
}

function formatPeriod(seconds: number): string {
  const minutes = Math.floor(seconds / 60);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${Math.floor(minutes / 1440)}d-${pad(Math.floor(minutes / 60) % 24)}:${pad(minutes % 60)}${seconds % 60 === 0 ? '' : ` and ${seconds % 60}s`}`;
}

function gridSecurityPath(path: string): string {
  return path.startsWith('/') ? path : `${GRID_SECURITY}/${path}`;
}

function compileVerifyProxy(db: LcmapsDb, module: LcmapsModule, options: readonly GivenOption[]): ModuleConfig {
  let certdir: string | undefined;
  let maxVomsSeconds: number | undefined;
  const flags = new Set<string>();
  const maxValiditySeconds = new Map<number | 'leaf', number>();
  for (const option of options) {
    const name = option.spec.names[0] ?? '';
    if (name === '-certdir') {
      certdir = option.value;
    } else if (name === '--max-voms-ttl') {
      maxVomsSeconds = parseTimePeriod(option.value);
      if (maxVomsSeconds === undefined)
        throw badValue(db, module, option, 'is not a time period like 1d-00:00 (days-hours:minutes)');
    } else if (option.spec.matches !== undefined) {
      const level = option.word.slice('--max-proxy-level-ttl='.length);
      if (!/^([0-9]+|[lL])$/.test(level))
        throw badValue(db, module, option, `has level '${level}', which is not a number or L (leaf)`);
      const seconds = parseTimePeriod(option.value);
      if (seconds === undefined)
        throw badValue(db, module, option, 'is not a time period like 1d-00:00 (days-hours:minutes)');
      maxValiditySeconds.set(/[lL]/.test(level) ? 'leaf' : Number(level), seconds);
    } else {
      flags.add(name);
    }
  }
  const deny = flags.has('--disallow-limited-proxy');
  if (deny && (flags.has('--allow-limited-proxy') || flags.has('--require-limited-proxy'))) {
    throw systemError(
      'lcmaps.bad_option',
      `${where(db, module)}: '--disallow-limited-proxy' contradicts '${flags.has('--allow-limited-proxy') ? '--allow-limited-proxy' : '--require-limited-proxy'}'`,
    );
  }
  // verify_proxy 1.5.10 accepts limited proxies unless --disallow-limited-proxy is given.
  const limitedProxies: LimitedProxyRule = flags.has('--require-limited-proxy') ? 'require' : deny ? 'deny' : 'allow';
  return {
    kind: 'verify_proxy',
    ...(certdir === undefined ? {} : { certdir }),
    limitedProxies,
    acceptMissingPrivateKey:
      flags.has('--discard_private_key_absence') && !flags.has('--never_discard_private_key_absence'),
    onlyLifetimeChecks: flags.has('--only-enforce-lifetime-checks'),
    maxValiditySeconds,
    ...(maxVomsSeconds === undefined ? {} : { maxVomsSeconds }),
  };
}

function compileModuleConfig(
  db: LcmapsDb,
  module: LcmapsModule,
  kind: ModuleKind,
  env: MappingEnvironment,
): ModuleConfig {
  const options = readOptions(db, module, kind);
  const value = (name: string): GivenOption | undefined =>
    options.filter((option) => option.spec.names[0] === name).at(-1);
  const has = (name: string): boolean => value(name) !== undefined;
  // What poolaccount and voms_poolaccount share: the grid-mapfile, the gridmapdir and its lease rules.
  const poolOptions = () => {
    const gridmapdir = value('-gridmapdir');
    const maxMappings = value('-max_mappings_per_credential');
    if (maxMappings !== undefined && !/^[1-9][0-9]*$/.test(maxMappings.value))
      throw badValue(db, module, maxMappings, 'is not a positive number');
    const strict = value('-strict_poolprefix_match');
    return {
      gridmapfile: gridSecurityPath(value('-gridmapfile')?.value ?? DEFAULT_GRIDMAPFILE),
      ...(gridmapdir === undefined ? {} : { gridmapdir: gridSecurityPath(gridmapdir.value) }),
      overrideInconsistency: has('-override_inconsistency'),
      strictPrefixMatch: strict === undefined ? true : yesNo(db, module, strict),
    };
  };
  switch (kind) {
    case 'verify_proxy':
      return compileVerifyProxy(db, module, options);
    case 'localaccount':
      return { kind, gridmapfile: gridSecurityPath(value('-gridmapfile')?.value ?? DEFAULT_GRIDMAPFILE) };
    case 'poolaccount':
      return { kind, ...poolOptions(), wildcards: !has('-no_wildcard') };
    case 'posix_enf': {
      for (const option of options) {
        if (option.spec.value === 'a number' && !/^[0-9]+$/.test(option.value))
          throw badValue(db, module, option, 'is not a number');
        if (option.spec.value === 'yes or no') yesNo(db, module, option);
      }
      const limit = (name: string): { [key: string]: number } => {
        const given = value(name);
        return given === undefined ? {} : { [name]: Number(given.value) };
      };
      const limits = { ...limit('-maxuid'), ...limit('-maxpgid'), ...limit('-maxsgid') };
      return {
        kind,
        ...(limits['-maxuid'] === undefined ? {} : { maxUids: limits['-maxuid'] }),
        ...(limits['-maxpgid'] === undefined ? {} : { maxPrimaryGids: limits['-maxpgid'] }),
        ...(limits['-maxsgid'] === undefined ? {} : { maxSecondaryGids: limits['-maxsgid'] }),
      };
    }
    case 'ban_dn':
      return {
        kind,
        banmapfile: gridSecurityPath(value('-banmapfile')?.value ?? DEFAULT_BANMAPFILE),
        wildcards: !has('-no_wildcard'),
      };
    case 'dummy_good':
      return compileDummyGood(db, module, options, env);
    case 'dummy_bad':
    case 'voms':
      return { kind };
    case 'voms_localgroup': {
      const mapMin = value('-mapmin');
      if (mapMin !== undefined && !/^[0-9]+$/.test(mapMin.value)) throw badValue(db, module, mapMin, 'is not a number');
      return {
        kind,
        groupmapfile: gridSecurityPath(value('-groupmapfile')?.value ?? DEFAULT_GROUPMAPFILE),
        mapToSecondary: has('--map-to-secondary-groups'),
        mapAll: has('-mapall'),
        mapMin: mapMin === undefined ? 0 : Number(mapMin.value),
      };
    }
    case 'voms_poolgroup': {
      const mapMin = value('-mapmin');
      if (mapMin !== undefined && !/^[0-9]+$/.test(mapMin.value)) throw badValue(db, module, mapMin, 'is not a number');
      const groupmapdir = value('-groupmapdir');
      const strict = value('-strict_poolprefix_match');
      return {
        kind,
        groupmapfile: gridSecurityPath(value('-groupmapfile')?.value ?? DEFAULT_GROUPMAPFILE),
        ...(groupmapdir === undefined ? {} : { groupmapdir: gridSecurityPath(groupmapdir.value) }),
        mapToSecondary: has('--map-to-secondary-groups'),
        mapAll: has('-mapall'),
        mapMin: mapMin === undefined ? 0 : Number(mapMin.value),
        overrideInconsistency: has('-override_inconsistency'),
        strictPrefixMatch: strict === undefined ? true : yesNo(db, module, strict),
      };
    }
    case 'voms_localaccount':
      return {
        kind,
        gridmapfile: gridSecurityPath(value('-gridmapfile')?.value ?? DEFAULT_GRIDMAPFILE),
        // The account's own groups unless --use-voms-gid.
        accountGids: accountGidsOf(
          options,
          lastFlag(options, ['--use-voms-gid', '--use-account-gid']) !== '--use-voms-gid',
        ),
      };
    case 'voms_poolaccount':
      return {
        kind,
        ...poolOptions(),
        // The pool account's own groups only with --use-account-gid: VOMS decides the groups.
        accountGids: accountGidsOf(
          options,
          lastFlag(options, ['--use-voms-gid', '--use-account-gid']) === '--use-account-gid',
        ),
        // Measured: without --require-primary-gid the real plug-in leases (the lease then has no `:group`).
        requirePrimaryGid:
          lastFlag(options, ['--do-not-require-primary-gid', '--require-primary-gid']) === '--require-primary-gid',
        secondaryGidsInLease: !has('--do-not-use-secondary-gids'),
      };
    case 'ban_fqan':
      return {
        kind,
        banmapfile: gridSecurityPath(value('-banmapfile')?.value ?? DEFAULT_BANMAPFILE),
        wildcards: !has('-no_wildcard'),
      };
  }
}

/**
 * Which of the mapped account's own gids a VOMS account module adds: the default (all or none,
 * from --use-account-gid/--use-voms-gid), then each --add-…/--do-not-add-… flag given.
 */
function accountGidsOf(options: readonly GivenOption[], byDefault: boolean): AccountGids {
  const flag = (add: string, doNotAdd: string | undefined, fallback: boolean): boolean => {
    const last = lastFlag(options, doNotAdd === undefined ? [add] : [add, doNotAdd]);
    return last === undefined ? fallback : last === add;
  };
  return {
    primary: flag('--add-primary-gid-from-mapped-account', '--do-not-add-primary-gid-from-mapped-account', byDefault),
    primaryAsSecondary: flag('--add-primary-gid-as-secondary-gid-from-mapped-account', undefined, false),
    secondary: flag(
      '--add-secondary-gids-from-mapped-account',
      '--do-not-add-secondary-gids-from-mapped-account',
      byDefault,
    ),
  };
}

/** Of two opposite flags, the one given last (undefined: neither). */
function lastFlag(options: readonly GivenOption[], names: readonly string[]): string | undefined {
  return options.filter((option) => names.includes(option.spec.names[0] ?? '')).at(-1)?.spec.names[0];
}

/**
 * lcmaps_dummy_good's user and groups are looked up when LCMAPS starts, and one that does not
 * exist stops LCMAPS before any policy runs: a 202 here too.
 */
function compileDummyGood(
  db: LcmapsDb,
  module: LcmapsModule,
  options: readonly GivenOption[],
  env: MappingEnvironment,
): ModuleConfig {
  const given = (...names: string[]): GivenOption | undefined =>
    options.filter((option) => names.includes(option.spec.names[0] ?? '')).at(-1);
  const missing = (option: GivenOption, what: string): GlexecError =>
    systemError(
      'lcmaps.bad_option',
      `${where(db, module)}: option '${option.word}' names ${what} '${option.value}', which does not exist`,
    );
  const numberOrName = (option: GivenOption): string | number =>
    option.spec.value === 'a uid' || option.spec.value === 'a gid' ? Number(option.value) : option.value;
  for (const option of options) {
    if ((option.spec.value === 'a uid' || option.spec.value === 'a gid') && !/^[0-9]+$/.test(option.value))
      throw badValue(db, module, option, 'is not a number');
  }
  const user = given('--dummy-uid', '--dummy-username');
  const group = given('--dummy-gid', '--dummy-group');
  const secondary = given('--dummy-sec-gid', '--dummy-sec-group');
  const account = user === undefined ? undefined : env.lookupAccount(numberOrName(user));
  if (user !== undefined && account === undefined) throw missing(user, 'a user');
  const gid = group === undefined ? undefined : env.lookupGroup(numberOrName(group));
  if (group !== undefined && gid === undefined) throw missing(group, 'a group');
  const secondaryGid = secondary === undefined ? undefined : env.lookupGroup(numberOrName(secondary));
  if (secondary !== undefined && secondaryGid === undefined) throw missing(secondary, 'a group');
  return {
    kind: 'dummy_good',
    ...(account === undefined ? {} : { account }),
    ...(gid === undefined ? {} : { gid }),
    ...(secondaryGid === undefined ? {} : { secondaryGid }),
  };
}

function compileModule(db: LcmapsDb, module: LcmapsModule, env: MappingEnvironment): CompiledModule {
  const kind = moduleKindOf(module.file);
  if (kind === undefined) {
    throw systemError(
      'lcmaps.unknown_module',
      `${where(db, module)}: glexec has no built-in equivalent of this plug-in (it has ${KINDS.map((name) => `lcmaps_${name}.mod`).join(', ')})`,
    );
  }
  return {
    label: module.name,
    line: module.line,
    file: module.file,
    config: compileModuleConfig(db, module, kind, env),
  };
}

/**
 * LCMAPS refuses to start when two modules that policies use are the same plug-in file ("trying
 * to use plugin … twice"); a site loads one plug-in twice through numbered copies.
 */
function refuseSharedPlugins(db: LcmapsDb): void {
  const byFile = new Map<string, LcmapsModule>();
  const used = new Set(
    db.policies.flatMap((policy) => policy.rules.flatMap((rule) => [rule.from, rule.onSuccess, rule.onFailure])),
  );
  for (const [label, module] of db.modules) {
    if (!used.has(label)) continue;
    const file = module.file.slice(module.file.lastIndexOf('/') + 1);
    const first = byFile.get(file);
    if (first !== undefined) {
      throw systemError(
        'lcmaps.plugin_twice',
        `${where(db, module)}: plug-in ${file} is also module '${first.name}' (line ${first.line}); LCMAPS loads a plug-in once, so use a numbered copy such as ${file.replace(/\.(mod|so)/, '2.$1')}`,
      );
    }
    byFile.set(file, module);
  }
}

/** `lcmaps_get_account_policy`: one policy name or several separated by `:`. */
export function parsePolicyNames(setting: string): string[] {
  const names = setting
    .split(':')
    .map((name) => name.trim())
    .filter((name) => name !== '');
  if (names.length === 0) throw systemError('lcmaps.no_policy', 'lcmaps_get_account_policy names no policy');
  return [...new Set(names)];
}

/**
 * Checks the named policies and every module they use (known plug-in, known options, valid
 * values): any problem is a 202. Modules only other policies use are not looked at, so one
 * lcmaps.db can serve other services too.
 */
export function compileAccountPolicies(
  db: LcmapsDb,
  policyNames: string | readonly string[],
  env: MappingEnvironment = systemMappingEnvironment,
): CompiledPolicies {
  const wanted = typeof policyNames === 'string' ? parsePolicyNames(policyNames) : [...new Set(policyNames)];
  for (const name of wanted) {
    if (!db.policies.some((policy) => policy.name === name)) {
      const defined = db.policies.map((policy) => policy.name).join(', ') || 'none';
      throw systemError(
        'lcmaps.unknown_policy',
        `${db.file}: policy '${name}' (from lcmaps_get_account_policy) is not defined (defined: ${defined})`,
      );
    }
  }
  refuseSharedPlugins(db);
  const modules = new Map<string, CompiledModule>();
  const policies: CompiledPolicy[] = [];
  // LCMAPS runs the selected policies in the order of the file, not of the list.
  for (const policy of db.policies.filter((candidate) => wanted.includes(candidate.name))) {
    for (const rule of policy.rules) {
      for (const label of [rule.from, rule.onSuccess, rule.onFailure]) {
        if (label === undefined || modules.has(label)) continue;
        const module = db.modules.get(label);
        // parseLcmapsDb already refused rules naming undefined modules.
        if (module === undefined)
          throw systemError(
            'lcmaps.undefined_module',
            `${db.file} line ${rule.line}: module '${label}' is not defined`,
          );
        modules.set(label, compileModule(db, module, env));
      }
    }
    const first = policy.rules[0];
    if (first === undefined)
      throw systemError('lcmaps.syntax', `${db.file} line ${policy.line}: policy '${policy.name}' has no rules`);
    policies.push({
      name: policy.name,
      line: policy.line,
      start: first.from,
      rules: new Map(policy.rules.map((rule) => [rule.from, rule])),
    });
  }
  return { file: db.file, policies, modules };
}

// ---------------------------------------------------------------------------------------------
// Running

/** Which of a mapped account's own gids go into the mapping. */
interface AccountGids {
  readonly primary: boolean;
  readonly primaryAsSecondary: boolean;
  readonly secondary: boolean;
}

const ALL_ACCOUNT_GIDS: AccountGids = { primary: true, primaryAsSecondary: false, secondary: true };

/** What acquisition modules gathered so far, as LCMAPS's credential data holds it. */
interface Gathered {
  readonly account?: ResolvedAccount;
  readonly via?: MappedBy;
  /** A primary gid given apart from an account (dummy_good --dummy-gid). */
  readonly gid?: number;
  /** Secondary gids given apart from an account (dummy_good --dummy-sec-gid). */
  readonly secondaryGids: readonly number[];
  /** Which of its own gids the account brings (all, unless a VOMS account module says otherwise). */
  readonly accountGids?: AccountGids;
  /** Gids VOMS modules gave, in LCMAPS's order: they come before any an account brings. */
  readonly vomsPrimaryGids?: readonly number[];
  readonly vomsSecondaryGids?: readonly number[];
  /** FQANs that VOMS modules mapped. */
  readonly fqansUsed?: readonly string[];
}

/** A module that fails may still have gathered groups: LCMAPS keeps them for the modules after it. */
type ModuleResult =
  | { readonly ok: true; readonly gathered?: Gathered }
  | { readonly ok: false; readonly reason: string; readonly gathered?: Gathered };

const failed = (reason: string): ModuleResult => ({ ok: false, reason });

function runVerifyProxy(config: Extract<ModuleConfig, { kind: 'verify_proxy' }>, input: MappingInput): ModuleResult {
  const { proxy } = input;
  if (input.now.getTime() >= proxy.notAfter.getTime())
    return failed(`the proxy expired at ${proxy.notAfter.toISOString()}`);
  if (!config.onlyLifetimeChecks) {
    if (
      config.certdir !== undefined &&
      input.verifiedAgainstCertdir !== undefined &&
      config.certdir !== input.verifiedAgainstCertdir
    ) {
      return failed(
        `glexec verified the chain against ${input.verifiedAgainstCertdir}, not against the module's -certdir ${config.certdir}`,
      );
    }
    if (config.limitedProxies === 'deny' && proxy.limited)
      return failed('the chain has a limited proxy and --disallow-limited-proxy is set');
    if (config.limitedProxies === 'require' && !(proxy.leafLimited ?? proxy.limited))
      return failed('the last proxy is not limited, and --require-limited-proxy is set');
    if (proxy.hasPrivateKey === false && !config.acceptMissingPrivateKey)
      return failed('the private key is missing, and --discard_private_key_absence is not set');
  }
  if (config.maxValiditySeconds.size > 0) {
    const validity = proxy.proxyValidity;
    if (validity === undefined)
      return failed('--max-proxy-level-ttl is set, but the proxy validity periods were not given to it');
    for (const [level, maxSeconds] of config.maxValiditySeconds) {
      const index = level === 'leaf' ? validity.length - 1 : level;
      const certificate = validity[index];
      if (certificate === undefined) continue;
      const seconds = Math.floor((certificate.notAfter.getTime() - certificate.notBefore.getTime()) / 1000);
      if (seconds > maxSeconds) {
        const name = level === 'leaf' ? 'the last proxy' : `the proxy at level ${level}`;
        return failed(
          `${name} is valid for ${formatPeriod(seconds)}, longer than --max-proxy-level-ttl allows (${formatPeriod(maxSeconds)})`,
        );
      }
    }
  }
  if (config.maxVomsSeconds !== undefined) {
    for (const { notBefore, notAfter } of input.voms?.validity ?? []) {
      const seconds = Math.floor((notAfter.getTime() - notBefore.getTime()) / 1000);
      if (seconds > config.maxVomsSeconds)
        return failed(
          `a VOMS AC is valid for ${formatPeriod(seconds)}, longer than --max-voms-ttl allows (${formatPeriod(config.maxVomsSeconds)})`,
        );
    }
  }
  return { ok: true };
}

/** The account `name` as a module's result; a VOMS module adds which gids it brings and the FQAN it mapped. */
function mappedAccount(
  env: MappingEnvironment,
  name: string,
  via: MappedBy,
  voms: Pick<Gathered, 'accountGids' | 'fqansUsed'> = {},
): ModuleResult {
  const account = env.lookupAccount(name);
  if (account === undefined) return failed(`no user account found with the name '${name}'`);
  return { ok: true, gathered: { account, via, secondaryGids: [], ...voms } };
}

function runLocalAccount(
  config: Extract<ModuleConfig, { kind: 'localaccount' }>,
  input: MappingInput,
  env: MappingEnvironment,
): ModuleResult {
  const entry = findGridMapEntry(env.readGridMap(config.gridmapfile), input.identityDn, false);
  if (entry === undefined) return failed(`the DN has no entry in grid-mapfile ${config.gridmapfile}`);
  const account = entry.accounts[0] ?? '';
  if (account.startsWith('.'))
    return failed(
      `grid-mapfile ${config.gridmapfile} line ${entry.line} maps the DN to pool '${account}', which is for a poolaccount module`,
    );
  return mappedAccount(env, account, 'localaccount');
}

function runPoolAccount(
  config: Extract<ModuleConfig, { kind: 'poolaccount' }>,
  input: MappingInput,
  env: MappingEnvironment,
): ModuleResult {
  const entry = findGridMapEntry(env.readGridMap(config.gridmapfile), input.identityDn, config.wildcards);
  if (entry === undefined) return failed(`the DN has no entry in grid-mapfile ${config.gridmapfile}`);
  const pool = entry.accounts[0] ?? '';
  if (!pool.startsWith('.'))
    return failed(
      `grid-mapfile ${config.gridmapfile} line ${entry.line} maps the DN to '${pool}', which is not a pool (.name)`,
    );
  if (config.gridmapdir === undefined)
    return failed(
      'the gridmapdir is unset: give the module -gridmapdir (LCMAPS would read $GRIDMAPDIR, which gLExec never set)',
    );
  let account: string;
  try {
    account = env.leasePoolAccount(config.gridmapdir, pool.slice(1), input.identityDn, {
      overrideInconsistency: config.overrideInconsistency,
      strictPrefixMatch: config.strictPrefixMatch,
    });
  } catch (error) {
    // A full pool or an inconsistent lease fails the module; a site problem (202) stops everything.
    if (error instanceof GlexecError && error.exitCode === 203) return failed(error.message);
    throw error;
  }
  return mappedAccount(env, account, 'poolaccount');
}

function runBanDn(
  config: Extract<ModuleConfig, { kind: 'ban_dn' }>,
  input: MappingInput,
  env: MappingEnvironment,
): ModuleResult {
  const entry = findGridMapEntry(
    env.readGridMap(config.banmapfile, { accountRequired: false }),
    input.identityDn,
    config.wildcards,
  );
  return entry === undefined ? { ok: true } : failed(`the DN is banned by line ${entry.line} of ${config.banmapfile}`);
}

const fqansOf = (input: MappingInput): readonly string[] => input.voms?.fqans ?? [];
const NO_FQANS = 'the proxy has no trusted VOMS attributes (FQANs)';

/** The first entry for `fqan` whose mapping is (pool) or is not (exclude) a `.pool`, wildcards allowed. */
function findFqanEntry(
  entries: readonly GridMapEntry[],
  fqan: string,
  pool: boolean,
  wildcards = true,
): GridMapEntry | undefined {
  return entries.find(
    (entry) => gridMapDnMatches(entry.dn, fqan, wildcards) && (entry.accounts[0] ?? '').startsWith('.') === pool,
  );
}

/**
 * voms_localgroup and voms_poolgroup: the group of each FQAN (`groupOf`), the first FQAN's as the
 * primary gid (unless --map-to-secondary-groups), the others secondary. A module that fails
 * -mapall or -mapmin keeps the groups it found for the modules after it.
 */
function runVomsGroups(
  config: { readonly mapToSecondary: boolean; readonly mapAll: boolean; readonly mapMin: number },
  input: MappingInput,
  env: MappingEnvironment,
  groupOf: (fqan: string) => string | undefined,
): ModuleResult {
  const fqans = fqansOf(input);
  if (fqans.length === 0) return failed(NO_FQANS);
  const primary: number[] = [];
  const secondary: number[] = [];
  const used: string[] = [];
  fqans.forEach((fqan, index) => {
    const group = groupOf(fqan);
    const gid = group === undefined ? undefined : env.lookupGroup(group);
    if (gid === undefined) return;
    (index === 0 && !config.mapToSecondary ? primary : secondary).push(gid);
    used.push(fqan);
  });
  const gathered: Gathered = {
    secondaryGids: [],
    vomsPrimaryGids: primary,
    vomsSecondaryGids: secondary,
    fqansUsed: used,
  };
  if (config.mapAll && used.length < fqans.length)
    return { ...failed(`-mapall is set, and only ${used.length} of ${fqans.length} FQANs map to a group`), gathered };
  if (used.length < config.mapMin)
    return { ...failed(`-mapmin is ${config.mapMin}, and only ${used.length} FQANs map to a group`), gathered };
  return { ok: true, gathered };
}

function runVomsLocalGroup(
  config: Extract<ModuleConfig, { kind: 'voms_localgroup' }>,
  input: MappingInput,
  env: MappingEnvironment,
): ModuleResult {
  if (fqansOf(input).length === 0) return failed(NO_FQANS);
  const entries = env.readGridMap(config.groupmapfile);
  return runVomsGroups(config, input, env, (fqan) => findFqanEntry(entries, fqan, false)?.accounts[0]);
}

/** Pool groups: each FQAN's lease in the groupmapdir is named by the encoded FQAN itself. */
function runVomsPoolGroup(
  config: Extract<ModuleConfig, { kind: 'voms_poolgroup' }>,
  input: MappingInput,
  env: MappingEnvironment,
): ModuleResult {
  if (fqansOf(input).length === 0) return failed(NO_FQANS);
  const { groupmapdir } = config;
  if (groupmapdir === undefined)
    return failed('the groupmapdir is unset: give the module -groupmapdir (LCMAPS would read $GROUPMAPDIR)');
  const entries = env.readGridMap(config.groupmapfile);
  return runVomsGroups(config, input, env, (fqan) => {
    const pool = findFqanEntry(entries, fqan, true)?.accounts[0];
    if (pool === undefined) return undefined;
    try {
      return env.leasePoolAccount(groupmapdir, pool.slice(1), fqan, {
        overrideInconsistency: config.overrideInconsistency,
        strictPrefixMatch: config.strictPrefixMatch,
      });
    } catch (error) {
      // A full group pool leaves that FQAN unmapped; a site problem (202) stops everything.
      if (error instanceof GlexecError && error.exitCode === 203) return undefined;
      throw error;
    }
  });
}

function runVomsLocalAccount(
  config: Extract<ModuleConfig, { kind: 'voms_localaccount' }>,
  input: MappingInput,
  env: MappingEnvironment,
): ModuleResult {
  const fqans = fqansOf(input);
  if (fqans.length === 0) return failed(NO_FQANS);
  const entries = env.readGridMap(config.gridmapfile);
  for (const fqan of fqans) {
    const name = findFqanEntry(entries, fqan, false)?.accounts[0];
    if (name === undefined) continue;
    return mappedAccount(env, name, 'voms_localaccount', { accountGids: config.accountGids, fqansUsed: [fqan] });
  }
  return failed(`no FQAN of the proxy has an account in grid-mapfile ${config.gridmapfile}`);
}

/**
 * Leases from the pool of the first FQAN that has one; a full pool falls through to the next
 * FQAN. The lease is named by the encoded DN plus `:group` for the primary gid (and the
 * secondary gids unless --do-not-use-secondary-gids) gathered so far.
 */
function runVomsPoolAccount(
  config: Extract<ModuleConfig, { kind: 'voms_poolaccount' }>,
  input: MappingInput,
  env: MappingEnvironment,
  gathered: Gathered,
): ModuleResult {
  const fqans = fqansOf(input);
  if (fqans.length === 0) return failed(NO_FQANS);
  const credential = credentialOf(gathered);
  const primary = credential.primaryGids[0];
  if (primary === undefined && config.requirePrimaryGid)
    return failed('no module before it gave a primary group, and --require-primary-gid is set');
  if (config.gridmapdir === undefined)
    return failed(
      'the gridmapdir is unset: give the module -gridmapdir (LCMAPS would read $GRIDMAPDIR, which gLExec never set)',
    );
  const leaseGids = [
    ...(primary === undefined ? [] : [primary]),
    ...(config.secondaryGidsInLease ? credential.secondaryGids : []),
  ];
  const suffix = leaseGids.map((gid) => `:${env.groupNameOf?.(gid) ?? String(gid)}`).join('');
  const entries = env.readGridMap(config.gridmapfile);
  const reasons: string[] = [];
  for (const fqan of fqans) {
    const pool = findFqanEntry(entries, fqan, true)?.accounts[0];
    if (pool === undefined) continue;
    let name: string;
    try {
      name = env.leasePoolAccount(config.gridmapdir, pool.slice(1), input.identityDn, {
        overrideInconsistency: config.overrideInconsistency,
        strictPrefixMatch: config.strictPrefixMatch,
        leaseSuffix: suffix,
      });
    } catch (error) {
      // A full pool (203) tries the next FQAN; a site problem (202) stops everything.
      if (error instanceof GlexecError && error.exitCode === 203) {
        reasons.push(`${fqan}: ${error.message}`);
        continue;
      }
      throw error;
    }
    return mappedAccount(env, name, 'voms_poolaccount', { accountGids: config.accountGids, fqansUsed: [fqan] });
  }
  return failed(
    reasons.length > 0
      ? reasons.join('; ')
      : `no FQAN of the proxy has a pool (.name) in grid-mapfile ${config.gridmapfile}`,
  );
}

function runBanFqan(
  config: Extract<ModuleConfig, { kind: 'ban_fqan' }>,
  input: MappingInput,
  env: MappingEnvironment,
): ModuleResult {
  const entries = env.readGridMap(config.banmapfile, { accountRequired: false });
  for (const fqan of fqansOf(input)) {
    const entry = entries.find((candidate) => gridMapDnMatches(candidate.dn, fqan, config.wildcards));
    if (entry !== undefined) return failed(`the FQAN ${fqan} is banned by line ${entry.line} of ${config.banmapfile}`);
  }
  return { ok: true };
}

function runDummyGood(config: Extract<ModuleConfig, { kind: 'dummy_good' }>): ModuleResult {
  return {
    ok: true,
    gathered: {
      ...(config.account === undefined ? {} : { account: config.account, via: 'dummy_good' as const }),
      ...(config.gid === undefined ? {} : { gid: config.gid }),
      secondaryGids: config.secondaryGid === undefined ? [] : [config.secondaryGid],
    },
  };
}

/** The uid, primary gid and groups gathered: an account brings its own, dummy_good may add some. */
interface Credential {
  readonly uids: readonly number[];
  readonly primaryGids: readonly number[];
  readonly secondaryGids: readonly number[];
}

function credentialOf(gathered: Gathered): Credential {
  const { account, gid } = gathered;
  const own = gathered.accountGids ?? ALL_ACCOUNT_GIDS;
  // dummy_good's --dummy-gid replaces the account's groups.
  const accountPrimary = account !== undefined && gid === undefined && own.primary ? [account.gid] : [];
  const accountSecondary =
    account === undefined || gid !== undefined
      ? []
      : [...(own.primaryAsSecondary ? [account.gid] : []), ...(own.secondary ? account.groups : [])];
  // LCMAPS keeps a primary gid per module that adds one (posix_enf -maxpgid counts them all).
  return {
    uids: account === undefined ? [] : [account.uid],
    primaryGids: [...(gathered.vomsPrimaryGids ?? []), ...(gid === undefined ? accountPrimary : [gid])],
    secondaryGids: [
      ...new Set([...(gathered.vomsSecondaryGids ?? []), ...accountSecondary, ...gathered.secondaryGids]),
    ],
  };
}

function runPosixEnf(config: Extract<ModuleConfig, { kind: 'posix_enf' }>, gathered: Gathered): ModuleResult {
  const credential = credentialOf(gathered);
  const limits: [string, readonly number[], number | undefined][] = [
    ['uids', credential.uids, config.maxUids],
    ['primary gids', credential.primaryGids, config.maxPrimaryGids],
    ['secondary gids', credential.secondaryGids, config.maxSecondaryGids],
  ];
  for (const [what, list, max] of limits) {
    if (max !== undefined && list.length > max)
      return failed(
        `the mapping has ${list.length} ${what}, more than its limit (-max${what === 'uids' ? 'uid' : what === 'primary gids' ? 'pgid' : 'sgid'} ${max})`,
      );
  }
  // glexec itself switches to the mapped account after the policy.
  return { ok: true };
}

function runModule(
  module: CompiledModule,
  input: MappingInput,
  env: MappingEnvironment,
  gathered: Gathered,
): ModuleResult {
  const { config } = module;
  switch (config.kind) {
    case 'verify_proxy':
      return runVerifyProxy(config, input);
    case 'localaccount':
      return runLocalAccount(config, input, env);
    case 'poolaccount':
      return runPoolAccount(config, input, env);
    case 'ban_dn':
      return runBanDn(config, input, env);
    case 'posix_enf':
      return runPosixEnf(config, gathered);
    case 'dummy_good':
      return runDummyGood(config);
    case 'dummy_bad':
      return failed('lcmaps_dummy_bad always fails');
    case 'voms':
      // Deprecated since LCMAPS 1.4: the core reads the VOMS attributes; the module always succeeds.
      return { ok: true };
    case 'voms_localgroup':
      return runVomsLocalGroup(config, input, env);
    case 'voms_poolgroup':
      return runVomsPoolGroup(config, input, env);
    case 'voms_localaccount':
      return runVomsLocalAccount(config, input, env);
    case 'voms_poolaccount':
      return runVomsPoolAccount(config, input, env, gathered);
    case 'ban_fqan':
      return runBanFqan(config, input, env);
  }
}

/** Adds what a module gathered; a second, different account is a failure of that module. */
function gather(so: Gathered, add: Gathered, label: string): Gathered | string {
  if (add.account !== undefined && so.account !== undefined && add.account.uid !== so.account.uid) {
    return `${label} mapped to '${add.account.name}' after ${so.via ?? 'a module'} mapped to '${so.account.name}'`;
  }
  const account = so.account ?? add.account;
  const via = so.via ?? add.via;
  const gid = so.gid ?? add.gid;
  const accountGids = so.account !== undefined ? so.accountGids : add.accountGids;
  return {
    ...(account === undefined ? {} : { account }),
    ...(via === undefined ? {} : { via }),
    ...(gid === undefined ? {} : { gid }),
    ...(accountGids === undefined ? {} : { accountGids }),
    secondaryGids: [...so.secondaryGids, ...add.secondaryGids],
    vomsPrimaryGids: [...(so.vomsPrimaryGids ?? []), ...(add.vomsPrimaryGids ?? [])],
    vomsSecondaryGids: [...(so.vomsSecondaryGids ?? []), ...(add.vomsSecondaryGids ?? [])],
    fqansUsed: [...new Set([...(so.fqansUsed ?? []), ...(add.fqansUsed ?? [])])],
  };
}

function finalMapping(gathered: Gathered, policy: string): AccountMapping | string {
  const { account, via } = gathered;
  if (account === undefined || via === undefined)
    return 'it succeeded without mapping an account (no localaccount, poolaccount or dummy_good --dummy-username module gave one)';
  const credential = credentialOf(gathered);
  const gid = credential.primaryGids[0];
  // LCMAPS maps nothing without a primary gid (a VOMS account module that leaves the groups to VOMS).
  if (gid === undefined) return `it mapped account '${account.name}' but no primary group`;
  const fqans = gathered.fqansUsed ?? [];
  return {
    account: account.name,
    policy,
    via,
    uid: account.uid,
    gid,
    groups: [...new Set([gid, ...credential.secondaryGids])].sort((a, b) => a - b),
    ...(fqans.length === 0 ? {} : { fqans }),
  };
}

/** Runs one policy; its account, or why it did not map one. */
function runPolicy(
  compiled: CompiledPolicies,
  policy: CompiledPolicy,
  input: MappingInput,
  env: MappingEnvironment,
): AccountMapping | string {
  const failures: string[] = [];
  let gathered: Gathered = { secondaryGids: [] };
  let label = policy.start;
  // parseLcmapsDb refuses loops; the bound only guards against a bug here.
  for (let step = 0; step <= compiled.modules.size; step++) {
    const module = compiled.modules.get(label);
    if (module === undefined) return `module '${label}' is not defined`;
    const result = runModule(module, input, env, gathered);
    let ok = result.ok;
    if (!result.ok) failures.push(`${label} failed: ${result.reason}`);
    if (result.gathered !== undefined) {
      const next = gather(gathered, result.gathered, label);
      if (typeof next === 'string') {
        failures.push(next);
        ok = false;
      } else {
        gathered = next;
      }
    }
    const rule = policy.rules.get(label);
    const next = rule === undefined ? undefined : ok ? rule.onSuccess : rule.onFailure;
    if (next === undefined) {
      if (!ok) return failures.join(', then ');
      return finalMapping(gathered, policy.name);
    }
    label = next;
  }
  return 'it did not finish (loop)';
}

/**
 * Runs the compiled policies for the input; the first that maps an account wins. A module's
 * 202 (untrusted grid-mapfile, broken gridmapdir…) stops at once; if no policy maps, a 203 says
 * why each failed.
 */
export function evaluateAccountPolicies(
  compiled: CompiledPolicies,
  input: MappingInput,
  env: MappingEnvironment = systemMappingEnvironment,
): AccountMapping {
  // One read of each grid-mapfile per request, however many modules use it.
  const gridMaps = new Map<string, readonly GridMapEntry[]>();
  const cachedEnv: MappingEnvironment = {
    ...env,
    readGridMap: (path, options) => {
      const key = `${options?.accountRequired === false ? 'ban' : 'map'}:${path}`;
      const cached = gridMaps.get(key) ?? env.readGridMap(path, options);
      gridMaps.set(key, cached);
      return cached;
    },
  };
  const reasons: string[] = [];
  for (const policy of compiled.policies) {
    const outcome = runPolicy(compiled, policy, input, cachedEnv);
    if (typeof outcome !== 'string') return outcome;
    reasons.push(`policy '${policy.name}': ${outcome}`);
  }
  throw authorizationError(
    'mapping.no_account',
    `no LCMAPS policy in ${compiled.file} maps ${input.identityDn}: ${reasons.join('; ')}`,
  );
}

/** compileAccountPolicies, then evaluateAccountPolicies. */
export function mapAccount(
  db: LcmapsDb,
  policyNames: string | readonly string[],
  input: MappingInput,
  env: MappingEnvironment = systemMappingEnvironment,
): AccountMapping {
  return evaluateAccountPolicies(compileAccountPolicies(db, policyNames, env), input, env);
}
