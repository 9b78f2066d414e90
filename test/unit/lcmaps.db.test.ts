import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parseLcmapsDb, readLcmapsDb } from '../../src/lcmaps/db';
import { compileAccountPolicies } from '../../src/lcmaps/modules';
import { thrown } from '../helpers/assertions';

const FILE = '/etc/lcmaps/lcmaps-glexec.db';
const parse = (lines: string[]) => parseLcmapsDb(lines.join('\n'), FILE);
const syntaxError = (lines: string[]) => {
  const error = thrown(() => parse(lines));
  assert.equal(error.exitCode, 202);
  return error;
};

/** OSG's lcmaps.db.gridmap.glexec, as shipped (comments between continuation strings included). */
const OSG_GLEXEC_DB = `##############################################################################
#
# lcmaps.db (grid-mapfile authroization with glExec)
#
##############################################################################


glexectracking = "lcmaps_glexec_tracking.mod"
                 "-exec /usr/sbin/glexec_monitor"
# Uncomment if your procd is located in a non-standard directory
#                 "-procddir /usr"
# Uncomment to change the default logging level for the glexec_monitor
#                 "-log-level 4"

gridmapfile = "lcmaps_localaccount.mod"
              "-gridmap /etc/grid-security/grid-mapfile"

verifyproxy = "lcmaps_verify_proxy.mod"
              "--allow-limited-proxy"
              " -certdir /etc/grid-security/certificates"

good        = "lcmaps_dummy_good.mod"
bad         = "lcmaps_dummy_bad.mod"

authorize_only:
gridmapfile -> good | bad

glexec:
verifyproxy -> gridmapfile
gridmapfile -> glexectracking
`;

describe('lcmaps.db parser: what it accepts', () => {
  it('the OSG glexec lcmaps.db parses into its modules and two policies', () => {
    const db = parseLcmapsDb(OSG_GLEXEC_DB, FILE);
    assert.equal(db.file, FILE);
    assert.equal(db.path, undefined);
    assert.deepEqual([...db.modules.keys()], ['glexectracking', 'gridmapfile', 'verifyproxy', 'good', 'bad']);
    assert.deepEqual(db.modules.get('glexectracking'), {
      name: 'glexectracking',
      file: 'lcmaps_glexec_tracking.mod',
      args: ['-exec', '/usr/sbin/glexec_monitor'],
      line: 8,
    });
    assert.deepEqual(db.modules.get('verifyproxy'), {
      name: 'verifyproxy',
      file: 'lcmaps_verify_proxy.mod',
      args: ['--allow-limited-proxy', '-certdir', '/etc/grid-security/certificates'],
      line: 18,
    });
    assert.deepEqual(db.policies, [
      {
        name: 'authorize_only',
        line: 25,
        rules: [{ from: 'gridmapfile', onSuccess: 'good', onFailure: 'bad', line: 26 }],
      },
      {
        name: 'glexec',
        line: 28,
        rules: [
          { from: 'verifyproxy', onSuccess: 'gridmapfile', line: 29 },
          { from: 'gridmapfile', onSuccess: 'glexectracking', line: 30 },
        ],
      },
    ]);
  });

  it('one quoted string may hold the plug-in file and several options, as quattor writes it', () => {
    const db = parse([
      'poolaccount = "lcmaps_poolaccount.mod -override_inconsistency -gridmapfile /etc/grid-security/grid-mapfile -gridmapdir /etc/grid-security/gridmapdir"',
      'p:',
      'poolaccount -> poolaccount2',
      'poolaccount2 = "/usr/lib64/lcmaps/liblcmaps_poolaccount.so"',
    ]);
    assert.deepEqual(db.modules.get('poolaccount')?.args, [
      '-override_inconsistency',
      '-gridmapfile',
      '/etc/grid-security/grid-mapfile',
      '-gridmapdir',
      '/etc/grid-security/gridmapdir',
    ]);
    assert.equal(db.modules.get('poolaccount2')?.file, '/usr/lib64/lcmaps/liblcmaps_poolaccount.so');
  });

  it('option and value may share a string, and strings may start with blanks or stand after a blank line', () => {
    const db = parse([
      'verifyproxy = "lcmaps_verify_proxy.mod"',
      '" -certdir /etc/grid-security/certificates"',
      '',
      '   "--max-proxy-level-ttl=L 1d-13:37"   # leaf proxies for a day',
      'posix_enf =',
      '    "lcmaps_posix_enf.mod"',
      '    " -maxuid 1" " -maxpgid 1"',
      'glexec_get_account:',
      'verifyproxy -> posix_enf',
    ]);
    assert.deepEqual(db.modules.get('verifyproxy')?.args, [
      '-certdir',
      '/etc/grid-security/certificates',
      '--max-proxy-level-ttl=L',
      '1d-13:37',
    ]);
    assert.deepEqual(db.modules.get('posix_enf'), {
      name: 'posix_enf',
      file: 'lcmaps_posix_enf.mod',
      args: ['-maxuid', '1', '-maxpgid', '1'],
      line: 5,
    });
  });

  it('path may be bare or quoted, and # inside quotes is not a comment', () => {
    assert.equal(parse(['path = /opt/glite/lib/modules # plug-ins']).path, '/opt/glite/lib/modules');
    const db = parse([
      'path = "/usr/lib64/lcmaps"',
      'a = "lcmaps_dummy_good.mod #1"',
      'p:',
      'a -> a2',
      'a2 = "lcmaps_dummy_bad.mod"',
    ]);
    assert.equal(db.path, '/usr/lib64/lcmaps');
    assert.deepEqual(db.modules.get('a')?.args, ['#1']);
  });

  it('rules may be written without spaces, and module definitions may follow the policies', () => {
    const db = parse([
      'p:',
      'a->b|c',
      'a = "lcmaps_dummy_good.mod"',
      'b = "lcmaps_dummy_good.mod"',
      'c = "lcmaps_dummy_bad.mod"',
    ]);
    assert.deepEqual(db.policies[0]?.rules, [{ from: 'a', onSuccess: 'b', onFailure: 'c', line: 2 }]);
  });

  it('an empty file or one with only comments has no modules and no policies', () => {
    const db = parse(['# nothing', '', '   ']);
    assert.equal(db.modules.size, 0);
    assert.deepEqual(db.policies, []);
  });
});

describe('lcmaps.db parser: what it refuses, naming file, line and item', () => {
  it('an unterminated quoted string is a syntax error', () => {
    const error = syntaxError(['a = "lcmaps_dummy_good.mod']);
    assert.equal(error.code, 'lcmaps.syntax');
    assert.equal(error.message, `${FILE} line 1: the quoted string "lcmaps_dummy_good.mod has no closing quote`);
  });

  it('a module whose strings are empty or missing names no plug-in file', () => {
    assert.equal(
      syntaxError(['a =', '', 'p:']).message,
      `${FILE} line 1: module 'a' names no plug-in file (its quoted string is empty or missing)`,
    );
    assert.match(syntaxError(['a = "  "']).message, /line 1: module 'a' names no plug-in file/);
  });

  it('an unquoted module file is refused', () => {
    assert.equal(
      syntaxError(['good = lcmaps_dummy_good.mod']).message,
      `${FILE} line 1: module 'good': expected quoted strings after '=', found 'lcmaps_dummy_good.mod'`,
    );
  });

  it('a quoted string outside a module definition is refused', () => {
    assert.equal(
      syntaxError(['p:', '"-certdir /x"']).message,
      `${FILE} line 2: the quoted string "-certdir /x" belongs to no module definition`,
    );
  });

  it('a rule before any policy line is refused', () => {
    assert.equal(
      syntaxError(['a -> b']).message,
      `${FILE} line 1: the rule 'a -> b' comes before any 'policy_name:' line`,
    );
  });

  it('a rule missing its target or alternative is refused', () => {
    assert.equal(
      syntaxError(['p:', 'a ->']).message,
      `${FILE} line 2: expected a module name after 'a ->', found the end of the line`,
    );
    assert.equal(
      syntaxError(['p:', 'a -> b |']).message,
      `${FILE} line 2: expected a module name after 'a -> b |', found the end of the line`,
    );
    assert.equal(
      syntaxError(['p:', 'a -> b c']).message,
      `${FILE} line 2: expected '|' or the end of the rule after 'a -> b', found 'c'`,
    );
    assert.equal(
      syntaxError(['p:', 'a -> b | c | d']).message,
      `${FILE} line 2: unexpected '|' after the rule 'a -> b | c'`,
    );
  });

  it('a line that is none of the four forms is refused', () => {
    assert.match(
      syntaxError(['verifyproxy lcmaps_verify_proxy.mod']).message,
      /line 1: cannot understand 'verifyproxy' 'lcmaps_verify_proxy\.mod': expected/,
    );
    assert.match(syntaxError(['p: extra']).message, /line 1: unexpected 'extra' after the policy name 'p:'/);
  });

  it('a module, a policy or path given twice is refused with both lines', () => {
    assert.equal(
      syntaxError(['a = "lcmaps_dummy_good.mod"', 'a = "lcmaps_dummy_bad.mod"']).message,
      `${FILE} line 2: module 'a' is defined twice (lines 1 and 2)`,
    );
    const twoPolicies = [
      'a = "lcmaps_dummy_good.mod"',
      'b = "lcmaps_dummy_good.mod"',
      'p:',
      'a -> b',
      'p:',
      'b -> a2',
      'a2 = "lcmaps_dummy_good.mod"',
    ];
    assert.equal(syntaxError(twoPolicies).message, `${FILE} line 5: policy 'p' is defined twice (lines 3 and 5)`);
    assert.equal(
      syntaxError(['path = /a', 'path = /b']).message,
      `${FILE} line 2: 'path' is set twice (lines 1 and 2)`,
    );
  });

  it('a policy without rules is refused', () => {
    assert.equal(
      syntaxError(['a = "lcmaps_dummy_good.mod"', 'glexec:']).message,
      `${FILE} line 2: policy 'glexec' has no rules`,
    );
  });

  it('two rules for the same module in one policy are refused', () => {
    const lines = ['a = "x.mod"', 'b = "x.mod"', 'c = "x.mod"', 'p:', 'a -> b', 'a -> c'];
    assert.equal(syntaxError(lines).message, `${FILE} line 6: policy 'p' already has a rule for 'a' (line 5)`);
  });

  it('a rule naming an undefined module is a 202 naming the file, line and module', () => {
    // The gLite certification test's lcmaps-glexec.db defines verifyproxy but uses verify_proxy.
    const error = syntaxError([
      'verifyproxy = "lcmaps_verify_proxy.mod"',
      'scasclient = "lcmaps_scas_client.mod"',
      'glexec_get_account:',
      'verify_proxy -> scasclient',
    ]);
    assert.equal(error.code, 'lcmaps.undefined_module');
    assert.equal(
      error.message,
      `${FILE} line 4: policy 'glexec_get_account' names module 'verify_proxy', which is not defined`,
    );
    assert.match(
      syntaxError(['a = "x.mod"', 'p:', 'a -> a | nowhere']).message,
      /line 3: policy 'p' names module 'nowhere', which is not defined/,
    );
  });

  it('a policy that can run in a circle is refused, naming the circle', () => {
    const error = syntaxError(['a = "x.mod"', 'b = "x.mod"', 'c = "x.mod"', 'p:', 'a -> b', 'b -> c | a']);
    assert.equal(error.code, 'lcmaps.policy_loop');
    assert.equal(error.message, `${FILE} line 5: policy 'p' runs in a circle: a -> b -> a`);
    assert.match(syntaxError(['a = "x.mod"', 'p:', 'a -> a']).message, /runs in a circle: a -> a/);
  });

  it('the same module in two policies, or reached twice without a circle, is fine', () => {
    const db = parse(['a = "x.mod"', 'b = "x.mod"', 'c = "x.mod"', 'p:', 'a -> b | c', 'b -> c', 'q:', 'c -> a']);
    assert.equal(db.policies.length, 2);
  });
});

const trustedRoot = process.getuid?.() === 0 ? mkdtempSync('/var/lib/glexec-lcmaps-test-') : undefined;
after(() => {
  if (trustedRoot !== undefined) rmSync(trustedRoot, { recursive: true, force: true });
});

describe(
  'reading lcmaps.db from disk',
  { skip: trustedRoot === undefined ? 'needs root: the file must be root-owned' : false },
  () => {
    const root = trustedRoot ?? '';

    it('a root-owned file in a root-only path is read and parsed', () => {
      const file = join(root, 'ok.db');
      writeFileSync(file, OSG_GLEXEC_DB, { mode: 0o644 });
      const db = readLcmapsDb(file);
      assert.equal(db.file, file);
      assert.equal(db.policies.length, 2);
    });

    it('a world-writable lcmaps.db is refused with 202 lcmaps.untrusted', () => {
      const file = join(root, 'open.db');
      writeFileSync(file, OSG_GLEXEC_DB);
      chmodSync(file, 0o646);
      const error = thrown(() => readLcmapsDb(file));
      assert.equal(error.exitCode, 202);
      assert.equal(error.code, 'lcmaps.untrusted');
      assert.match(error.message, /lcmaps\.db .*open\.db is not trusted: .* is world-writable/);
    });

    it('a symbolic link to lcmaps.db is refused', () => {
      const link = join(root, 'link.db');
      symlinkSync(join(root, 'ok.db'), link);
      assert.equal(thrown(() => readLcmapsDb(link)).code, 'lcmaps.untrusted');
    });

    it('a missing lcmaps.db is a 202 that says so', () => {
      const error = thrown(() => readLcmapsDb(join(root, 'absent.db')));
      assert.equal(error.exitCode, 202);
      assert.match(error.message, /cannot be checked: ENOENT/);
    });

    it('a syntax error in the file names the file', () => {
      const file = join(root, 'bad.db');
      writeFileSync(file, 'p:\na -> b\n');
      assert.equal(
        thrown(() => readLcmapsDb(file)).message,
        `${file} line 2: policy 'p' names module 'a', which is not defined`,
      );
    });
  },
);

describe('reading lcmaps.db under a directory others can write', () => {
  it('is refused even when the file itself is fine', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glexec-lcmaps-'));
    try {
      chmodSync(dir, 0o777);
      const file = join(dir, 'lcmaps.db');
      writeFileSync(file, OSG_GLEXEC_DB, { mode: 0o644 });
      const error = thrown(() => readLcmapsDb(file));
      assert.equal(error.code, 'lcmaps.untrusted');
      assert.match(error.message, /world-writable/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the example etc/lcmaps.db', () => {
  it('parses, and its glexec_get_account policy uses only modules and options glexec knows', () => {
    const file = join(__dirname, '../../../etc/lcmaps.db');
    const db = parseLcmapsDb(readFileSync(file, 'utf8'), file);
    const compiled = compileAccountPolicies(db, 'glexec_get_account');
    assert.deepEqual(
      compiled.policies.map((policy) => policy.name),
      ['glexec_get_account'],
    );
  });
});
