/**
 * The real LCMAPS as the judge of glexec's built-in mapping. Each case gives the same inputs (a
 * proxy, an lcmaps.db, a grid-mapfile, a gridmapdir, the policy names) to Debian's LCMAPS, run by
 * the installed lcmaps-helper as gLExec 0.9 ran it, and to glexec run by the pilot with an `id`
 * payload; then it compares the uid, the primary gid, the groups, the gridmapdir afterwards and
 * the refusal class. A case where glexec differs on purpose says so, and its key must be in the
 * README's table of differences.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeLeaseName } from '../../src/mapping/pool';
import {
  type Credential,
  installCa,
  makeCa,
  makeProxy,
  makeUserCert,
  type ProxyKind,
  writeProxyFile,
} from '../helpers/pki';
import { expectedFrom, idPayloadOutcome, lcmapsHelperOutcome, leasesIn, type Outcome } from '../helpers/oracle';
import { isRoot, REPO, TestSystem } from '../helpers/system';

const LIBRARY = '/usr/lib/x86_64-linux-gnu/liblcmaps.so.0';
const PLUGIN_DIR = '/usr/lib/lcmaps';
const PLUGINS = ['verify_proxy', 'localaccount', 'poolaccount', 'posix_enf', 'ban_dn', 'dummy_good', 'dummy_bad'];
const missing = [LIBRARY, ...PLUGINS.map((name) => `${PLUGIN_DIR}/lcmaps_${name}.mod`)].filter(
  (path) => !existsSync(path),
);
const skip: string | false = !isRoot
  ? 'needs root: runs LCMAPS and glexec as real users'
  : missing.length > 0
    ? `needs Debian's LCMAPS (missing ${missing.join(', ')}): apt-get install liblcmaps0 lcmaps-plugins-basic-localaccount lcmaps-plugins-basic-poolaccount lcmaps-plugins-basic-posixenf lcmaps-plugins-basic-bandn lcmaps-plugins-basic-dummy lcmaps-plugins-verify-proxy`
    : false;

const JANE = '/C=NL/O=Example/CN=Jane Doe';
const ROBOT = '/C=NL/O=Example/CN=Robot: host\\/node.example.org';
const JOSE_UTF8 = '/C=NL/O=Example/CN=José';
/** The oneline form of JOSE_UTF8, which is also that of a name whose CN holds these 11 ASCII bytes. */
const JOSE_ONELINE = '/C=NL/O=Example/CN=Jos\\xC3\\xA9';
const PLAIN = '/C=NL/O=Example/CN=plainuser';
const POOL_USER = '/C=NL/O=Example/OU=Users/CN=Pool User';
const OTHER_POOL_USER = '/C=NL/O=Example/OU=Users/CN=Other Pool User';
const MAIL = '/C=NL/O=Example/CN=Mail User/emailAddress=mail@example.org';

type ProxyName =
  | 'jane'
  | 'janeLegacy'
  | 'janeLimited'
  | 'janeLegacyLimited'
  | 'janeExpired'
  | 'janeNoKey'
  | 'janeLong'
  | 'robot'
  | 'jose'
  | 'joseLiteral'
  | 'plain'
  | 'poolUser'
  | 'otherPoolUser'
  | 'mail'
  | 'rogue';

/** What a case may name: the test's accounts, groups and paths. */
interface World {
  readonly system: TestSystem;
  readonly target: string;
  readonly targetGroup: string;
  readonly supplementaryGroup: string;
  readonly pool: string;
  readonly poolAccounts: readonly string[];
  readonly otherPool: string;
  readonly otherPoolAccounts: readonly string[];
  readonly legacyPoolAccount: string;
  readonly gridmap: string;
  readonly banmap: string;
  readonly gridmapdir: string;
  readonly emptyCertdir: string;
  readonly otherCertdir: string;
}

interface Case {
  readonly name: string;
  readonly proxy: ProxyName;
  /** Module lines (after `path =`); `verify`, `local`, `pool`, `posix` are predefined. */
  readonly modules?: (w: World) => string[];
  /** Policy lines; default `verify -> local`, `local -> posix`. */
  readonly policies?: string[];
  readonly policyNames?: string[];
  readonly gridmap: (w: World) => string[];
  readonly banmap?: (w: World) => string[];
  /** Leases made before the run: [DN, account] (account undefined: a solitary lease). */
  readonly leases?: (w: World) => [string, string | undefined][];
  /** glexec.conf without certdir; LCMAPS then has no X509_CERT_DIR either. */
  readonly noConfigCertdir?: boolean;
  /** glexec differs from LCMAPS on purpose: the key of the README's table, and what glexec does. */
  readonly differs?: { readonly key: string; readonly status: number; readonly message?: RegExp };
}

const predefinedModules = (w: World): string[] => [
  `verify = "lcmaps_verify_proxy.mod" " -certdir ${w.system.certdir}"`,
  `local = "lcmaps_localaccount.mod" " -gridmapfile ${w.gridmap}"`,
  `pool = "lcmaps_poolaccount.mod" " -gridmapfile ${w.gridmap}" " -gridmapdir ${w.gridmapdir}"`,
  'posix = "lcmaps_posix_enf.mod"',
];

const localPolicy = ['verify -> local', 'local -> posix'];
const poolPolicy = ['verify -> pool', 'pool -> posix'];
const verifyWith =
  (...options: string[]) =>
  (w: World) => [`verify2 = "lcmaps_verify_proxy.mod" " ${options.join(' ').replace('CERTDIR', w.system.certdir)}"`];
const verify2Policy = ['verify2 -> local', 'local -> posix'];

const CASES: Case[] = [
  // localaccount and the grid-mapfile
  { name: 'a local account for a quoted DN', proxy: 'jane', gridmap: (w) => [`"${JANE}" ${w.target}`] },
  { name: 'a DN without an entry is refused', proxy: 'jane', gridmap: (w) => [`"${PLAIN}" ${w.target}`] },
  {
    name: 'a comment after the account is a comment',
    proxy: 'jane',
    gridmap: (w) => [`"${JANE}" ${w.target} # the payload account`],
  },
  {
    name: 'a comment right after the account is a comment',
    proxy: 'jane',
    gridmap: (w) => [`"${JANE}" ${w.target}#note`],
  },
  {
    name: 'the first of several accounts is the mapping',
    proxy: 'jane',
    gridmap: (w) => [`"${JANE}" ${w.target},${w.legacyPoolAccount}`],
  },
  { name: 'an unquoted DN without spaces', proxy: 'plain', gridmap: (w) => [`${PLAIN} ${w.target}`] },
  {
    name: 'comment lines and blank lines are skipped',
    proxy: 'jane',
    gridmap: (w) => ['# site grid-mapfile', '', `  # "${JANE}" nobody`, `"${JANE}" ${w.target}`],
  },
  { name: 'a CRLF line end', proxy: 'jane', gridmap: (w) => [`"${JANE}" ${w.target}\r`] },
  {
    name: 'the first matching line wins',
    proxy: 'jane',
    gridmap: (w) => [`"${JANE}" ${w.target}`, `"${JANE}" ${w.legacyPoolAccount}`],
  },
  {
    name: 'a DN in another case does not match',
    proxy: 'jane',
    gridmap: (w) => [`"${JANE.toLowerCase()}" ${w.target}`],
  },
  { name: 'an escaped slash in a CN is kept as written', proxy: 'robot', gridmap: (w) => [`"${ROBOT}" ${w.target}`] },
  {
    name: 'an unescaped slash in a CN does not match',
    proxy: 'robot',
    gridmap: (w) => [`"${ROBOT.replace('\\/', '/')}" ${w.target}`],
  },
  {
    name: 'doubled backslashes do not match',
    proxy: 'robot',
    gridmap: (w) => [`"${ROBOT.replace('\\/', '\\\\/')}" ${w.target}`],
  },
  { name: 'a UTF-8 CN written as \\xHH matches', proxy: 'jose', gridmap: (w) => [`"${JOSE_ONELINE}" ${w.target}`] },
  { name: 'a UTF-8 CN written as UTF-8 does not match', proxy: 'jose', gridmap: (w) => [`"${JOSE_UTF8}" ${w.target}`] },
  {
    name: 'a CN of the literal text \\xC3\\xA9 does not take the account of the UTF-8 CN (glexec escapes the backslash)',
    proxy: 'joseLiteral',
    gridmap: (w) => [`"${JOSE_ONELINE}" ${w.target}`],
    differs: { key: 'backslash-escaped', status: 203 },
  },
  { name: 'an emailAddress attribute', proxy: 'mail', gridmap: (w) => [`"${MAIL}" ${w.target}`] },
  {
    name: 'an emailAddress written as Email does not match',
    proxy: 'mail',
    gridmap: (w) => [`"${MAIL.replace('emailAddress', 'Email')}" ${w.target}`],
  },
  { name: 'a wildcard DN is not a local account', proxy: 'jane', gridmap: (w) => [`"/C=NL/O=Example/*" ${w.target}`] },
  { name: 'an account that does not exist is refused', proxy: 'jane', gridmap: () => [`"${JANE}" nosuchaccount42`] },
  { name: 'a pool line fails localaccount', proxy: 'jane', gridmap: (w) => [`"${JANE}" .${w.pool}`] },
  {
    name: 'the -gridmap spelling of the option',
    proxy: 'jane',
    modules: (w) => [`local2 = "lcmaps_localaccount.mod" " -gridmap ${w.gridmap}"`],
    policies: ['verify -> local2', 'local2 -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'localaccount alone, without verify_proxy',
    proxy: 'jane',
    policies: ['local -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  { name: 'a legacy (GT2) proxy', proxy: 'janeLegacy', gridmap: (w) => [`"${JANE}" ${w.target}`] },

  // verify_proxy and its options
  { name: 'a limited proxy is accepted by default', proxy: 'janeLimited', gridmap: (w) => [`"${JANE}" ${w.target}`] },
  {
    name: 'a legacy limited proxy is accepted by default',
    proxy: 'janeLegacyLimited',
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--disallow-limited-proxy refuses a limited proxy',
    proxy: 'janeLimited',
    modules: verifyWith('-certdir CERTDIR', '--disallow-limited-proxy'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--disallow-limited-proxy accepts a full proxy',
    proxy: 'jane',
    modules: verifyWith('-certdir CERTDIR', '--disallow-limited-proxy'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--allow-limited-proxy accepts a limited proxy',
    proxy: 'janeLimited',
    modules: verifyWith('-certdir CERTDIR', '--allow-limited-proxy'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--require-limited-proxy refuses a full proxy',
    proxy: 'jane',
    modules: verifyWith('-certdir CERTDIR', '--require-limited-proxy'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--require-limited-proxy accepts a limited proxy',
    proxy: 'janeLimited',
    modules: verifyWith('-certdir CERTDIR', '--require-limited-proxy'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'an expired proxy',
    proxy: 'janeExpired',
    gridmap: (w) => [`"${JANE}" ${w.target}`],
    differs: { key: 'expired-proxy', status: 201, message: /expired/ },
  },
  {
    name: 'a proxy without its key',
    proxy: 'janeNoKey',
    gridmap: (w) => [`"${JANE}" ${w.target}`],
    differs: { key: 'keyless-proxy', status: 201, message: /private key/ },
  },
  {
    name: '--discard_private_key_absence and a proxy without its key',
    proxy: 'janeNoKey',
    modules: verifyWith('-certdir CERTDIR', '--discard_private_key_absence'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
    differs: { key: 'keyless-proxy', status: 201, message: /private key/ },
  },
  {
    name: '--max-proxy-level-ttl=L longer than the proxy',
    proxy: 'jane',
    modules: verifyWith('-certdir CERTDIR', '--max-proxy-level-ttl=L 1d-00:00'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--max-proxy-level-ttl=L shorter than the proxy',
    proxy: 'janeLong',
    modules: verifyWith('-certdir CERTDIR', '--max-proxy-level-ttl=L 1d-00:00'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--max-proxy-level-ttl@0 shorter than the proxy',
    proxy: 'janeLong',
    modules: verifyWith('-certdir CERTDIR', '--max-proxy-level-ttl@0 0d-02:00'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: '--max-voms-ttl without VOMS attributes',
    proxy: 'jane',
    modules: verifyWith('-certdir CERTDIR', '--max-voms-ttl 0d-12:00'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'the -cadir spelling of -certdir',
    proxy: 'jane',
    modules: verifyWith('-cadir CERTDIR'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'a -certdir without the CA refuses',
    proxy: 'jane',
    modules: (w) => [`verify2 = "lcmaps_verify_proxy.mod" " -certdir ${w.emptyCertdir}"`],
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'verify_proxy -certdir is the CA directory when glexec.conf has none',
    proxy: 'jane',
    noConfigCertdir: true,
    modules: (w) => [`verify2 = "lcmaps_verify_proxy.mod" " -certdir ${w.otherCertdir}"`],
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'a proxy from an unknown CA is refused',
    proxy: 'rogue',
    gridmap: (w) => [`"${JANE}" ${w.target}`],
    differs: { key: 'chain-always-verified', status: 203, message: /unknown|not trusted|issuer/i },
  },
  {
    name: '--only-enforce-lifetime-checks and a proxy from an unknown CA',
    proxy: 'rogue',
    modules: verifyWith('--only-enforce-lifetime-checks'),
    policies: verify2Policy,
    gridmap: (w) => [`"${JANE}" ${w.target}`],
    differs: { key: 'chain-always-verified', status: 203, message: /unknown|not trusted|issuer/i },
  },
  {
    name: 'no verify_proxy and a proxy from an unknown CA',
    proxy: 'rogue',
    policies: ['local -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
    differs: { key: 'chain-always-verified', status: 203, message: /unknown|not trusted|issuer/i },
  },

  // posix_enf
  {
    name: 'posix_enf within its limits',
    proxy: 'jane',
    modules: () => ['posix2 = "lcmaps_posix_enf.mod" " -maxuid 1 -maxpgid 1 -maxsgid 32"'],
    policies: ['verify -> local', 'local -> posix2'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'posix_enf -maxsgid below the groups',
    proxy: 'jane',
    modules: () => ['posix2 = "lcmaps_posix_enf.mod" " -maxsgid 1"'],
    policies: ['verify -> local', 'local -> posix2'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'posix_enf -maxsgid at the groups',
    proxy: 'jane',
    modules: () => ['posix2 = "lcmaps_posix_enf.mod" " -maxsgid 2"'],
    policies: ['verify -> local', 'local -> posix2'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'posix_enf -maxuid 0',
    proxy: 'jane',
    modules: () => ['posix2 = "lcmaps_posix_enf.mod" " -maxuid 0"'],
    policies: ['verify -> local', 'local -> posix2'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'posix_enf -maxpgid 0',
    proxy: 'jane',
    modules: () => ['posix2 = "lcmaps_posix_enf.mod" " -maxpgid 0"'],
    policies: ['verify -> local', 'local -> posix2'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'posix_enf -set_only_euid no',
    proxy: 'jane',
    modules: () => ['posix2 = "lcmaps_posix_enf.mod" " -set_only_euid no"'],
    policies: ['verify -> local', 'local -> posix2'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'a policy that ends at localaccount without posix_enf',
    proxy: 'jane',
    policies: ['verify -> local'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },

  // ban_dn
  ...banCases(),

  // dummy plug-ins
  {
    name: 'dummy_good alone maps nothing',
    proxy: 'jane',
    modules: () => ['good = "lcmaps_dummy_good.mod"'],
    policies: ['verify -> good'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'dummy_good --dummy-username and --dummy-group',
    proxy: 'jane',
    modules: (w) => [`good = "lcmaps_dummy_good.mod" " --dummy-username ${w.target} --dummy-group ${w.targetGroup}"`],
    policies: ['verify -> good', 'good -> posix'],
    gridmap: () => [],
  },
  {
    name: 'dummy_good --dummy-uid and --dummy-gid',
    proxy: 'jane',
    modules: (w) => [
      `good = "lcmaps_dummy_good.mod" " --dummy-uid ${uidOf(w.target)} --dummy-gid ${gidOf(w.targetGroup)}"`,
    ],
    policies: ['verify -> good', 'good -> posix'],
    gridmap: () => [],
  },
  {
    name: 'dummy_good with a secondary group',
    proxy: 'jane',
    modules: (w) => [
      `good = "lcmaps_dummy_good.mod" " --dummy-username ${w.target} --dummy-group ${w.targetGroup} --dummy-sec-group ${w.supplementaryGroup}"`,
    ],
    policies: ['verify -> good', 'good -> posix'],
    gridmap: () => [],
  },
  {
    name: 'dummy_good with a user that does not exist',
    proxy: 'jane',
    modules: () => ['good = "lcmaps_dummy_good.mod" " --dummy-username nosuchaccount42"'],
    policies: ['verify -> good', 'good -> posix'],
    gridmap: () => [],
  },
  {
    name: 'dummy_good before localaccount',
    proxy: 'jane',
    modules: () => ['good = "lcmaps_dummy_good.mod"'],
    policies: ['verify -> good', 'good -> local', 'local -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'dummy_bad refuses',
    proxy: 'jane',
    modules: () => ['bad = "lcmaps_dummy_bad.mod"'],
    policies: ['verify -> bad', 'bad -> local', 'local -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'dummy_bad | localaccount falls back',
    proxy: 'jane',
    modules: () => ['bad = "lcmaps_dummy_bad.mod"'],
    policies: ['verify -> bad | local', 'local -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },

  // poolaccount and the gridmapdir
  {
    name: 'a pool account is leased',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => [
      [`/CN=holder 1`, w.poolAccounts[1]],
      [`/CN=holder 2`, w.poolAccounts[2]],
    ],
  },
  {
    name: 'a leased pool account is leased again',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => [[POOL_USER, w.poolAccounts[1]]],
  },
  {
    name: 'a full pool refuses',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => w.poolAccounts.map((account, index) => [`/CN=holder ${index}`, account]),
  },
  {
    name: 'the one free account of a pool',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => [
      [`/CN=holder 0`, w.poolAccounts[0]],
      [`/CN=holder 2`, w.poolAccounts[2]],
    ],
  },
  {
    name: 'a wildcard DN maps to a pool',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"/C=NL/O=Example/OU=Users/*" .${w.pool}`],
    leases: (w) => [
      [`/CN=holder 0`, w.poolAccounts[0]],
      [`/CN=holder 1`, w.poolAccounts[1]],
    ],
  },
  {
    name: 'a wildcard DN does not map with -no_wildcard',
    proxy: 'poolUser',
    modules: (w) => [
      `pool2 = "lcmaps_poolaccount.mod" " -gridmapfile ${w.gridmap} -gridmapdir ${w.gridmapdir} -no_wildcard"`,
    ],
    policies: ['verify -> pool2', 'pool2 -> posix'],
    gridmap: (w) => [`"/C=NL/O=Example/OU=Users/*" .${w.pool}`],
  },
  {
    name: 'a wildcard line after an exact line',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.otherPool}`, `"/C=NL/O=Example/OU=Users/*" .${w.pool}`],
    leases: (w) => [[`/CN=holder 0`, w.otherPoolAccounts[0]]],
  },
  {
    name: 'a solitary lease is removed and leased again',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => [
      [POOL_USER, undefined],
      [`/CN=holder 0`, w.poolAccounts[0]],
      [`/CN=holder 1`, w.poolAccounts[1]],
    ],
  },
  {
    name: 'a lease in another pool is refused',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => [[POOL_USER, w.otherPoolAccounts[0]]],
  },
  {
    name: 'a lease in another pool moves with -override_inconsistency',
    proxy: 'poolUser',
    modules: (w) => [
      `pool2 = "lcmaps_poolaccount.mod" " -gridmapfile ${w.gridmap} -gridmapdir ${w.gridmapdir} -override_inconsistency"`,
    ],
    policies: ['verify -> pool2', 'pool2 -> posix'],
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => [
      [POOL_USER, w.otherPoolAccounts[0]],
      [`/CN=holder 0`, w.poolAccounts[0]],
      [`/CN=holder 1`, w.poolAccounts[1]],
    ],
  },
  {
    name: '-strict_poolprefix_match no leases a name that only starts with the pool',
    proxy: 'poolUser',
    modules: (w) => [
      `pool2 = "lcmaps_poolaccount.mod" " -gridmapfile ${w.gridmap} -gridmapdir ${w.gridmapdir} -strict_poolprefix_match no"`,
    ],
    policies: ['verify -> pool2', 'pool2 -> posix'],
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => w.poolAccounts.map((account, index) => [`/CN=holder ${index}`, account]),
  },
  {
    name: 'a strict pool does not lease a name that only starts with the pool',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => w.poolAccounts.map((account, index) => [`/CN=holder ${index}`, account]),
  },
  {
    name: 'a local account line fails poolaccount',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" ${w.target}`],
  },
  {
    name: 'poolaccount without -gridmapdir',
    proxy: 'poolUser',
    modules: (w) => [`pool2 = "lcmaps_poolaccount.mod" " -gridmapfile ${w.gridmap}"`],
    policies: ['verify -> pool2', 'pool2 -> posix'],
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
  },
  {
    name: 'the lease name of a DN with \\xHH text',
    proxy: 'jose',
    policies: poolPolicy,
    gridmap: (w) => [`"${JOSE_ONELINE}" .${w.pool}`],
    leases: (w) => [
      [`/CN=holder 0`, w.poolAccounts[0]],
      [`/CN=holder 1`, w.poolAccounts[1]],
    ],
  },
  {
    name: 'the lease name of a DN with an escaped slash',
    proxy: 'robot',
    policies: poolPolicy,
    gridmap: (w) => [`"${ROBOT}" .${w.pool}`],
    leases: (w) => [
      [`/CN=holder 0`, w.poolAccounts[0]],
      [`/CN=holder 1`, w.poolAccounts[1]],
    ],
  },
  {
    name: 'lowest free pool account',
    proxy: 'poolUser',
    policies: poolPolicy,
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    differs: { key: 'lowest-free-pool-account', status: 0 },
  },

  // policies, fallbacks and several policies
  {
    name: 'localaccount | poolaccount: a local account',
    proxy: 'jane',
    policies: ['verify -> local', 'local -> posix | pool', 'pool -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'localaccount | poolaccount: a pool account',
    proxy: 'poolUser',
    policies: ['verify -> local', 'local -> posix | pool', 'pool -> posix'],
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => [
      [`/CN=holder 0`, w.poolAccounts[0]],
      [`/CN=holder 1`, w.poolAccounts[1]],
    ],
  },
  {
    name: 'localaccount | poolaccount: neither',
    proxy: 'otherPoolUser',
    policies: ['verify -> local', 'local -> posix | pool', 'pool -> posix'],
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
  },
  {
    name: 'poolaccount | localaccount on a full pool',
    proxy: 'poolUser',
    policies: ['verify -> pool', 'pool -> posix | local', 'local -> posix'],
    gridmap: (w) => [`"${POOL_USER}" .${w.pool}`],
    leases: (w) => w.poolAccounts.map((account, index) => [`/CN=holder ${index}`, account]),
  },
  {
    name: 'a failed verify_proxy takes the | branch',
    proxy: 'janeLimited',
    modules: verifyWith('-certdir CERTDIR', '--disallow-limited-proxy'),
    policies: ['verify2 -> local | local', 'local -> posix'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'the second of two policies maps',
    proxy: 'jane',
    modules: () => ['bad = "lcmaps_dummy_bad.mod"'],
    policies: ['first:', 'verify -> bad', 'bad -> local', 'second:', 'verify -> local', 'local -> posix'],
    policyNames: ['first', 'second'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'one plug-in in two modules of the policies stops LCMAPS',
    proxy: 'jane',
    modules: (w) => [`other = "lcmaps_localaccount.mod" " -gridmapfile ${w.banmap}"`],
    policies: ['first:', 'verify -> local', 'second:', 'verify -> other'],
    policyNames: ['second', 'first'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
    banmap: (w) => [`"${JANE}" ${w.legacyPoolAccount}`],
  },
  {
    name: 'policies run in the order of the file',
    proxy: 'jane',
    modules: (w) => [
      `good = "lcmaps_dummy_good.mod" " --dummy-username ${w.legacyPoolAccount} --dummy-group ${w.targetGroup}"`,
    ],
    policies: ['first:', 'verify -> good', 'second:', 'verify -> local'],
    policyNames: ['second', 'first'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
  {
    name: 'a policy not named is not run',
    proxy: 'jane',
    policies: ['first:', 'verify -> local', 'second:', 'verify -> pool'],
    policyNames: ['second'],
    gridmap: (w) => [`"${JANE}" ${w.target}`],
  },
];

function banCases(): Case[] {
  const banModule =
    (options = '') =>
    (w: World) => [`ban = "lcmaps_ban_dn.mod" " -banmapfile ${w.banmap}${options}"`];
  const banPolicy = ['verify -> ban', 'ban -> local', 'local -> posix'];
  const gridmap = (w: World) => [`"${JANE}" ${w.target}`];
  return [
    {
      name: 'ban_dn refuses a banned DN',
      proxy: 'jane',
      modules: banModule(),
      policies: banPolicy,
      gridmap,
      banmap: () => [`"${JANE}"`],
    },
    {
      name: 'ban_dn lets another DN through',
      proxy: 'jane',
      modules: banModule(),
      policies: banPolicy,
      gridmap,
      banmap: () => [`"${PLAIN}"`],
    },
    {
      name: 'ban_dn with an account after the DN',
      proxy: 'jane',
      modules: banModule(),
      policies: banPolicy,
      gridmap,
      banmap: () => [`"${JANE}" banned`],
    },
    {
      name: 'ban_dn with a wildcard',
      proxy: 'jane',
      modules: banModule(),
      policies: banPolicy,
      gridmap,
      banmap: () => ['"/C=NL/O=Example/*"'],
    },
    {
      name: 'ban_dn with a wildcard and -no_wildcard',
      proxy: 'jane',
      modules: banModule(' -no_wildcard'),
      policies: banPolicy,
      gridmap,
      banmap: () => ['"/C=NL/O=Example/*"'],
    },
    {
      name: 'ban_dn with only comments',
      proxy: 'jane',
      modules: banModule(),
      policies: banPolicy,
      gridmap,
      banmap: () => [`# "${JANE}"`, ''],
    },
    {
      name: 'ban_dn | localaccount',
      proxy: 'jane',
      modules: banModule(),
      policies: ['verify -> ban | local', 'ban -> local', 'local -> posix'],
      gridmap,
      banmap: () => [`"${JANE}"`],
    },
  ];
}

function uidOf(name: string): number {
  return Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());
}

function gidOf(group: string): number {
  return Number(spawnSync('getent', ['group', group], { encoding: 'utf8' }).stdout.split(':')[2]);
}

let system: TestSystem;
let world: World;
let helper: string;
const proxies = new Map<ProxyName, string>();

const gridmapdirState = (): string[] => leasesIn(world.gridmapdir);

function prepare(c: Case): { db: string; policyNames: string[] } {
  const lines = [
    'path = /usr/lib/lcmaps',
    ...predefinedModules(world),
    ...(c.modules?.(world) ?? []),
    '',
    ...(c.policies?.[0]?.endsWith(':') ? [] : ['glexec_get_account:']),
    ...(c.policies ?? localPolicy),
    '',
  ];
  const db = join(system.root, 'etc/lcmaps.db');
  writeFileSync(db, lines.join('\n'), { mode: 0o644 });
  writeFileSync(world.gridmap, `${c.gridmap(world).join('\n')}\n`, { mode: 0o644 });
  writeFileSync(world.banmap, `${(c.banmap?.(world) ?? []).join('\n')}\n`, { mode: 0o644 });
  return { db, policyNames: c.policyNames ?? ['glexec_get_account'] };
}

function resetGridmapdir(c: Case): void {
  rmSync(world.gridmapdir, { recursive: true, force: true });
  mkdirSync(world.gridmapdir, { mode: 0o755 });
  for (const account of [...world.poolAccounts, ...world.otherPoolAccounts, world.legacyPoolAccount])
    writeFileSync(join(world.gridmapdir, account), '', { mode: 0o644 });
  for (const [dn, account] of c.leases?.(world) ?? []) {
    const lease = join(world.gridmapdir, encodeLeaseName(dn));
    if (account === undefined) writeFileSync(lease, '', { mode: 0o644 });
    else linkSync(join(world.gridmapdir, account), lease);
  }
}

function runOracle(c: Case): Outcome {
  const { db, policyNames } = prepare(c);
  resetGridmapdir(c);
  const env: Record<string, string> = { PATH: '/usr/bin:/bin', LCMAPS_DB_FILE: db, LCMAPS_DEBUG_LEVEL: '3' };
  if (c.noConfigCertdir !== true) env['X509_CERT_DIR'] = system.certdir;
  const result = spawnSync(helper, [LIBRARY, ...policyNames], {
    input: readFileSync(proxies.get(c.proxy) ?? ''),
    env,
    encoding: 'utf8',
  });
  return lcmapsHelperOutcome(result, gridmapdirState());
}

function runGlexec(c: Case, backend: 'builtin' | 'library' = 'builtin'): Outcome {
  const { db, policyNames } = prepare(c);
  resetGridmapdir(c);
  const extra = [
    `lcmaps_db_file = ${db}`,
    `lcmaps_get_account_policy = ${policyNames.join(':')}`,
    `lcmaps_backend = ${backend}`,
  ];
  system.writeConfig(
    system.standardConfig(extra).filter((line) => c.noConfigCertdir !== true || !line.startsWith('certdir')),
  );
  const result = system.run(['/usr/bin/id'], { env: { GLEXEC_CLIENT_CERT: proxies.get(c.proxy) } });
  return idPayloadOutcome(result, gridmapdirState());
}

function describeOutcome(outcome: Outcome): string {
  return 'mapped' in outcome
    ? JSON.stringify(outcome.mapped)
    : `refused ${outcome.refused}: ${outcome.detail.trim().split('\n').slice(-3).join(' | ')}`;
}

describe('the built-in mapping agrees with the real LCMAPS', { skip }, () => {
  before(() => {
    system = TestSystem.create();
    helper = join(system.root, 'prefix/lib/glexec/lcmaps-helper');
    const pkiDir = join(system.root, 'oracle-pki');
    mkdirSync(pkiDir, { mode: 0o700 });
    const ca = makeCa(join(pkiDir, 'ca'), { subject: '/C=NL/O=Example/CN=Oracle Test CA' });
    installCa(ca, system.certdir);
    const otherCertdir = join(system.root, 'etc/other-certificates');
    installCa(ca, otherCertdir);
    const emptyCertdir = join(system.root, 'etc/empty-certificates');
    mkdirSync(emptyCertdir, { mode: 0o755 });
    const rogueCa = makeCa(join(pkiDir, 'rogue'), { subject: '/C=NL/O=Example/CN=Oracle Rogue CA' });
    const users = new Map<string, Credential>();
    const userOf = (subject: string, issuer = ca): Credential => {
      const key = `${issuer.subject}|${subject}`;
      const existing = users.get(key) ?? makeUserCert(issuer, { subject });
      users.set(key, existing);
      return existing;
    };
    const write = (
      name: ProxyName,
      subject: string,
      kind: ProxyKind,
      options: { hours?: number; startOffsetHours?: number; noKey?: boolean; issuer?: Credential } = {},
    ) => {
      const path = join(system.scratch, `oracle-${name}.pem`);
      const proxy = makeProxy(userOf(subject, options.issuer), {
        kind,
        ...(options.hours === undefined ? {} : { hours: options.hours }),
        ...(options.startOffsetHours === undefined ? {} : { startOffsetHours: options.startOffsetHours }),
      });
      writeProxyFile(path, proxy, options.noKey === true ? { keyPem: null } : {});
      chownSync(path, system.pilot.uid, system.pilot.gid);
      chmodSync(path, 0o600);
      proxies.set(name, path);
    };
    write('jane', JANE, 'rfc3820');
    write('janeLegacy', JANE, 'legacy');
    write('janeLimited', JANE, 'limited');
    write('janeLegacyLimited', JANE, 'legacy-limited');
    write('janeExpired', JANE, 'rfc3820', { startOffsetHours: -48, hours: 12 });
    write('janeNoKey', JANE, 'rfc3820', { noKey: true });
    write('janeLong', JANE, 'rfc3820', { hours: 48 });
    write('robot', ROBOT, 'rfc3820');
    write('jose', JOSE_UTF8, 'rfc3820');
    // openssl -subj reads `\\` as one backslash: the CN is the 11 bytes `Jos\xC3\xA9`.
    write('joseLiteral', JOSE_ONELINE.replaceAll('\\', '\\\\'), 'rfc3820');
    write('plain', PLAIN, 'rfc3820');
    write('poolUser', POOL_USER, 'rfc3820');
    write('otherPoolUser', OTHER_POOL_USER, 'rfc3820');
    write('mail', MAIL, 'rfc3820');
    write('rogue', JANE, 'rfc3820', { issuer: rogueCa });

    const poolAccounts = system.addPoolAccounts('p', 3);
    const otherPoolAccounts = system.addPoolAccounts('q', 2);
    world = {
      system,
      target: system.target.name,
      targetGroup: spawnSync('id', ['-gn', system.target.name], { encoding: 'utf8' }).stdout.trim(),
      supplementaryGroup: system.supplementaryGroup,
      pool: `${system.prefix}p`,
      poolAccounts,
      otherPool: `${system.prefix}q`,
      otherPoolAccounts,
      legacyPoolAccount: system.addUser('pextra', []).name,
      gridmap: join(system.root, 'etc/oracle-grid-mapfile'),
      banmap: join(system.root, 'etc/oracle-ban-mapfile'),
      gridmapdir: join(system.root, 'etc/oracle-gridmapdir'),
      emptyCertdir,
      otherCertdir,
    };
  });
  after(() => system?.tearDown());

  it('has at least 60 cases', () => {
    assert.ok(CASES.length >= 60, String(CASES.length));
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, 'case names are unique');
  });

  it('every difference on purpose is in the README table', () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    for (const key of new Set(CASES.flatMap((c) => (c.differs ? [c.differs.key] : []))))
      assert.match(readme, new RegExp(`\\| \`${key}\` \\|`), key);
  });

  for (const c of CASES) {
    it(c.name, () => {
      const oracle = runOracle(c);
      const glexec = runGlexec(c);
      const summary = `LCMAPS: ${describeOutcome(oracle)}\nglexec: ${describeOutcome(glexec)}`;
      if (c.differs?.key === 'lowest-free-pool-account') {
        // LCMAPS takes the first free account in readdir order, glexec the lowest name.
        assert.ok('mapped' in oracle && 'mapped' in glexec, summary);
        assert.deepEqual(glexec.gridmapdir, [`${encodeLeaseName(POOL_USER)} -> ${world.poolAccounts[0]}`], summary);
        return;
      }
      if (c.differs !== undefined) {
        assert.ok(!('mapped' in glexec), `glexec should refuse\n${summary}`);
        assert.equal(glexec.refused, c.differs.status, summary);
        if (c.differs.message) assert.match(glexec.detail, c.differs.message, summary);
        return;
      }
      assert.deepEqual(glexec, expectedFrom(oracle, glexec), summary);
    });
  }

  // The same cases through lcmaps_backend = library: glexec verifies first, then the real LCMAPS
  // maps, so only glexec's own verification (the differences above but the pool order) differs.
  for (const c of CASES) {
    it(`library backend: ${c.name}`, () => {
      const oracle = runOracle(c);
      const glexec = runGlexec(c, 'library');
      const summary = `LCMAPS: ${describeOutcome(oracle)}\nglexec: ${describeOutcome(glexec)}`;
      // The real LCMAPS makes its own DN from the proxy, so glexec's escaped backslash plays no part here.
      if (
        c.differs !== undefined &&
        c.differs.key !== 'lowest-free-pool-account' &&
        c.differs.key !== 'backslash-escaped'
      ) {
        assert.ok(!('mapped' in glexec), `glexec should refuse\n${summary}`);
        assert.equal(glexec.refused, c.differs.status, summary);
        return;
      }
      assert.deepEqual(glexec, expectedFrom(oracle, glexec), summary);
    });
  }

  describe("the library backend refuses what it cannot trust, and gives LCMAPS's reason", () => {
    const janeCase: Case = { name: 'jane', proxy: 'jane', gridmap: (w) => [`"${PLAIN}" ${w.target}`] };
    /** Runs glexec on a fresh copy of the case's lcmaps.db, changed by `edit`. */
    const runWith = (extra: string[], edit: (text: string) => string = (text) => text) => {
      const { db } = prepare(janeCase);
      writeFileSync(db, edit(readFileSync(db, 'utf8')), { mode: 0o644 });
      system.writeConfig(
        system.standardConfig([
          `lcmaps_db_file = ${db}`,
          'lcmaps_get_account_policy = glexec_get_account',
          'lcmaps_backend = library',
          ...extra,
        ]),
      );
      return system.run(['/usr/bin/id'], { env: { GLEXEC_CLIENT_CERT: proxies.get('jane') } });
    };
    const expectRefusal = (result: { status: number | null; stderr: string }, status: number, pattern: RegExp) => {
      assert.match(result.stderr, pattern);
      assert.equal(result.stderr.split('\n').length, 2, `one line: ${result.stderr}`);
      assert.equal(result.status, status);
    };

    it("a DN LCMAPS does not map is a 203 with LCMAPS's reason", () => {
      expectRefusal(
        runWith([]),
        203,
        /^glexec: LCMAPS maps no account for \/C=NL\/O=Example\/CN=Jane Doe: .*No match for a localaccount/,
      );
    });

    it('an lcmaps_libdir without the library is a 202 naming the file', () => {
      expectRefusal(
        runWith([`lcmaps_libdir = ${world.emptyCertdir}`]),
        202,
        new RegExp(`^glexec: LCMAPS library ${world.emptyCertdir}/liblcmaps\\.so\\.0 cannot be checked: ENOENT`),
      );
    });

    it('a plug-in directory others can write is a 202 naming it', () => {
      const plugins = join(system.root, 'open-plugins');
      mkdirSync(plugins, { mode: 0o775 });
      chmodSync(plugins, 0o775);
      chownSync(plugins, 0, system.pilot.gid);
      expectRefusal(
        runWith([], (text) => text.replace('path = /usr/lib/lcmaps', `path = ${plugins}`)),
        202,
        new RegExp(`^glexec: LCMAPS plug-in directory ${plugins} is not trusted: .*writable by group`),
      );
    });

    it('a plug-in that is a symbolic link to a file others own is a 202 naming the plug-in', () => {
      const plugins = join(system.root, 'linked-plugins');
      mkdirSync(plugins, { mode: 0o755 });
      const foreign = join(system.bin, 'liblcmaps_localaccount.so');
      writeFileSync(foreign, readFileSync(`${PLUGIN_DIR}/liblcmaps_localaccount.so`));
      chownSync(foreign, system.pilot.uid, system.pilot.gid);
      for (const name of ['verify_proxy', 'posix_enf'])
        symlinkSync(`${PLUGIN_DIR}/lcmaps_${name}.mod`, join(plugins, `lcmaps_${name}.mod`));
      symlinkSync(foreign, join(plugins, 'lcmaps_localaccount.mod'));
      expectRefusal(
        runWith([], (text) => text.replace('path = /usr/lib/lcmaps', `path = ${plugins}`)),
        202,
        new RegExp(
          `^glexec: LCMAPS plug-in ${plugins}/lcmaps_localaccount\\.mod is not trusted: .*owned by uid ${system.pilot.uid}`,
        ),
      );
    });

    it('glexec --check reports the library backend and that only root can change its files', () => {
      prepare(janeCase);
      system.writeConfig(
        system.standardConfig([
          `lcmaps_db_file = ${join(system.root, 'etc/lcmaps.db')}`,
          'lcmaps_get_account_policy = glexec_get_account',
          'lcmaps_backend = library',
        ]),
      );
      const result = system.run(['--check'], { as: { name: 'root', uid: 0, gid: 0 } });
      assert.match(
        result.stdout,
        new RegExp(
          `^ok +lcmaps: backend library: ${LIBRARY.replace(/\./g, '\\.')}.* /usr/lib/lcmaps and 3 plug-in\\(s\\) .* can only be changed by root$`,
          'm',
        ),
      );
    });

    it('glexec --check names the modules the built-in backend lacks, with the fix', () => {
      const { db } = prepare(janeCase);
      writeFileSync(
        db,
        `${readFileSync(db, 'utf8')}\nscas = "lcmaps_scas_client.mod"\nscas_policy:\nverify -> scas\n`,
        { mode: 0o644 },
      );
      system.writeConfig(
        system.standardConfig([`lcmaps_db_file = ${db}`, 'lcmaps_get_account_policy = glexec_get_account']),
      );
      const result = system.run(['--check'], { as: { name: 'root', uid: 0, gid: 0 } });
      assert.match(
        result.stdout,
        /^error +lcmaps: backend builtin lacks the plug-in\(s\) scas \(lcmaps_scas_client\.mod\) of .* \(fix: set lcmaps_backend = library, so that the real LCMAPS runs them\)$/m,
      );
      assert.notEqual(result.status, 0);
    });

    it('a relative plug-in name without `path =` is a 202', () => {
      expectRefusal(
        runWith([], (text) => text.replace('path = /usr/lib/lcmaps\n', '')),
        202,
        /^glexec: .* line \d+: module 'verify' \(lcmaps_verify_proxy\.mod\) is not an absolute path and the file has no 'path ='/,
      );
    });
  });
});
