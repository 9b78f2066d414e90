/**
 * The real LCMAPS VOMS plug-ins (Debian's lcmaps-plugins-voms) as the judge of glexec's built-in
 * VOMS mapping, as test/e2e/lcmaps-oracle.test.ts does for the basic plug-ins: each case gives the
 * same proxy (real ACs from voms-proxy-fake), lcmaps.db, group-mapfile, grid-mapfile, gridmapdir
 * and vomsdir to LCMAPS (run by the installed lcmaps-helper) and to glexec run by the pilot with
 * an `id` payload, and compares uid, primary gid, groups, the gridmapdir afterwards and the
 * refusal class.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { encodeLeaseName } from '../../src/mapping/pool';
import { verifyProxyChain } from '../../src/proxy/verify';
import { type Credential, installCa, makeCa, makeProxy, makeUserCert, writeProxyFile } from '../helpers/pki';
import { expectedFrom, idPayloadOutcome, lcmapsHelperOutcome, leasesIn, type Outcome } from '../helpers/oracle';
import { isRoot, TestSystem } from '../helpers/system';
import { missingTool } from '../helpers/tools';
import { makeVomsProxy, makeVomsServer, type VomsServer, writeLsc } from '../helpers/voms';

const LIBRARY = '/usr/lib/x86_64-linux-gnu/liblcmaps.so.0';
const PLUGINS = [
  'voms_localgroup',
  'voms_poolgroup',
  'voms_localaccount',
  'voms_poolaccount',
  'voms',
  'ban_fqan',
  'verify_proxy',
];
const missing = [LIBRARY, ...PLUGINS.map((name) => `/usr/lib/lcmaps/lcmaps_${name}.mod`)].filter(
  (path) => !existsSync(path),
);
const skip: string | false = !isRoot
  ? 'needs root: runs LCMAPS and glexec as real users'
  : missing.length > 0
    ? `needs Debian's LCMAPS VOMS plug-ins (missing ${missing.join(', ')}): apt-get install liblcmaps0 lcmaps-plugins-voms lcmaps-plugins-verify-proxy`
    : missingTool('voms-proxy-fake', 'openssl');

const JANE = '/C=NL/O=Example/CN=Jane Doe';
const JOHN = '/C=NL/O=Example/CN=John Roe';
const OTHER_DN = '/C=NL/O=Example/CN=Somebody Else';

type ProxyName =
  | 'vo'
  | 'pilot'
  | 'prod'
  | 'longForm'
  | 'subgroup'
  | 'unknownVo'
  | 'unvouched'
  | 'expired'
  | 'garbage'
  | 'truncated'
  | 'nested'
  | 'forged'
  | 'foreign'
  | 'crossVo'
  | 'targeted';

interface World {
  readonly vo: string;
  readonly pilot: string;
  readonly prod: string;
  readonly extra: string;
  readonly local: string;
  readonly dnAccount: string;
  readonly pool: string;
  readonly poolAccounts: readonly string[];
  readonly smallPool: string;
  readonly smallPoolAccounts: readonly string[];
  readonly gridmap: string;
  readonly groupmap: string;
  readonly banmap: string;
  readonly gridmapdir: string;
  readonly groupPool: string;
  readonly groupPoolGroups: readonly string[];
  readonly groupmapdir: string;
  readonly vomsdir: string;
}

interface Case {
  readonly name: string;
  readonly proxy: ProxyName;
  /** Replaces the standard module lines (LABEL = "file options"). */
  readonly modules?: (w: World) => string[];
  readonly policy?: string[];
  readonly gridmap?: (w: World) => string[];
  readonly groupmap?: (w: World) => string[];
  readonly banmap?: string[];
  /** Leases made before the run: [lease name, account]. */
  readonly leases?: (w: World) => [string, string][];
  /** Group leases made before the run: [lease name, group]. */
  readonly groupLeases?: (w: World) => [string, string][];
}

const standardModules = (w: World): Record<string, string> => ({
  verifyproxy: `"lcmaps_verify_proxy.mod" "-certdir ${system.certdir}" "--allow-limited-proxy"`,
  vomslocalgroup: `"lcmaps_voms_localgroup.mod" "-groupmapfile ${w.groupmap}" "-mapmin 0"`,
  vomslocalaccount: `"lcmaps_voms_localaccount.mod" "-gridmapfile ${w.gridmap}" "-use_voms_gid"`,
  vomspoolaccount: `"lcmaps_voms_poolaccount.mod" "-gridmapfile ${w.gridmap}" "-gridmapdir ${w.gridmapdir}" "-do_not_use_secondary_gids"`,
  localaccount: `"lcmaps_localaccount.mod" "-gridmapfile ${w.gridmap}"`,
  poolaccount: `"lcmaps_poolaccount.mod" "-gridmapfile ${w.gridmap}" "-gridmapdir ${w.gridmapdir}"`,
  posix_enf: '"lcmaps_posix_enf.mod" "-maxuid 1" "-maxpgid 1" "-maxsgid 32"',
});

/** The gLExec worker-node policy YAIM and Quattor wrote. */
const YAIM = [
  'verifyproxy -> vomslocalgroup',
  'vomslocalgroup -> vomslocalaccount | localaccount',
  'vomslocalaccount -> posix_enf | vomspoolaccount',
  'vomspoolaccount -> posix_enf | localaccount',
  'localaccount -> posix_enf | poolaccount',
  'poolaccount -> posix_enf',
];

const standardGroupmap = (w: World): string[] => [
  `"/testvo/Role=pilot" ${w.pilot}`,
  `"/testvo/prod/Role=production" ${w.prod}`,
  `"/testvo" ${w.vo}`,
  `"/othervo/Role=pilot" ${w.pilot}`,
];
const standardGridmap = (w: World): string[] => [
  `"/testvo/Role=pilot" ${w.local}`,
  `"/othervo/Role=pilot" ${w.local}`,
  `"/testvo/prod/Role=production" .${w.pool}`,
  `"${JANE}" ${w.dnAccount}`,
  `"${JOHN}" ${w.dnAccount}`,
];
/** One module in place of the standard one of that label. */
const withModule =
  (label: string, line: (w: World) => string) =>
  (w: World): string[] =>
    Object.entries({ ...standardModules(w), [label]: line(w) }).map(([name, text]) => `${name} = ${text}`);

/** withModule, and posix_enf allowing two primary gids (one from VOMS, one from the account). */
const withModuleTwoPgids =
  (label: string, line: (w: World) => string) =>
  (w: World): string[] =>
    withModule(
      label,
      line,
    )(w).map((text) =>
      text.startsWith('posix_enf = ')
        ? 'posix_enf = "lcmaps_posix_enf.mod" "-maxuid 1" "-maxpgid 2" "-maxsgid 32"'
        : text,
    );

const poolGroupModules = (w: World): string[] => [
  ...Object.entries(standardModules(w)).map(([name, text]) =>
    name === 'posix_enf'
      ? `${name} = "lcmaps_posix_enf.mod" "-maxuid 1" "-maxpgid 2" "-maxsgid 32"`
      : `${name} = ${text}`,
  ),
  `vomspoolgroup = "lcmaps_voms_poolgroup.mod" "-groupmapfile ${w.groupmap}" "-groupmapdir ${w.groupmapdir}"`,
];
const POOLGROUP_POLICY = ['verifyproxy -> vomspoolgroup', 'vomspoolgroup -> localaccount', 'localaccount -> posix_enf'];

const CASES: Case[] = [
  {
    name: 'YAIM policy: /testvo alone gets the VO group and the DN account (two primary gids: posix_enf refuses)',
    proxy: 'vo',
  },
  {
    name: 'YAIM policy: /testvo/Role=pilot first maps the pilot account with the VOMS groups in order',
    proxy: 'pilot',
  },
  { name: 'YAIM policy: /testvo/prod/Role=production leases a pool account named by DN and group', proxy: 'prod' },
  { name: 'YAIM policy: the long form /testvo/Role=NULL/Capability=NULL does not match "/testvo"', proxy: 'longForm' },
  { name: 'YAIM policy: an FQAN no file names falls back to the DN', proxy: 'subgroup' },
  { name: 'YAIM policy: an AC from a VO without an .lsc is dropped, the DN rules still apply', proxy: 'unknownVo' },
  { name: 'YAIM policy: an AC whose signer nothing vouches for is dropped', proxy: 'unvouched' },
  { name: 'YAIM policy: an expired AC is dropped', proxy: 'expired' },
  { name: 'hostile AC: an extension that is not an AC list is ignored, the DN maps', proxy: 'garbage' },
  { name: 'hostile AC: a truncated AC is ignored', proxy: 'truncated' },
  { name: "hostile AC: an FQAN of another VO than the AC's is dropped", proxy: 'crossVo' },
  // The VOMS library compares the targets with this host's DNS name, which the test machine lacks.
  { name: 'an AC restricted to target hosts (this host by its short name) is dropped', proxy: 'targeted' },
  { name: 'hostile AC: 3000 levels of nesting are ignored', proxy: 'nested' },
  { name: 'hostile AC: an FQAN changed after signing fails the signature', proxy: 'forged' },
  { name: "hostile AC: another user's AC (the holder is not the proxy's EEC) is dropped", proxy: 'foreign' },
  {
    name: 'a full pool for the first FQAN falls through to the pool of the next',
    proxy: 'pilot',
    gridmap: (w) => [`"/testvo/Role=pilot" .${w.smallPool}`, `"/testvo" .${w.pool}`],
    leases: (w) => [[encodeLeaseName(OTHER_DN), w.smallPoolAccounts[0] ?? '']],
  },
  {
    name: 'the lease name carries the secondary groups without -do_not_use_secondary_gids',
    proxy: 'pilot',
    gridmap: (w) => [`"/testvo/Role=pilot" .${w.pool}`],
    modules: withModule(
      'vomspoolaccount',
      (w) => `"lcmaps_voms_poolaccount.mod" "-gridmapfile ${w.gridmap}" "-gridmapdir ${w.gridmapdir}"`,
    ),
  },
  {
    name: 'voms_localaccount: an FQAN mapped to an account that does not exist fails the module',
    proxy: 'pilot',
    gridmap: (w) => [`"/testvo/Role=pilot" ${w.local}-none`, `"/testvo" ${w.local}`, `"${JANE}" ${w.dnAccount}`],
  },
  {
    name: 'voms_localaccount skips pool entries and takes the next FQAN',
    proxy: 'pilot',
    gridmap: (w) => [`"/testvo/Role=pilot" .${w.pool}`, `"/testvo" ${w.local}`],
    policy: ['verifyproxy -> vomslocalgroup', 'vomslocalgroup -> vomslocalaccount', 'vomslocalaccount -> posix_enf'],
  },
  {
    name: 'voms_localaccount without -use_voms_gid adds the account groups after the VOMS ones',
    proxy: 'pilot',
    modules: withModule('vomslocalaccount', (w) => `"lcmaps_voms_localaccount.mod" "-gridmapfile ${w.gridmap}"`),
  },
  {
    name: 'voms_localaccount -use_voms_gid --add-primary-gid-from-mapped-account adds the account gid as a second primary',
    proxy: 'pilot',
    modules: withModuleTwoPgids(
      'vomslocalaccount',
      (w) =>
        `"lcmaps_voms_localaccount.mod" "-gridmapfile ${w.gridmap}" "-use_voms_gid" "--add-primary-gid-from-mapped-account"`,
    ),
  },
  {
    name: 'voms_localaccount --do-not-add-secondary-gids-from-mapped-account keeps only the account primary gid of its own',
    proxy: 'pilot',
    modules: withModuleTwoPgids(
      'vomslocalaccount',
      (w) =>
        `"lcmaps_voms_localaccount.mod" "-gridmapfile ${w.gridmap}" "--do-not-add-secondary-gids-from-mapped-account"`,
    ),
  },
  {
    name: 'voms_poolaccount --add-primary-gid-as-secondary-gid-from-mapped-account adds the pool group as a secondary gid',
    proxy: 'prod',
    modules: withModule(
      'vomspoolaccount',
      (w) =>
        `"lcmaps_voms_poolaccount.mod" "-gridmapfile ${w.gridmap}" "-gridmapdir ${w.gridmapdir}" "--add-primary-gid-as-secondary-gid-from-mapped-account"`,
    ),
  },
  {
    name: 'voms_poolaccount --use-account-gid adds the pool account groups after the VOMS ones',
    proxy: 'prod',
    modules: withModuleTwoPgids(
      'vomspoolaccount',
      (w) =>
        `"lcmaps_voms_poolaccount.mod" "-gridmapfile ${w.gridmap}" "-gridmapdir ${w.gridmapdir}" "--use-account-gid"`,
    ),
  },
  {
    name: 'voms_localaccount with the VOMS gids but no group for the first FQAN has no primary gid',
    proxy: 'pilot',
    groupmap: (w) => [`"/testvo" ${w.vo}`],
  },
  {
    name: 'voms_poolaccount leases without a primary gid before it, but no primary gid means no mapping',
    proxy: 'prod',
    policy: ['verifyproxy -> vomspoolaccount', 'vomspoolaccount -> posix_enf'],
  },
  {
    name: 'voms_poolaccount -do_not_require_primary_gid leases the same',
    proxy: 'prod',
    policy: ['verifyproxy -> vomspoolaccount', 'vomspoolaccount -> posix_enf'],
    modules: withModule(
      'vomspoolaccount',
      (w) =>
        `"lcmaps_voms_poolaccount.mod" "-gridmapfile ${w.gridmap}" "-gridmapdir ${w.gridmapdir}" "-do_not_require_primary_gid"`,
    ),
  },
  {
    name: 'voms_poolaccount --require-primary-gid does not lease without a primary gid',
    proxy: 'prod',
    policy: ['verifyproxy -> vomspoolaccount', 'vomspoolaccount -> posix_enf'],
    modules: withModule(
      'vomspoolaccount',
      (w) =>
        `"lcmaps_voms_poolaccount.mod" "-gridmapfile ${w.gridmap}" "-gridmapdir ${w.gridmapdir}" "--require-primary-gid"`,
    ),
  },
  {
    name: 'voms_localgroup -mapall fails when one FQAN has no group, and its groups are carried on',
    proxy: 'pilot',
    groupmap: (w) => [`"/testvo/Role=pilot" ${w.pilot}`, `"/testvo" ${w.vo}`],
    modules: withModule(
      'vomslocalgroup',
      (w) => `"lcmaps_voms_localgroup.mod" "-groupmapfile ${w.groupmap}" "-mapall"`,
    ),
  },
  {
    name: 'voms_localgroup -mapmin 3 fails with two groups mapped, and its groups are carried on',
    proxy: 'prod',
    modules: withModule(
      'vomslocalgroup',
      (w) => `"lcmaps_voms_localgroup.mod" "-groupmapfile ${w.groupmap}" "-mapmin 3"`,
    ),
  },
  {
    name: 'voms_localgroup --map-to-secondary-groups gives no primary gid',
    proxy: 'pilot',
    modules: withModule(
      'vomslocalgroup',
      (w) => `"lcmaps_voms_localgroup.mod" "-groupmapfile ${w.groupmap}" "--map-to-secondary-groups"`,
    ),
  },
  {
    name: 'a wildcard "/testvo/*" matches the long form but not /testvo itself',
    proxy: 'longForm',
    groupmap: (w) => [`"/testvo/*" ${w.extra}`],
    gridmap: (w) => [`"/testvo/*" ${w.local}`, `"${JANE}" ${w.dnAccount}`],
  },
  {
    name: 'a wildcard "/testvo*" matches /testvo',
    proxy: 'vo',
    gridmap: (w) => [`"/testvo*" ${w.local}`, `"${JANE}" ${w.dnAccount}`],
  },
  {
    name: 'voms_poolgroup leases a pool group per FQAN, named by the encoded FQAN; the first is the primary gid',
    proxy: 'pilot',
    groupmap: (w) => [
      `"/testvo/Role=pilot" .${w.groupPool}`,
      `"/testvo" .${w.groupPool}`,
      `"/testvo/prod/Role=production" ${w.prod}`,
    ],
    modules: poolGroupModules,
    policy: POOLGROUP_POLICY,
  },
  {
    name: 'voms_poolgroup: a first FQAN without a pool group gives no primary gid',
    proxy: 'prod',
    groupmap: (w) => [`"/testvo" .${w.groupPool}`],
    modules: poolGroupModules,
    policy: POOLGROUP_POLICY,
  },
  {
    name: 'voms_poolgroup: a full group pool leaves that FQAN unmapped',
    proxy: 'pilot',
    groupmap: (w) => [`"/testvo/Role=pilot" .${w.groupPool}`, `"/testvo" .${w.groupPool}`],
    modules: poolGroupModules,
    policy: POOLGROUP_POLICY,
    groupLeases: (w) => [[encodeLeaseName('/othervo'), w.groupPoolGroups[0] ?? '']],
  },
  {
    name: 'ban_fqan refuses a proxy with a banned FQAN',
    proxy: 'pilot',
    banmap: ['"/testvo/prod/Role=production"'],
    modules: (w) => [
      ...Object.entries(standardModules(w)).map(([name, text]) => `${name} = ${text}`),
      `banfqan = "lcmaps_ban_fqan.mod" "-banmapfile ${w.banmap}"`,
    ],
    policy: ['verifyproxy -> banfqan', 'banfqan -> vomslocalgroup', ...YAIM.slice(1)],
  },
  {
    name: 'verify_proxy --max-voms-ttl refuses an AC valid for longer',
    proxy: 'pilot',
    modules: withModule(
      'verifyproxy',
      () => `"lcmaps_verify_proxy.mod" "-certdir ${system.certdir}" "--max-voms-ttl" "0d-01:00"`,
    ),
  },
  {
    name: 'lcmaps_voms.mod, deprecated, succeeds and changes nothing',
    proxy: 'expired',
    modules: (w) => [
      ...Object.entries(standardModules(w)).map(([name, text]) => `${name} = ${text}`),
      `voms = "lcmaps_voms.mod" "-vomsdir ${w.vomsdir}" "-certdir ${system.certdir}"`,
    ],
    policy: ['verifyproxy -> voms', 'voms -> localaccount', 'localaccount -> posix_enf'],
  },
];

let system: TestSystem;
let world: World;
let helper: string;
const proxies = new Map<ProxyName, string>();

/** `lease -> account` in the gridmapdir, then `lease -> group` in the groupmapdir. */
function gridmapdirState(): string[] {
  return [...leasesIn(world.gridmapdir), ...leasesIn(world.groupmapdir)];
}

function prepare(c: Case): string {
  const modules = c.modules?.(world) ?? withModule('posix_enf', () => standardModules(world).posix_enf ?? '')(world);
  const db = join(system.root, 'etc/voms-lcmaps.db');
  writeFileSync(
    db,
    ['path = /usr/lib/lcmaps', ...modules, '', 'glexec_get_account:', ...(c.policy ?? YAIM), ''].join('\n'),
    {
      mode: 0o644,
    },
  );
  writeFileSync(world.gridmap, `${(c.gridmap ?? standardGridmap)(world).join('\n')}\n`, { mode: 0o644 });
  writeFileSync(world.groupmap, `${(c.groupmap ?? standardGroupmap)(world).join('\n')}\n`, { mode: 0o644 });
  writeFileSync(world.banmap, `${(c.banmap ?? []).join('\n')}\n`, { mode: 0o644 });
  rmSync(world.gridmapdir, { recursive: true, force: true });
  mkdirSync(world.gridmapdir, { mode: 0o755 });
  for (const account of [...world.poolAccounts, ...world.smallPoolAccounts])
    writeFileSync(join(world.gridmapdir, account), '', { mode: 0o644 });
  rmSync(world.groupmapdir, { recursive: true, force: true });
  mkdirSync(world.groupmapdir, { mode: 0o755 });
  for (const group of world.groupPoolGroups) writeFileSync(join(world.groupmapdir, group), '', { mode: 0o644 });
  for (const [lease, account] of c.leases?.(world) ?? [])
    linkSync(join(world.gridmapdir, account), join(world.gridmapdir, lease));
  for (const [lease, group] of c.groupLeases?.(world) ?? [])
    linkSync(join(world.groupmapdir, group), join(world.groupmapdir, lease));
  return db;
}

function runOracle(c: Case): Outcome {
  const db = prepare(c);
  const result = spawnSync(helper, [LIBRARY, 'glexec_get_account'], {
    input: readFileSync(proxies.get(c.proxy) ?? ''),
    env: {
      PATH: '/usr/bin:/bin',
      LCMAPS_DB_FILE: db,
      LCMAPS_DEBUG_LEVEL: '3',
      X509_CERT_DIR: system.certdir,
      X509_VOMS_DIR: world.vomsdir,
    },
    encoding: 'utf8',
  });
  return lcmapsHelperOutcome(result, gridmapdirState());
}

function runGlexec(c: Case, backend: 'builtin' | 'library' = 'builtin'): Outcome {
  const db = prepare(c);
  system.writeConfig(
    system.standardConfig([
      `lcmaps_db_file = ${db}`,
      'lcmaps_get_account_policy = glexec_get_account',
      `vomsdir = ${world.vomsdir}`,
      `lcmaps_backend = ${backend}`,
    ]),
  );
  const result = system.run(['/usr/bin/id'], { env: { GLEXEC_CLIENT_CERT: proxies.get(c.proxy) } });
  return idPayloadOutcome(result, gridmapdirState());
}

/** The outcome with each pool account (its uid, its name in the gridmapdir) replaced by its pool's name. */
function withPoolsOnly(outcome: Outcome): unknown {
  const pools = [
    [world.pool, world.poolAccounts],
    [world.smallPool, world.smallPoolAccounts],
    [world.groupPool, world.groupPoolGroups],
  ] as const;
  const groupPoolGids = new Map(world.groupPoolGroups.map((group) => [gidOf(group), world.groupPool]));
  const asPool = (gid: number): number | string => groupPoolGids.get(gid) ?? gid;
  const poolOf = (account: string): string | undefined => pools.find(([, accounts]) => accounts.includes(account))?.[0];
  const poolOfUid = (uid: number): string | undefined =>
    pools.find(([, accounts]) => accounts.some((account) => uidOf(account) === uid))?.[0];
  const gridmapdir = outcome.gridmapdir.map((line) => {
    const [lease, account] = line.split(' -> ');
    return `${lease} -> ${poolOf(account ?? '') ?? account}`;
  });
  if (!('mapped' in outcome)) return { ...outcome, gridmapdir };
  const { uid, gid, groups } = outcome.mapped;
  return {
    mapped: { uid: poolOfUid(uid) ?? uid, gid: asPool(gid), groups: groups.map(asPool).map(String).sort() },
    gridmapdir,
  };
}

const gidOf = (group: string): number =>
  Number(spawnSync('getent', ['group', group], { encoding: 'utf8' }).stdout.split(':')[2]);

const uidOf = (name: string): number => Number(spawnSync('id', ['-u', name], { encoding: 'utf8' }).stdout.trim());

/** The content of the VOMS extension of a proxy file's first certificate. */
function vomsExtensionOf(path: string): Buffer {
  const proxy = verifyProxyChain(readFileSync(path, 'latin1'), {
    certdir: system.certdir,
    now: new Date(),
    requirePrivateKey: false,
  });
  assert.ok(proxy.voms, path);
  return Buffer.from(proxy.voms.extension);
}

const describeOutcome = (outcome: Outcome): string =>
  'mapped' in outcome
    ? `${JSON.stringify(outcome.mapped)} ${outcome.gridmapdir.join(' ')}`
    : `refused ${outcome.refused}: ${outcome.detail.trim().split('\n').slice(-3).join(' | ')}`;

describe('the built-in VOMS mapping agrees with the real LCMAPS VOMS plug-ins', { skip }, () => {
  before(() => {
    system = TestSystem.create();
    helper = join(system.root, 'prefix/lib/glexec/lcmaps-helper');
    const pkiDir = join(system.root, 'voms-pki');
    mkdirSync(pkiDir, { mode: 0o700 });
    const ca = makeCa(join(pkiDir, 'ca'), { subject: '/C=NL/O=Example/CN=VOMS Oracle Test CA' });
    installCa(ca, system.certdir);
    const user: Credential = makeUserCert(ca, { subject: JANE, keyType: 'rsa' });
    const server = makeVomsServer(ca, 'voms.example.org');
    const stranger: VomsServer = makeVomsServer(ca, 'voms2.example.org');
    const vomsdir = join(system.root, 'etc/vomsdir');
    writeLsc(vomsdir, 'testvo', server);
    const write = (name: ProxyName, options: Parameters<typeof makeVomsProxy>[3], signer = server): void => {
      const path = makeVomsProxy(user, signer, system.certdir, options, join(system.scratch, `voms-${name}.pem`));
      chownSync(path, system.pilot.uid, system.pilot.gid);
      chmodSync(path, 0o600);
      proxies.set(name, path);
    };
    write('vo', { vo: 'testvo', fqans: ['/testvo'] });
    write('pilot', { vo: 'testvo', fqans: ['/testvo/Role=pilot', '/testvo', '/testvo/prod/Role=production'] });
    write('prod', { vo: 'testvo', fqans: ['/testvo/prod/Role=production', '/testvo'] });
    write('longForm', { vo: 'testvo', fqans: ['/testvo/Role=NULL/Capability=NULL'] });
    write('subgroup', { vo: 'testvo', fqans: ['/testvo/other'] });
    write('unknownVo', { vo: 'othervo', fqans: ['/othervo/Role=pilot'] });
    // Another host certificate of the same CA claims to be voms.example.org: the .lsc names another DN.
    write('unvouched', { vo: 'testvo', fqans: ['/testvo/Role=pilot'] }, { ...stranger, host: 'voms.example.org' });
    write('expired', { vo: 'testvo', fqans: ['/testvo/Role=pilot'], pastAcSeconds: 100000 });
    write('crossVo', { vo: 'testvo', fqans: ['/othervo/Role=pilot'] });
    write('targeted', { vo: 'testvo', fqans: ['/testvo/Role=pilot'], targets: [hostname()] });

    // Hostile extensions in proxies that openssl signs properly: only the AC is bad.
    const realAc = vomsExtensionOf(proxies.get('pilot') ?? '');
    const forged = Buffer.from(realAc);
    forged.write('/testvo/Role=admin', forged.indexOf('/testvo/Role=pilot'), 'latin1');
    const nested = Buffer.concat(Array.from({ length: 3000 }, () => Buffer.from([0x30, 0x80])));
    const john = makeUserCert(ca, { subject: JOHN, keyType: 'rsa' });
    const withExtension = (name: ProxyName, value: Uint8Array, holder: Credential = user): void => {
      const path = join(system.scratch, `voms-${name}.pem`);
      writeProxyFile(
        path,
        makeProxy(holder, {
          kind: 'rfc3820',
          extraExtensions: [`1.3.6.1.4.1.8005.100.100.5 = DER:${Buffer.from(value).toString('hex')}`],
        }),
      );
      chownSync(path, system.pilot.uid, system.pilot.gid);
      chmodSync(path, 0o600);
      proxies.set(name, path);
    };
    withExtension('garbage', Buffer.from('30030201ff', 'hex'));
    withExtension('truncated', realAc.subarray(0, Math.floor(realAc.byteLength / 2)));
    withExtension('nested', nested);
    withExtension('forged', forged);
    withExtension('foreign', realAc, john);

    const extra = system.addGroup('vextra');
    world = {
      vo: system.addGroup('vvo'),
      pilot: system.addGroup('vpilot'),
      prod: system.addGroup('vprod'),
      extra,
      local: system.addUser('vlocal', [extra]).name,
      dnAccount: system.addUser('vdn', []).name,
      pool: `${system.prefix}vp`,
      poolAccounts: system.addPoolAccounts('vp', 2),
      smallPool: `${system.prefix}vq`,
      smallPoolAccounts: system.addPoolAccounts('vq', 1),
      gridmap: join(system.root, 'etc/voms-grid-mapfile'),
      groupmap: join(system.root, 'etc/voms-group-mapfile'),
      banmap: join(system.root, 'etc/voms-ban-fqan'),
      gridmapdir: join(system.root, 'etc/voms-gridmapdir'),
      groupPool: `${system.prefix}vg`,
      groupPoolGroups: [system.addGroup('vg001'), system.addGroup('vg002')],
      groupmapdir: join(system.root, 'etc/voms-groupmapdir'),
      vomsdir,
    };
  });
  after(() => system?.tearDown());

  for (const c of CASES) {
    it(c.name, () => {
      const oracle = runOracle(c);
      const glexec = runGlexec(c);
      const summary = `LCMAPS: ${describeOutcome(oracle)}\nglexec: ${describeOutcome(glexec)}`;
      // Which free account of a pool: LCMAPS takes readdir order, glexec the lowest name (README,
      // `lowest-free-pool-account`); so pool accounts compare as their pool.
      assert.deepEqual(withPoolsOnly(glexec), withPoolsOnly(expectedFrom(oracle, glexec)), summary);
    });
  }

  // The library backend runs the real plug-ins with glexec's vomsdir as X509_VOMS_DIR.
  for (const c of CASES.filter((candidate) => candidate.name.startsWith('YAIM policy'))) {
    it(`library backend: ${c.name}`, () => {
      const oracle = runOracle(c);
      const glexec = runGlexec(c, 'library');
      const summary = `LCMAPS: ${describeOutcome(oracle)}\nglexec: ${describeOutcome(glexec)}`;
      assert.deepEqual(glexec, expectedFrom(oracle, glexec), summary);
    });
  }

  it('the epilogue gets the FQANs the policy used in GLEXEC_EPILOG_TARGET_FQANS, and none for a DN mapping', () => {
    const dir = join(system.root, 'voms-epilogues');
    mkdirSync(dir, { mode: 0o755, recursive: true });
    const out = join(system.scratch, 'voms-epilogue-fqans');
    const epilogue = join(dir, 'fqans.sh');
    writeFileSync(epilogue, `#!/bin/sh\nprintf '%s' "\${GLEXEC_EPILOG_TARGET_FQANS-unset}" > ${out}\n`, {
      mode: 0o755,
    });
    const db = prepare(CASES[1] as Case);
    const configWith = (extra: string[]): void =>
      system.writeConfig(
        system.standardConfig([
          `lcmaps_db_file = ${db}`,
          'lcmaps_get_account_policy = glexec_get_account',
          `vomsdir = ${world.vomsdir}`,
          `epilogue = ${epilogue}`,
          ...extra,
        ]),
      );
    configWith([]);
    const pilot = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: proxies.get('pilot') } });
    assert.equal(pilot.status, 0, pilot.stderr);
    assert.equal(readFileSync(out, 'utf8'), '/testvo/Role=pilot,/testvo,/testvo/prod/Role=production');
    const dnOnly = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: proxies.get('subgroup') } });
    assert.equal(dnOnly.status, 0, dnOnly.stderr);
    assert.equal(readFileSync(out, 'utf8'), 'unset');
  });

  it('the completion record names the FQANs the policy used, and dropped ACs are logged with the reason', () => {
    system.clearLog();
    const mapped = runGlexec(CASES[1] as Case);
    assert.ok('mapped' in mapped);
    const record = system.logRecords().find((entry) => entry['msg'] === 'job completed');
    assert.deepEqual(record?.['fqans'], ['/testvo/Role=pilot', '/testvo', '/testvo/prod/Role=production']);
    system.clearLog();
    runGlexec(CASES[6] as Case);
    const dropped = system.logRecords().find((entry) => entry['msg'] === 'VOMS AC dropped');
    assert.match(String(dropped?.['reason']), /voms2\.example\.org .* is not listed in .*voms\.example\.org\.lsc/);
  });
});
