/**
 * glexec's built-in equivalents of the LCMAPS plug-ins a gLExec policy names, and the policy
 * runner. A module is recognised by its plug-in file's name (`lcmaps_poolaccount.mod`,
 * `/usr/lib64/lcmaps/liblcmaps_poolaccount.so`, OSG's copy `lcmaps_verify_proxy2.mod` …); nothing
 * is loaded. Each module knows its options exactly as the LCMAPS man pages list them; anything
 * else is a 202, so a site never runs with a setting glexec silently ignores.
 *
 * Running (as LCMAPS does): the policies named by lcmaps_get_account_policy run in the order of
 * the file; the first that maps an account wins. A policy starts at the left side of its first
 * rule; a module's success follows `->`, its failure `|` (no `|`: the policy fails); a module
 * that starts no rule ends the policy with its own result.
 */
import { GlexecError, authorizationError, systemError } from '../errors';
import { type GridMapEntry, readGridMap } from '../mapping/gridmap';
import { type LeaseOptions, leasePoolAccount } from '../mapping/pool';
import type { LcmapsDb, LcmapsModule, LcmapsRule } from './db';

export type ModuleKind = 'verify_proxy' | 'localaccount' | 'poolaccount' | 'posix_enf' | 'dummy_good' | 'dummy_bad';

const KINDS: readonly ModuleKind[] = ['verify_proxy', 'localaccount', 'poolaccount', 'posix_enf', 'dummy_good', 'dummy_bad'];

/** Where LCMAPS takes relative grid-mapfile and gridmapdir paths from in a setuid program. */
const GRID_SECURITY = '/etc/grid-security';
const DEFAULT_GRIDMAPFILE = `${GRID_SECURITY}/grid-mapfile`;

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
}

/** The file system side of the modules; tests replace it. */
export interface MappingEnvironment {
  readGridMap(path: string): readonly GridMapEntry[];
  leasePoolAccount(gridmapdir: string, poolPrefix: string, dn: string, options: LeaseOptions): string;
}

export const systemMappingEnvironment: MappingEnvironment = { readGridMap, leasePoolAccount };

export interface AccountMapping {
  readonly account: string;
  readonly policy: string;
  readonly via: 'localaccount' | 'poolaccount';
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
    }
  | { readonly kind: 'localaccount'; readonly gridmapfile: string }
  | {
      readonly kind: 'poolaccount';
      readonly gridmapfile: string;
      readonly gridmapdir: string;
      readonly overrideInconsistency: boolean;
      readonly strictPrefixMatch: boolean;
    }
  | { readonly kind: 'posix_enf' | 'dummy_good' | 'dummy_bad' };

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
  dummy_good: [],
  dummy_bad: [],
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
      const known = specs.length === 0 ? 'it takes none' : `known: ${specs.map((candidate) => candidate.names.join('|')).join(' ')}`;
      throw systemError('lcmaps.unknown_option', `${where(db, module)}: unknown option '${word}' (${known})`);
    }
    let value = '';
    if (spec.value !== undefined) {
      const next = module.args[index + 1];
      if (next === undefined || next.startsWith('-')) throw systemError('lcmaps.bad_option', `${where(db, module)}: option '${word}' needs ${spec.value}`);
      value = next;
      index++;
    }
    given.push({ spec, word, value });
  }
  return given;
}

function badValue(db: LcmapsDb, module: LcmapsModule, option: GivenOption, why: string): GlexecError {
  return systemError('lcmaps.bad_option', `${where(db, module)}: option '${option.word}' value '${option.value}' ${why}`);
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
  const flags = new Set<string>();
  const maxValiditySeconds = new Map<number | 'leaf', number>();
  for (const option of options) {
    const name = option.spec.names[0] ?? '';
    if (name === '-certdir') {
      certdir = option.value;
    } else if (name === '--max-voms-ttl') {
      throw systemError('lcmaps.unsupported_option', `${where(db, module)}: option '--max-voms-ttl' is not supported: glexec does not read VOMS attributes, so it cannot enforce their lifetime`);
    } else if (option.spec.matches !== undefined) {
      const level = option.word.slice('--max-proxy-level-ttl='.length);
      if (!/^([0-9]+|[lL])$/.test(level)) throw badValue(db, module, option, `has level '${level}', which is not a number or L (leaf)`);
      const seconds = parseTimePeriod(option.value);
      if (seconds === undefined) throw badValue(db, module, option, 'is not a time period like 1d-00:00 (days-hours:minutes)');
      maxValiditySeconds.set(/[lL]/.test(level) ? 'leaf' : Number(level), seconds);
    } else {
      flags.add(name);
    }
  }
  const deny = flags.has('--disallow-limited-proxy');
  if (deny && (flags.has('--allow-limited-proxy') || flags.has('--require-limited-proxy'))) {
    throw systemError('lcmaps.bad_option', `${where(db, module)}: '--disallow-limited-proxy' contradicts '${flags.has('--allow-limited-proxy') ? '--allow-limited-proxy' : '--require-limited-proxy'}'`);
  }
  const limitedProxies: LimitedProxyRule = flags.has('--require-limited-proxy') ? 'require' : flags.has('--allow-limited-proxy') ? 'allow' : 'deny';
  return {
    kind: 'verify_proxy',
    ...(certdir === undefined ? {} : { certdir }),
    limitedProxies,
    acceptMissingPrivateKey: flags.has('--discard_private_key_absence') && !flags.has('--never_discard_private_key_absence'),
    onlyLifetimeChecks: flags.has('--only-enforce-lifetime-checks'),
    maxValiditySeconds,
  };
}

function compileModuleConfig(db: LcmapsDb, module: LcmapsModule, kind: ModuleKind): ModuleConfig {
  const options = readOptions(db, module, kind);
  const value = (name: string): GivenOption | undefined => options.filter((option) => option.spec.names[0] === name).at(-1);
  const has = (name: string): boolean => value(name) !== undefined;
  switch (kind) {
    case 'verify_proxy':
      return compileVerifyProxy(db, module, options);
    case 'localaccount':
      return { kind, gridmapfile: gridSecurityPath(value('-gridmapfile')?.value ?? DEFAULT_GRIDMAPFILE) };
    case 'poolaccount': {
      const gridmapdir = value('-gridmapdir');
      // LCMAPS would read $GRIDMAPDIR; a setuid program takes no paths from its caller.
      if (gridmapdir === undefined) throw systemError('lcmaps.bad_option', `${where(db, module)}: option '-gridmapdir' is required`);
      const maxMappings = value('-max_mappings_per_credential');
      if (maxMappings !== undefined && !/^[1-9][0-9]*$/.test(maxMappings.value)) throw badValue(db, module, maxMappings, 'is not a positive number');
      const strict = value('-strict_poolprefix_match');
      return {
        kind,
        gridmapfile: gridSecurityPath(value('-gridmapfile')?.value ?? DEFAULT_GRIDMAPFILE),
        gridmapdir: gridSecurityPath(gridmapdir.value),
        overrideInconsistency: has('-override_inconsistency'),
        strictPrefixMatch: strict === undefined ? true : yesNo(db, module, strict),
      };
    }
    case 'posix_enf':
      for (const option of options) {
        if (option.spec.value === 'a number' && !/^[0-9]+$/.test(option.value)) throw badValue(db, module, option, 'is not a number');
        if (option.spec.value === 'yes or no') yesNo(db, module, option);
      }
      return { kind };
    case 'dummy_good':
    case 'dummy_bad':
      return { kind };
  }
}

function compileModule(db: LcmapsDb, module: LcmapsModule): CompiledModule {
  const kind = moduleKindOf(module.file);
  if (kind === undefined) {
    throw systemError(
      'lcmaps.unknown_module',
      `${where(db, module)}: glexec has no built-in equivalent of this plug-in (it has ${KINDS.map((name) => `lcmaps_${name}.mod`).join(', ')})`,
    );
  }
  return { label: module.name, line: module.line, file: module.file, config: compileModuleConfig(db, module, kind) };
}

/** `lcmaps_get_account_policy`: one policy name or several separated by `:`. */
export function parsePolicyNames(setting: string): string[] {
  const names = setting.split(':').map((name) => name.trim()).filter((name) => name !== '');
  if (names.length === 0) throw systemError('lcmaps.no_policy', 'lcmaps_get_account_policy names no policy');
  return [...new Set(names)];
}

/**
 * Checks the named policies and every module they use (known plug-in, known options, valid
 * values): any problem is a 202. Modules only other policies use are not looked at, so one
 * lcmaps.db can serve other services too.
 */
export function compileAccountPolicies(db: LcmapsDb, policyNames: string | readonly string[]): CompiledPolicies {
  const wanted = typeof policyNames === 'string' ? parsePolicyNames(policyNames) : [...new Set(policyNames)];
  for (const name of wanted) {
    if (!db.policies.some((policy) => policy.name === name)) {
      const defined = db.policies.map((policy) => policy.name).join(', ') || 'none';
      throw systemError('lcmaps.unknown_policy', `${db.file}: policy '${name}' (from lcmaps_get_account_policy) is not defined (defined: ${defined})`);
    }
  }
  const modules = new Map<string, CompiledModule>();
  const policies: CompiledPolicy[] = [];
  // LCMAPS runs the selected policies in the order of the file, not of the list.
  for (const policy of db.policies.filter((candidate) => wanted.includes(candidate.name))) {
    for (const rule of policy.rules) {
      for (const label of [rule.from, rule.onSuccess, rule.onFailure]) {
        if (label === undefined || modules.has(label)) continue;
        const module = db.modules.get(label);
        // parseLcmapsDb already refused rules naming undefined modules.
        if (module === undefined) throw systemError('lcmaps.undefined_module', `${db.file} line ${rule.line}: module '${label}' is not defined`);
        modules.set(label, compileModule(db, module));
      }
    }
    const first = policy.rules[0];
    if (first === undefined) throw systemError('lcmaps.syntax', `${db.file} line ${policy.line}: policy '${policy.name}' has no rules`);
    policies.push({ name: policy.name, line: policy.line, start: first.from, rules: new Map(policy.rules.map((rule) => [rule.from, rule])) });
  }
  return { file: db.file, policies, modules };
}

// ---------------------------------------------------------------------------------------------
// Running

type ModuleResult =
  | { readonly ok: true; readonly account?: string; readonly via?: 'localaccount' | 'poolaccount' }
  | { readonly ok: false; readonly reason: string };

const failed = (reason: string): ModuleResult => ({ ok: false, reason });

function runVerifyProxy(config: Extract<ModuleConfig, { kind: 'verify_proxy' }>, input: MappingInput): ModuleResult {
  const { proxy } = input;
  if (input.now.getTime() >= proxy.notAfter.getTime()) return failed(`the proxy expired at ${proxy.notAfter.toISOString()}`);
  if (!config.onlyLifetimeChecks) {
    if (config.certdir !== undefined && input.verifiedAgainstCertdir !== undefined && config.certdir !== input.verifiedAgainstCertdir) {
      return failed(`glexec verified the chain against ${input.verifiedAgainstCertdir}, not against the module's -certdir ${config.certdir}`);
    }
    if (config.limitedProxies === 'deny' && proxy.limited) return failed('the chain has a limited proxy and --allow-limited-proxy is not set');
    if (config.limitedProxies === 'require' && !(proxy.leafLimited ?? proxy.limited)) return failed('the last proxy is not limited, and --require-limited-proxy is set');
    if (proxy.hasPrivateKey === false && !config.acceptMissingPrivateKey) return failed('the private key is missing, and --discard_private_key_absence is not set');
  }
  if (config.maxValiditySeconds.size > 0) {
    const validity = proxy.proxyValidity;
    if (validity === undefined) return failed('--max-proxy-level-ttl is set, but the proxy validity periods were not given to it');
    for (const [level, maxSeconds] of config.maxValiditySeconds) {
      const index = level === 'leaf' ? validity.length - 1 : level;
      const certificate = validity[index];
      if (certificate === undefined) continue;
      const seconds = Math.floor((certificate.notAfter.getTime() - certificate.notBefore.getTime()) / 1000);
      if (seconds > maxSeconds) {
        const name = level === 'leaf' ? 'the last proxy' : `the proxy at level ${level}`;
        return failed(`${name} is valid for ${formatPeriod(seconds)}, longer than --max-proxy-level-ttl allows (${formatPeriod(maxSeconds)})`);
      }
    }
  }
  return { ok: true };
}

function gridMapEntry(env: MappingEnvironment, gridmapfile: string, dn: string): GridMapEntry | undefined {
  return env.readGridMap(gridmapfile).find((entry) => entry.dn === dn);
}

function runLocalAccount(config: Extract<ModuleConfig, { kind: 'localaccount' }>, input: MappingInput, env: MappingEnvironment): ModuleResult {
  const entry = gridMapEntry(env, config.gridmapfile, input.identityDn);
  if (entry === undefined) return failed(`the DN has no entry in grid-mapfile ${config.gridmapfile}`);
  const account = entry.accounts[0] ?? '';
  if (account.startsWith('.')) return failed(`grid-mapfile ${config.gridmapfile} line ${entry.line} maps the DN to pool '${account}', which is for a poolaccount module`);
  return { ok: true, account, via: 'localaccount' };
}

function runPoolAccount(config: Extract<ModuleConfig, { kind: 'poolaccount' }>, input: MappingInput, env: MappingEnvironment): ModuleResult {
  const entry = gridMapEntry(env, config.gridmapfile, input.identityDn);
  if (entry === undefined) return failed(`the DN has no entry in grid-mapfile ${config.gridmapfile}`);
  const pool = entry.accounts[0] ?? '';
  if (!pool.startsWith('.')) return failed(`grid-mapfile ${config.gridmapfile} line ${entry.line} maps the DN to '${pool}', which is not a pool (.name)`);
  try {
    const account = env.leasePoolAccount(config.gridmapdir, pool.slice(1), input.identityDn, {
      overrideInconsistency: config.overrideInconsistency,
      strictPrefixMatch: config.strictPrefixMatch,
    });
    return { ok: true, account, via: 'poolaccount' };
  } catch (error) {
    // A full pool or an inconsistent lease fails the module; a site problem (202) stops everything.
    if (error instanceof GlexecError && error.exitCode === 203) return failed(error.message);
    throw error;
  }
}

function runModule(module: CompiledModule, input: MappingInput, env: MappingEnvironment): ModuleResult {
  const { config } = module;
  switch (config.kind) {
    case 'verify_proxy':
      return runVerifyProxy(config, input);
    case 'localaccount':
      return runLocalAccount(config, input, env);
    case 'poolaccount':
      return runPoolAccount(config, input, env);
    case 'posix_enf':
    case 'dummy_good':
      // posix_enf: glexec itself switches to the mapped account after the policy.
      return { ok: true };
    case 'dummy_bad':
      return failed('lcmaps_dummy_bad always fails');
  }
}

/** Runs one policy; its account, or why it did not map one. */
function runPolicy(compiled: CompiledPolicies, policy: CompiledPolicy, input: MappingInput, env: MappingEnvironment): AccountMapping | string {
  const failures: string[] = [];
  let mapped: { account: string; via: 'localaccount' | 'poolaccount' } | undefined;
  let label = policy.start;
  // parseLcmapsDb refuses loops; the bound only guards against a bug here.
  for (let step = 0; step <= compiled.modules.size; step++) {
    const module = compiled.modules.get(label);
    if (module === undefined) return `module '${label}' is not defined`;
    const result = runModule(module, input, env);
    let ok = result.ok;
    if (!result.ok) failures.push(`${label} failed: ${result.reason}`);
    if (result.ok && result.account !== undefined && result.via !== undefined) {
      if (mapped !== undefined && mapped.account !== result.account) {
        failures.push(`${label} mapped to '${result.account}' after ${mapped.via} mapped to '${mapped.account}'`);
        ok = false;
      } else {
        mapped ??= { account: result.account, via: result.via };
      }
    }
    const rule = policy.rules.get(label);
    const next = rule === undefined ? undefined : ok ? rule.onSuccess : rule.onFailure;
    if (next === undefined) {
      if (!ok) return failures.join(', then ');
      if (mapped === undefined) return 'it succeeded without mapping an account (no localaccount or poolaccount module succeeded)';
      return { account: mapped.account, policy: policy.name, via: mapped.via };
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
export function evaluateAccountPolicies(compiled: CompiledPolicies, input: MappingInput, env: MappingEnvironment = systemMappingEnvironment): AccountMapping {
  // One read of each grid-mapfile per request, however many modules use it.
  const gridMaps = new Map<string, readonly GridMapEntry[]>();
  const cachedEnv: MappingEnvironment = {
    readGridMap: (path) => {
      const cached = gridMaps.get(path) ?? env.readGridMap(path);
      gridMaps.set(path, cached);
      return cached;
    },
    leasePoolAccount: (...args) => env.leasePoolAccount(...args),
  };
  const reasons: string[] = [];
  for (const policy of compiled.policies) {
    const outcome = runPolicy(compiled, policy, input, cachedEnv);
    if (typeof outcome !== 'string') return outcome;
    reasons.push(`policy '${policy.name}': ${outcome}`);
  }
  throw authorizationError('mapping.no_account', `no LCMAPS policy in ${compiled.file} maps ${input.identityDn}: ${reasons.join('; ')}`);
}

/** compileAccountPolicies, then evaluateAccountPolicies. */
export function mapAccount(db: LcmapsDb, policyNames: string | readonly string[], input: MappingInput, env: MappingEnvironment = systemMappingEnvironment): AccountMapping {
  return evaluateAccountPolicies(compileAccountPolicies(db, policyNames), input, env);
}
