import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authorizationError, systemError } from '../../src/errors';
import { parseLcmapsDb } from '../../src/lcmaps/db';
import {
  type AccountMapping,
  type MappingEnvironment,
  type MappingInput,
  compileAccountPolicies,
  evaluateAccountPolicies,
  mapAccount,
  moduleKindOf,
  parsePolicyNames,
  parseTimePeriod,
} from '../../src/lcmaps/modules';
import type { LeaseOptions } from '../../src/mapping/pool';
import { parseGridMap } from '../../src/mapping/gridmap';
import { thrown } from '../helpers/assertions';

const FILE = '/etc/lcmaps/lcmaps-glexec.db';
const JANE = '/C=NL/O=Example/CN=Jane Doe';
const POOLED = '/C=NL/O=Example/CN=Pool User';
const GRIDMAP = '/etc/grid-security/grid-mapfile';
const HOUR = 3600 * 1000;
const NOW = new Date('2024-05-01T12:00:00Z');

/** A gLExec-on-the-WN lcmaps.db as EMI deployment guides show it (localaccount, then pool accounts). */
const EMI_GLEXEC_DB = `
# where to look for modules
path = /usr/lib64/lcmaps

verifyproxy = "lcmaps_verify_proxy.mod"
              " -certdir /etc/grid-security/certificates"
              " --allow-limited-proxy"

localaccount = "lcmaps_localaccount.mod"
               " -gridmapfile ${GRIDMAP}"

poolaccount = "lcmaps_poolaccount.mod"
              " -override_inconsistency"
              " -gridmapfile ${GRIDMAP}"
              " -gridmapdir /etc/grid-security/gridmapdir"

posix_enf = "lcmaps_posix_enf.mod"
            " -maxuid 1"
            " -maxpgid 1"
            " -maxsgid 32"

glexec_get_account:
verifyproxy -> localaccount
localaccount -> posix_enf | poolaccount
poolaccount -> posix_enf
`;

interface Recorder extends MappingEnvironment {
  readonly leases: { gridmapdir: string; pool: string; dn: string; options: LeaseOptions }[];
  readonly gridmapReads: string[];
}

/**
 * A made-up account database: every name is an account whose uid is 2000 plus its length, in its
 * own group (the same number) and group 3000; group names are `g<gid>`.
 */
const fakeAccounts: Pick<MappingEnvironment, 'lookupAccount' | 'lookupGroup'> = {
  lookupAccount: (nameOrUid) => {
    const name = typeof nameOrUid === 'number' ? 'x'.repeat(nameOrUid - 2000) : nameOrUid;
    const uid = 2000 + name.length;
    return { name, uid, gid: uid, groups: [uid, 3000] };
  },
  lookupGroup: (nameOrGid) =>
    typeof nameOrGid === 'number' ? nameOrGid : /^g([0-9]+)$/.test(nameOrGid) ? Number(nameOrGid.slice(1)) : undefined,
};

function environment(gridmapText: string, lease: (pool: string) => string = (pool) => `${pool}001`): Recorder {
  const leases: Recorder['leases'] = [];
  const gridmapReads: string[] = [];
  return {
    ...fakeAccounts,
    leases,
    gridmapReads,
    readGridMap(path) {
      gridmapReads.push(path);
      return parseGridMap(gridmapText, path);
    },
    leasePoolAccount(gridmapdir, pool, dn, options) {
      leases.push({ gridmapdir, pool, dn, options });
      return lease(pool);
    },
  };
}

const GRIDMAP_TEXT = [`"${JANE}" jdoe`, `"${POOLED}" .atlas`].join('\n');
const input = (overrides: Partial<MappingInput> = {}, proxy: Partial<MappingInput['proxy']> = {}): MappingInput => ({
  identityDn: JANE,
  now: NOW,
  ...overrides,
  proxy: { limited: false, notAfter: new Date(NOW.getTime() + 12 * HOUR), ...proxy },
});

const db = (text: string) => parseLcmapsDb(text, FILE);
/** The account, policy and module of a mapping (its ids come from the made-up account database). */
const summary = (mapping: AccountMapping) => ({ account: mapping.account, policy: mapping.policy, via: mapping.via });
/** A one-policy db: verify_proxy with `options`, then a localaccount. */
const verifyDb = (options: string) =>
  db(
    `verifyproxy = "lcmaps_verify_proxy.mod ${options}"\nlocalaccount = "lcmaps_localaccount.mod -gridmapfile ${GRIDMAP}"\nglexec:\nverifyproxy -> localaccount\n`,
  );

describe('recognising modules by their plug-in file', () => {
  it('the .mod name, the liblcmaps .so name, a versioned .so and a directory all count', () => {
    assert.equal(moduleKindOf('lcmaps_verify_proxy.mod'), 'verify_proxy');
    assert.equal(moduleKindOf('/usr/lib64/lcmaps/liblcmaps_verify_proxy.so'), 'verify_proxy');
    assert.equal(moduleKindOf('liblcmaps_localaccount.so.0'), 'localaccount');
    assert.equal(moduleKindOf('lcmaps_poolaccount.mod'), 'poolaccount');
    assert.equal(moduleKindOf('lcmaps_posix_enf.mod'), 'posix_enf');
    assert.equal(moduleKindOf('lcmaps_dummy_good.mod'), 'dummy_good');
  });

  it("OSG's numbered copy of a plug-in is the same module", () => {
    assert.equal(moduleKindOf('lcmaps_verify_proxy2.mod'), 'verify_proxy');
  });

  it('the VOMS plug-ins are recognised by their files', () => {
    assert.equal(moduleKindOf('lcmaps_voms_localaccount.mod'), 'voms_localaccount');
    assert.equal(moduleKindOf('/usr/lib64/lcmaps/liblcmaps_voms_poolaccount.so'), 'voms_poolaccount');
    assert.equal(moduleKindOf('lcmaps_voms_localgroup.mod'), 'voms_localgroup');
    assert.equal(moduleKindOf('lcmaps_voms.mod'), 'voms');
    assert.equal(moduleKindOf('lcmaps_ban_fqan.mod'), 'ban_fqan');
  });

  it('other plug-ins and look-alikes are not recognised', () => {
    assert.equal(moduleKindOf('lcmaps_scas_client.mod'), undefined);
    assert.equal(moduleKindOf('lcmaps_glexec_tracking.mod'), undefined);
    assert.equal(moduleKindOf('lcmaps_verify_proxy.mod.bak'), undefined);
    assert.equal(moduleKindOf('my_lcmaps_localaccount.mod'), undefined);
  });
});

describe('checking the modules a policy uses', () => {
  it('an unknown plug-in in the selected policy is a 202 naming file, line, module and plug-in', () => {
    const error = thrown(() =>
      compileAccountPolicies(
        db(
          'tracking = "lcmaps_glexec_tracking.mod" "-exec /usr/sbin/glexec_monitor"\ngood = "lcmaps_dummy_good.mod"\nglexec:\ngood -> tracking\n',
        ),
        'glexec',
      ),
    );
    assert.equal(error.exitCode, 202);
    assert.equal(error.code, 'lcmaps.unknown_module');
    assert.match(
      error.message,
      /^\/etc\/lcmaps\/lcmaps-glexec\.db line 1: module 'tracking' \(lcmaps_glexec_tracking\.mod\): glexec has no built-in equivalent of this plug-in \(it has lcmaps_verify_proxy\.mod, /,
    );
  });

  it('an unknown plug-in used only by another policy is not looked at', () => {
    const text =
      'ban = "lcmaps_ban_dn.mod -banmapfile /etc/grid-security/ban-mapfile"\nlocal = "lcmaps_localaccount.mod"\ngood = "lcmaps_dummy_good.mod"\nauthorize_only:\nban -> good\nglexec:\nlocal -> good\n';
    assert.deepEqual([...compileAccountPolicies(db(text), 'glexec').modules.keys()], ['local', 'good']);
  });

  it('an unknown option is a 202 naming file, line, module and option', () => {
    const error = thrown(() => compileAccountPolicies(verifyDb('--allow-limited-proxies'), 'glexec'));
    assert.equal(error.code, 'lcmaps.unknown_option');
    assert.match(
      error.message,
      /^\/etc\/lcmaps\/lcmaps-glexec\.db line 1: module 'verifyproxy' \(lcmaps_verify_proxy\.mod\): unknown option '--allow-limited-proxies' \(known: -certdir\|-cadir\|-capath\|--capath /,
    );
  });

  it('an option without its value is a 202', () => {
    const error = thrown(() => compileAccountPolicies(verifyDb('-certdir'), 'glexec'));
    assert.equal(error.code, 'lcmaps.bad_option');
    assert.match(error.message, /option '-certdir' needs a CA directory$/);
    assert.match(
      thrown(() =>
        compileAccountPolicies(
          db(
            'p = "lcmaps_poolaccount.mod -gridmapdir -override_inconsistency"\nglexec:\np -> p2\np2 = "lcmaps_posix_enf.mod"\n',
          ),
          'glexec',
        ),
      ).message,
      /option '-gridmapdir' needs a gridmapdir$/,
    );
  });

  it('dummy_good takes its user and groups, and a user it cannot find is a 202 as in LCMAPS', () => {
    const good = (options: string) =>
      db(`good = "lcmaps_dummy_good.mod ${options}"\nbad = "lcmaps_dummy_bad.mod"\nglexec:\ngood -> bad\n`);
    assert.deepEqual(
      compileAccountPolicies(
        good('--dummy-username jdoe --dummy-gid 7 --dummy-sec-group g9'),
        'glexec',
        environment(''),
      ).modules.get('good')?.config,
      {
        kind: 'dummy_good',
        account: { name: 'jdoe', uid: 2004, gid: 2004, groups: [2004, 3000] },
        gid: 7,
        secondaryGid: 9,
      },
    );
    assert.match(
      thrown(() => compileAccountPolicies(good('--dummy-group staff'), 'glexec', environment(''))).message,
      /option '--dummy-group' names a group 'staff', which does not exist$/,
    );
    assert.match(
      thrown(() => compileAccountPolicies(good('--dummy-uid root'), 'glexec', environment(''))).message,
      /option '--dummy-uid' value 'root' is not a number$/,
    );
    assert.match(
      thrown(() =>
        compileAccountPolicies(
          db('bad = "lcmaps_dummy_bad.mod --dummy-uid 1"\nla = "lcmaps_localaccount.mod"\nglexec:\nla -> bad\n'),
          'glexec',
        ),
      ).message,
      /unknown option '--dummy-uid' \(it takes none\)/,
    );
  });

  it('every documented option of the four plug-ins is accepted', () => {
    const text = `vp = "lcmaps_verify_proxy.mod -cadir /a --capath /b -capath /c --allow-limited-proxy --discard_private_key_absence --never_discard_private_key_absence --only-enforce-lifetime-checks --max-proxy-level-ttl@0 14d-00:00 --max-proxy-level-ttl=l 1d-00:00"
la = "lcmaps_localaccount.mod -gridmap grid-mapfile"
pa = "lcmaps_poolaccount.mod -gridmap /g -gridmapfile /g -gridmapdir gridmapdir -override_inconsistency -max_mappings_per_credential 1 -no_wildcard -disablewildcard -strict_poolprefix_match no"
pe = "lcmaps_posix_enf.mod -maxuid 1 -maxpgid 1 -maxsgid 32 -set_only_euid no -set_only_egid NO"
glexec:
vp -> la
la -> pe | pa
pa -> pe
`;
    const compiled = compileAccountPolicies(db(text), 'glexec');
    assert.deepEqual(compiled.modules.get('la')?.config, {
      kind: 'localaccount',
      gridmapfile: '/etc/grid-security/grid-mapfile',
    });
    assert.deepEqual(compiled.modules.get('pa')?.config, {
      kind: 'poolaccount',
      gridmapfile: '/g',
      gridmapdir: '/etc/grid-security/gridmapdir',
      overrideInconsistency: true,
      strictPrefixMatch: false,
      wildcards: false,
    });
    assert.deepEqual(compiled.modules.get('pe')?.config, {
      kind: 'posix_enf',
      maxUids: 1,
      maxPrimaryGids: 1,
      maxSecondaryGids: 32,
    });
    assert.deepEqual(compiled.modules.get('vp')?.config, {
      kind: 'verify_proxy',
      certdir: '/c',
      limitedProxies: 'allow',
      acceptMissingPrivateKey: false,
      onlyLifetimeChecks: true,
      maxValiditySeconds: new Map<number | 'leaf', number>([
        [0, 14 * 86400],
        ['leaf', 86400],
      ]),
    });
  });

  it('bad option values are 202s that name the option and value', () => {
    const cases: [string, RegExp][] = [
      [
        'vp = "lcmaps_verify_proxy.mod --max-proxy-level-ttl=L 24:00"',
        /option '--max-proxy-level-ttl=L' value '24:00' is not a time period like 1d-00:00/,
      ],
      [
        'vp = "lcmaps_verify_proxy.mod --max-proxy-level-ttl=X 1d-00:00"',
        /has level 'X', which is not a number or L \(leaf\)/,
      ],
      ['vp = "lcmaps_verify_proxy.mod --max-proxy-level-ttl@0 1d-24:00"', /value '1d-24:00' is not a time period/],
      ['vp = "lcmaps_posix_enf.mod -maxuid one"', /option '-maxuid' value 'one' is not a number/],
      ['vp = "lcmaps_posix_enf.mod -set_only_euid maybe"', /option '-set_only_euid' value 'maybe' is not yes or no/],
      [
        'vp = "lcmaps_poolaccount.mod -gridmapdir /d -max_mappings_per_credential 0"',
        /value '0' is not a positive number/,
      ],
      ['vp = "lcmaps_poolaccount.mod -gridmapdir /d -strict_poolprefix_match sure"', /value 'sure' is not yes or no/],
      [
        'vp = "lcmaps_verify_proxy.mod --allow-limited-proxy --disallow-limited-proxy"',
        /'--disallow-limited-proxy' contradicts '--allow-limited-proxy'/,
      ],
      ['vp = "lcmaps_verify_proxy.mod --max-voms-ttl 1d"', /option '--max-voms-ttl' value '1d' is not a time period/],
      ['vp = "lcmaps_ban_dn.mod -banmapfile"', /option '-banmapfile' needs a ban list/],
    ];
    for (const [definition, message] of cases) {
      const error = thrown(() =>
        compileAccountPolicies(db(`${definition}\nglexec:\nvp -> vp2\nvp2 = "lcmaps_dummy_good.mod"\n`), 'glexec'),
      );
      assert.equal(error.exitCode, 202, definition);
      assert.match(error.message, /^\/etc\/lcmaps\/lcmaps-glexec\.db line 1: module 'vp' /, definition);
      assert.match(error.message, message, definition);
    }
  });

  it('LCMAPS time periods are days-hours:minutes', () => {
    assert.equal(parseTimePeriod('2d-13:37'), ((2 * 24 + 13) * 60 + 37) * 60);
    assert.equal(parseTimePeriod('0d-00:05'), 300);
    for (const bad of ['13:37', '1d-13', '100d-00:00', '1d-00:60', '1d 00:00', ''])
      assert.equal(parseTimePeriod(bad), undefined, bad);
  });
});

describe('choosing the policies', () => {
  it('the setting is one name or several separated by colons', () => {
    assert.deepEqual(parsePolicyNames('glexec_get_account'), ['glexec_get_account']);
    assert.deepEqual(parsePolicyNames(' a : b:a '), ['a', 'b']);
    assert.equal(thrown(() => parsePolicyNames(' : ')).code, 'lcmaps.no_policy');
  });

  it('a policy name that the file does not define is a 202 listing those it does', () => {
    const error = thrown(() => compileAccountPolicies(db(EMI_GLEXEC_DB), 'glexec'));
    assert.equal(error.code, 'lcmaps.unknown_policy');
    assert.equal(
      error.message,
      `${FILE}: policy 'glexec' (from lcmaps_get_account_policy) is not defined (defined: glexec_get_account)`,
    );
  });

  it('policies run in the order of the file, not of the setting, and the first that maps wins', () => {
    const text =
      'good = "lcmaps_dummy_good.mod"\nla = "lcmaps_localaccount.mod -gridmap /a"\nlb = "lcmaps_localaccount2.mod -gridmap /b"\nfirst:\nla -> good\nsecond:\nlb -> good\n';
    const env: MappingEnvironment = {
      ...fakeAccounts,
      readGridMap: (path) => parseGridMap(`"${JANE}" user_of_${path.slice(1)}`, path),
      leasePoolAccount: () => assert.fail('no pools here'),
    };
    assert.deepEqual(summary(mapAccount(db(text), 'second:first', input(), env)), {
      account: 'user_of_a',
      policy: 'first',
      via: 'localaccount',
    });
    assert.deepEqual(summary(mapAccount(db(text), 'second', input(), env)), {
      account: 'user_of_b',
      policy: 'second',
      via: 'localaccount',
    });
  });
});

describe('running the EMI gLExec policy', () => {
  const compiled = compileAccountPolicies(db(EMI_GLEXEC_DB), 'glexec_get_account');

  it('a DN with its own account in the grid-mapfile is mapped by localaccount', () => {
    const env = environment(GRIDMAP_TEXT);
    assert.deepEqual(summary(evaluateAccountPolicies(compiled, input(), env)), {
      account: 'jdoe',
      policy: 'glexec_get_account',
      via: 'localaccount',
    });
    assert.deepEqual(env.leases, []);
  });

  it("a DN mapped to a pool falls through to poolaccount, which leases with the module's options", () => {
    const env = environment(GRIDMAP_TEXT);
    assert.deepEqual(summary(evaluateAccountPolicies(compiled, input({ identityDn: POOLED }), env)), {
      account: 'atlas001',
      policy: 'glexec_get_account',
      via: 'poolaccount',
    });
    assert.deepEqual(env.leases, [
      {
        gridmapdir: '/etc/grid-security/gridmapdir',
        pool: 'atlas',
        dn: POOLED,
        options: { overrideInconsistency: true, strictPrefixMatch: true },
      },
    ]);
    assert.deepEqual(env.gridmapReads, [GRIDMAP], 'the grid-mapfile is read once per request');
  });

  it('a DN without an entry is a 203 that says what each module found', () => {
    const error = thrown(() =>
      evaluateAccountPolicies(compiled, input({ identityDn: '/CN=Nobody' }), environment(GRIDMAP_TEXT)),
    );
    assert.equal(error.exitCode, 203);
    assert.equal(error.code, 'mapping.no_account');
    assert.equal(
      error.message,
      `no LCMAPS policy in ${FILE} maps /CN=Nobody: policy 'glexec_get_account': localaccount failed: the DN has no entry in grid-mapfile ${GRIDMAP}, then poolaccount failed: the DN has no entry in grid-mapfile ${GRIDMAP}`,
    );
  });

  it("a full pool fails the policy with the lease's own message", () => {
    const env = environment(GRIDMAP_TEXT, () => {
      throw authorizationError('mapping.pool_full', "pool 'atlas' is full");
    });
    const error = thrown(() => evaluateAccountPolicies(compiled, input({ identityDn: POOLED }), env));
    assert.equal(error.exitCode, 203);
    assert.match(
      error.message,
      /localaccount failed: grid-mapfile \/etc\/grid-security\/grid-mapfile line 2 maps the DN to pool '\.atlas', which is for a poolaccount module, then poolaccount failed: pool 'atlas' is full$/,
    );
  });

  it('a site problem inside a module (202) stops the run instead of failing over', () => {
    const env: MappingEnvironment = {
      ...fakeAccounts,
      readGridMap: () => {
        throw systemError('gridmap.untrusted', 'grid-mapfile is world-writable');
      },
      leasePoolAccount: () => assert.fail('not reached'),
    };
    const error = thrown(() => evaluateAccountPolicies(compiled, input(), env));
    assert.equal(error.exitCode, 202);
    assert.equal(error.code, 'gridmap.untrusted');
    const lease202: MappingEnvironment = {
      ...environment(GRIDMAP_TEXT),
      leasePoolAccount: () => {
        throw systemError('mapping.gridmapdir_untrusted', 'gridmapdir is group-writable');
      },
    };
    assert.equal(
      thrown(() => evaluateAccountPolicies(compiled, input({ identityDn: POOLED }), lease202)).code,
      'mapping.gridmapdir_untrusted',
    );
  });

  it('a limited proxy is accepted because the module allows it', () => {
    assert.equal(
      evaluateAccountPolicies(compiled, input({}, { limited: true }), environment(GRIDMAP_TEXT)).account,
      'jdoe',
    );
  });
});

describe('verify_proxy', () => {
  const run = (options: string, facts: Partial<MappingInput['proxy']> = {}, extra: Partial<MappingInput> = {}) =>
    mapAccount(verifyDb(options), 'glexec', input(extra, facts), environment(GRIDMAP_TEXT));
  const refusal = (options: string, facts: Partial<MappingInput['proxy']> = {}, extra: Partial<MappingInput> = {}) => {
    const error = thrown(() => run(options, facts, extra));
    assert.equal(error.exitCode, 203);
    return error.message.replace(`no LCMAPS policy in ${FILE} maps ${JANE}: policy 'glexec': verifyproxy failed: `, '');
  };

  it('limited proxies are accepted unless --disallow-limited-proxy is set, as in verify_proxy 1.5.10', () => {
    assert.equal(run('', { limited: true }).account, 'jdoe');
    assert.equal(
      refusal('--disallow-limited-proxy', { limited: true }),
      'the chain has a limited proxy and --disallow-limited-proxy is set',
    );
    assert.equal(run('--allow-limited-proxy', { limited: true }).account, 'jdoe');
    assert.equal(run('').account, 'jdoe');
  });

  it('--require-limited-proxy requires the last proxy to be limited', () => {
    assert.equal(
      refusal('--require-limited-proxy', { limited: false }),
      'the last proxy is not limited, and --require-limited-proxy is set',
    );
    assert.equal(
      refusal('--require-limited-proxy', { limited: true, leafLimited: false }),
      'the last proxy is not limited, and --require-limited-proxy is set',
    );
    assert.equal(run('--require-limited-proxy', { limited: true }).account, 'jdoe');
  });

  it('a chain without its private key passes only with --discard_private_key_absence, and not with --never_…', () => {
    assert.equal(
      refusal('', { hasPrivateKey: false }),
      'the private key is missing, and --discard_private_key_absence is not set',
    );
    assert.equal(run('--discard_private_key_absence', { hasPrivateKey: false }).account, 'jdoe');
    assert.match(
      refusal('--discard_private_key_absence --never_discard_private_key_absence', { hasPrivateKey: false }),
      /private key is missing/,
    );
  });

  it('an expired proxy is refused', () => {
    assert.equal(refusal('', { notAfter: NOW }), `the proxy expired at ${NOW.toISOString()}`);
  });

  it('-certdir must be the directory glexec verified the chain against, when glexec says which', () => {
    assert.equal(
      refusal('-certdir /etc/grid-security/certificates', {}, { verifiedAgainstCertdir: '/opt/certs' }),
      "glexec verified the chain against /opt/certs, not against the module's -certdir /etc/grid-security/certificates",
    );
    assert.equal(
      run('-certdir /etc/grid-security/certificates', {}, { verifiedAgainstCertdir: '/etc/grid-security/certificates' })
        .account,
      'jdoe',
    );
  });

  it('--max-proxy-level-ttl limits the validity of the leaf (L) and of a numbered delegation level', () => {
    const at = (hours: number) => ({ notBefore: NOW, notAfter: new Date(NOW.getTime() + hours * HOUR) });
    const leafOnly = '--max-proxy-level-ttl=L 1d-00:00';
    assert.equal(
      refusal(leafOnly, { proxyValidity: [at(48)] }),
      'the last proxy is valid for 2d-00:00, longer than --max-proxy-level-ttl allows (1d-00:00)',
    );
    assert.equal(run(leafOnly, { proxyValidity: [at(24)] }).account, 'jdoe');
    const both = '--max-proxy-level-ttl@0 7d-00:00 --max-proxy-level-ttl=L 0d-12:00';
    assert.equal(
      refusal(both, { proxyValidity: [at(8 * 24), at(1)] }),
      'the proxy at level 0 is valid for 8d-00:00, longer than --max-proxy-level-ttl allows (7d-00:00)',
    );
    assert.equal(
      refusal(both, { proxyValidity: [at(24), at(13)] }),
      'the last proxy is valid for 0d-13:00, longer than --max-proxy-level-ttl allows (0d-12:00)',
    );
    assert.equal(run(both, { proxyValidity: [at(24), at(12)] }).account, 'jdoe');
    assert.equal(
      run('--max-proxy-level-ttl=3 0d-01:00', { proxyValidity: [at(24), at(12)] }).account,
      'jdoe',
      'a level the chain does not have is not checked',
    );
  });

  it('--max-proxy-level-ttl fails closed when the validity periods were not given', () => {
    assert.equal(
      refusal('--max-proxy-level-ttl=L 1d-00:00'),
      '--max-proxy-level-ttl is set, but the proxy validity periods were not given to it',
    );
  });

  it('--only-enforce-lifetime-checks skips the limited-proxy and key checks but not the lifetimes', () => {
    assert.equal(run('--only-enforce-lifetime-checks', { limited: true, hasPrivateKey: false }).account, 'jdoe');
    const validity = [{ notBefore: NOW, notAfter: new Date(NOW.getTime() + 48 * HOUR) }];
    assert.match(
      refusal('--only-enforce-lifetime-checks --max-proxy-level-ttl=L 1d-00:00', { proxyValidity: validity }),
      /the last proxy is valid for 2d-00:00/,
    );
  });
});

describe('how a policy runs', () => {
  const env = () => environment(GRIDMAP_TEXT);

  it('a failure without an alternative ends the policy, and the next policy is tried', () => {
    const text = `vp = "lcmaps_verify_proxy.mod --disallow-limited-proxy"\nla = "lcmaps_localaccount.mod"\nstrict:\nvp -> la\nlenient:\nla -> la2\nla2 = "lcmaps_posix_enf.mod"\n`;
    assert.deepEqual(summary(mapAccount(db(text), 'strict:lenient', input({}, { limited: true }), env())), {
      account: 'jdoe',
      policy: 'lenient',
      via: 'localaccount',
    });
  });

  it('a failing module follows its | alternative', () => {
    const text =
      'bad = "lcmaps_dummy_bad.mod"\nla = "lcmaps_localaccount.mod"\nglexec:\nbad -> bad2 | la\nbad2 = "lcmaps_dummy_bad2.mod"\n';
    assert.equal(mapAccount(db(text), 'glexec', input(), env()).account, 'jdoe');
  });

  it("the module that ends the chain decides the policy's result", () => {
    const text = 'la = "lcmaps_localaccount.mod"\nbad = "lcmaps_dummy_bad.mod"\nglexec:\nla -> bad\n';
    assert.equal(
      thrown(() => mapAccount(db(text), 'glexec', input(), env())).message,
      `no LCMAPS policy in ${FILE} maps ${JANE}: policy 'glexec': bad failed: lcmaps_dummy_bad always fails`,
    );
  });

  it('a policy that succeeds without a localaccount or poolaccount mapping maps nothing', () => {
    const text = 'vp = "lcmaps_verify_proxy.mod"\ngood = "lcmaps_dummy_good.mod"\nglexec:\nvp -> good\n';
    assert.match(
      thrown(() => mapAccount(db(text), 'glexec', input(), env())).message,
      /policy 'glexec': it succeeded without mapping an account/,
    );
  });

  it('two modules mapping two different accounts fail the policy', () => {
    const text = `la = "lcmaps_localaccount.mod"\npa = "lcmaps_poolaccount.mod -gridmapdir /d -gridmapfile /pools"\nglexec:\nla -> pa\n`;
    const twoMaps: MappingEnvironment = {
      ...fakeAccounts,
      readGridMap: (path) => parseGridMap(path === '/pools' ? `"${JANE}" .atlas` : `"${JANE}" jdoe`, path),
      leasePoolAccount: () => 'atlas007',
    };
    assert.match(
      thrown(() => mapAccount(db(text), 'glexec', input(), twoMaps)).message,
      /pa mapped to 'atlas007' after localaccount mapped to 'jdoe'/,
    );
  });

  it('poolaccount refuses a DN that the grid-mapfile maps to a plain account', () => {
    const text = 'pa = "lcmaps_poolaccount.mod -gridmapdir /d"\nglexec:\npa -> pe\npe = "lcmaps_posix_enf.mod"\n';
    assert.match(
      thrown(() => mapAccount(db(text), 'glexec', input(), env())).message,
      /pa failed: grid-mapfile \/etc\/grid-security\/grid-mapfile line 1 maps the DN to 'jdoe', which is not a pool \(\.name\)$/,
    );
  });
});

describe('the VOMS modules (held to the real plug-ins by test/e2e/voms-oracle.test.ts)', () => {
  const GROUPMAP = '/etc/grid-security/groupmapfile';
  const FQANS = ['/atlas/Role=pilot', '/atlas', '/atlas/prod/Role=production'];
  const vomsInput = (fqans: readonly string[] = FQANS, validity = [{ notBefore: NOW, notAfter: NOW }]) =>
    input({ voms: { fqans, validity } });
  /** Files by path; leases from `lease`, which may throw; group names `g<gid>`. */
  function vomsEnv(
    files: Record<string, string>,
    lease: (pool: string, name: string) => string = (pool) => `${pool}001`,
  ): Recorder {
    const leases: Recorder['leases'] = [];
    return {
      ...fakeAccounts,
      leases,
      gridmapReads: [],
      groupNameOf: (gid) => `g${gid}`,
      readGridMap: (path, options) => parseGridMap(files[path] ?? '', path, options),
      leasePoolAccount(gridmapdir, pool, dn, options) {
        leases.push({ gridmapdir, pool, dn, options });
        return lease(pool, dn);
      },
    };
  }
  const groupmap = ['"/atlas/Role=pilot" g500', '"/atlas" g501', '"/atlas/prod/Role=production" g502'].join('\n');
  const YAIM = (poolOptions = '-do_not_use_secondary_gids') => `
lg = "lcmaps_voms_localgroup.mod -groupmapfile ${GROUPMAP}"
la = "lcmaps_voms_localaccount.mod -gridmapfile ${GRIDMAP} -use_voms_gid"
pa = "lcmaps_voms_poolaccount.mod -gridmapfile ${GRIDMAP} -gridmapdir /gmd ${poolOptions}"
dn = "lcmaps_localaccount.mod -gridmapfile ${GRIDMAP}"
pe = "lcmaps_posix_enf.mod -maxuid 1 -maxpgid 1 -maxsgid 32"
glexec:
lg -> la | dn
la -> pe | pa
pa -> pe | dn
dn -> pe
`;

  it('the first FQAN gives the primary gid, the others secondary gids, and -use_voms_gid keeps only those', () => {
    const env = vomsEnv({ [GROUPMAP]: groupmap, [GRIDMAP]: '"/atlas/Role=pilot" pilot' });
    const mapping = mapAccount(db(YAIM()), 'glexec', vomsInput(), env);
    assert.deepEqual(
      { account: mapping.account, via: mapping.via, gid: mapping.gid, groups: mapping.groups, fqans: mapping.fqans },
      {
        account: 'pilot',
        via: 'voms_localaccount',
        gid: 500,
        groups: [500, 501, 502],
        fqans: ['/atlas/Role=pilot', '/atlas', '/atlas/prod/Role=production'],
      },
    );
  });

  it('"/atlas" does not match the long form, "/atlas/*" does', () => {
    const env = vomsEnv({ [GROUPMAP]: '"/atlas" g501\n"/atlas/*" g503', [GRIDMAP]: `"${JANE}" jdoe` });
    const text = `lg = "lcmaps_voms_localgroup.mod -groupmapfile ${GROUPMAP}"\ndn = "lcmaps_localaccount.mod"\nglexec:\nlg -> dn\n`;
    const mapping = mapAccount(db(text), 'glexec', vomsInput(['/atlas/Role=NULL/Capability=NULL']), env);
    assert.equal(mapping.gid, 503);
  });

  it('a pool lease is named by the DN plus :group names; a full pool for the first FQAN falls through to the next', () => {
    const env = vomsEnv({ [GROUPMAP]: groupmap, [GRIDMAP]: '"/atlas/Role=pilot" .pilots\n"/atlas" .atlas' }, (pool) => {
      if (pool === 'pilots') throw authorizationError('mapping.pool_full', "pool 'pilots' is full");
      return `${pool}007`;
    });
    const mapping = mapAccount(db(YAIM('')), 'glexec', vomsInput(), env);
    assert.equal(mapping.account, 'atlas007');
    assert.deepEqual(mapping.fqans, FQANS);
    assert.deepEqual(
      env.leases.map((lease) => [lease.pool, lease.dn, lease.options.leaseSuffix]),
      [
        ['pilots', JANE, ':g500:g501:g502'],
        ['atlas', JANE, ':g500:g501:g502'],
      ],
    );
    const primaryOnly = vomsEnv({ [GROUPMAP]: groupmap, [GRIDMAP]: '"/atlas" .atlas' });
    mapAccount(db(YAIM()), 'glexec', vomsInput(), primaryOnly);
    assert.equal(primaryOnly.leases[0]?.options.leaseSuffix, ':g500');
  });

  it('groups of a module that failed are carried on: -mapall fails, the DN account adds a second primary gid, posix_enf refuses', () => {
    const env = vomsEnv({ [GROUPMAP]: '"/atlas/Role=pilot" g500', [GRIDMAP]: `"${JANE}" jdoe` });
    const text = YAIM().replace('-groupmapfile', '-mapall -groupmapfile');
    assert.match(
      thrown(() => mapAccount(db(text), 'glexec', vomsInput(), env)).message,
      /lg failed: -mapall is set, and only 1 of 3 FQANs map to a group, then pe failed: the mapping has 2 primary gids, more than its limit \(-maxpgid 1\)$/,
    );
  });

  it('without trusted FQANs the VOMS modules fail and the DN rules map', () => {
    const env = vomsEnv({ [GROUPMAP]: groupmap, [GRIDMAP]: `"${JANE}" jdoe` });
    const mapping = mapAccount(db(YAIM()), 'glexec', input(), env);
    assert.deepEqual([mapping.account, mapping.via, mapping.fqans], ['jdoe', 'localaccount', undefined]);
  });

  it('ban_fqan refuses a banned FQAN, by wildcard too', () => {
    const env = vomsEnv({ '/ban': '"/atlas/prod/*"', [GRIDMAP]: `"${JANE}" jdoe` });
    const text = `ban = "lcmaps_ban_fqan.mod -banmapfile /ban"\ndn = "lcmaps_localaccount.mod"\nglexec:\nban -> dn\n`;
    assert.match(
      thrown(() => mapAccount(db(text), 'glexec', vomsInput(), env)).message,
      /ban failed: the FQAN \/atlas\/prod\/Role=production is banned by line 1 of \/ban/,
    );
    assert.equal(mapAccount(db(text), 'glexec', vomsInput(['/atlas']), env).account, 'jdoe');
  });

  it('--max-voms-ttl fails an AC valid for longer', () => {
    const env = vomsEnv({ [GRIDMAP]: `"${JANE}" jdoe` });
    const text = `vp = "lcmaps_verify_proxy.mod --max-voms-ttl 0d-12:00"\ndn = "lcmaps_localaccount.mod"\nglexec:\nvp -> dn\n`;
    const long = [{ notBefore: NOW, notAfter: new Date(NOW.getTime() + 13 * HOUR) }];
    assert.match(
      thrown(() => mapAccount(db(text), 'glexec', vomsInput(FQANS, long), env)).message,
      /a VOMS AC is valid for 0d-13:00, longer than --max-voms-ttl allows \(0d-12:00\)/,
    );
    assert.equal(mapAccount(db(text), 'glexec', vomsInput(FQANS), env).account, 'jdoe');
  });

  it('an option the real plug-in does not have is a 202', () => {
    const text = `pa = "lcmaps_voms_poolaccount.mod --map-to-secondary-groups"\nglexec:\npa -> pa2\npa2 = "lcmaps_posix_enf.mod"\n`;
    const error = thrown(() => compileAccountPolicies(db(text), 'glexec', vomsEnv({})));
    assert.equal(error.exitCode, 202);
    assert.match(error.message, /unknown option '--map-to-secondary-groups'/);
  });
});
