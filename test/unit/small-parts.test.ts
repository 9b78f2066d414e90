import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseEnvironmentBlock, parseShimArgs } from '../../src/caller';
import { toAction } from '../../src/cli';
import { parseWithCommander } from '../../src/cli-commander';
import { defaultConfig, type Config } from '../../src/config/schema';
import { exitCodeOf, rawReturnCode } from '../../src/exitcode';
import { parseCallerLimits, payloadLimitOptions } from '../../src/caller-limits';
import { isoTimestamp } from '../../src/clock';
import { clampLogLevel, formatSyslogText } from '../../src/log/logger';
import { escapeControl, sanitizeDeep } from '../../src/log/sanitize';
import { gridMapDnMatches, mapDn, parseGridMap, parseGridMapLine } from '../../src/mapping/gridmap';
import { buildPayloadEnv, DEFAULT_PAYLOAD_PATH } from '../../src/payload/env';
import { asGid, asUid } from '../../src/sys/identity';
import { startPayloadArgs } from '../../src/sys/proc';
import type { Target } from '../../src/target';
import { VERSION } from '../../src/version';
import { entryMatches } from '../../src/whitelist';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { thrown } from '../helpers/assertions';
import fc from 'fast-check';

describe('resource limits', () => {
  it("the shim's list of caller limits is parsed, malformed items ignored", () => {
    assert.deepEqual(
      [...parseCallerLimits('cpu=1:2,fsize=unlimited:unlimited,bogus=1:1,nofile=x:1,as=5:unlimited')],
      [
        ['cpu', { soft: 1, hard: 2 }],
        ['fsize', { soft: 'unlimited', hard: 'unlimited' }],
        ['as', { soft: 5, hard: 'unlimited' }],
      ],
    );
  });
  it("only limits that differ from glexec's own are given to start-payload for the payload", () => {
    const own = () => ({ soft: 'unlimited' as const, hard: 'unlimited' as const });
    assert.deepEqual(payloadLimitOptions(parseCallerLimits('cpu=unlimited:unlimited,fsize=512:1024'), own), [
      'fsize=512:1024',
    ]);
    assert.deepEqual(payloadLimitOptions(parseCallerLimits('cpu=unlimited:unlimited'), own), []);
  });
});

describe('exit codes', () => {
  it('a payload code outside 201..204 is passed through', () => {
    assert.equal(exitCodeOf({ code: 0 }), 0);
    assert.equal(exitCodeOf({ code: 7 }), 7);
    assert.equal(exitCodeOf({ code: 126 }), 126);
    assert.equal(exitCodeOf({ code: 200 }), 200);
    assert.equal(exitCodeOf({ code: 205 }), 205);
  });
  it('a payload code in 201..204 becomes 204', () => {
    for (const code of [201, 202, 203, 204]) assert.equal(exitCodeOf({ code }), 204);
  });
  it('a payload killed by signal N gives 128+N, also as its return code', () => {
    assert.equal(exitCodeOf({ signal: 'SIGKILL' }), 137);
    assert.equal(rawReturnCode({ signal: 'SIGTERM' }), 143);
    assert.equal(rawReturnCode({ code: 203 }), 203);
  });
});

describe('white lists', () => {
  it('a star alone matches anyone', () => assert.ok(entryMatches('*', 'anybody')));
  it('a plain name matches only itself', () => {
    assert.ok(entryMatches('pilot', 'pilot'));
    assert.ok(!entryMatches('pilot', 'pilot1'));
  });
  it('.pool and pool* match pool accounts: the name followed by digits', () => {
    for (const entry of ['.ops', 'ops*']) {
      assert.ok(entryMatches(entry, 'ops001'));
      assert.ok(!entryMatches(entry, 'ops'));
      assert.ok(!entryMatches(entry, 'opsadmin'));
    }
  });
  it('a bare dot or star-suffix with no base matches nobody', () => {
    assert.ok(!entryMatches('.', '1'));
  });
});

describe('sanitizing log text', () => {
  it('a newline and other control characters become visible escapes', () => {
    assert.equal(escapeControl('a\nb\r\x1b[31m\x7f\u0085\u2028'), 'a\\x0Ab\\x0D\\x1B[31m\\x7F\\x85\\u2028');
  });
  it('nested strings and keys are sanitized too', () => {
    assert.deepEqual(sanitizeDeep({ 'k\n': ['x\ny', 1], n: { m: '\t' } }), {
      'k\\x0A': ['x\\x0Ay', 1],
      n: { m: '\\x09' },
    });
  });
  it('the syslog text form quotes values with spaces and has no raw newline', () => {
    const text = formatSyslogText({
      level: 'notice',
      time: 't',
      pid: 1,
      msg: 'job completed',
      id: 'x\ny',
      exitCode: 0,
      command: ['/bin/a b'],
    });
    assert.equal(formatSyslogText({ msg: 'm', dn: '/C=NL/CN=Jane "JD" Doe' }), 'm dn="/C=NL/CN=Jane \\"JD\\" Doe"');
    assert.equal(text, 'job completed id="x\\ny" exitCode=0 command=["/bin/a b"]');
    assert.ok(!text.includes('\n'));
  });
});

describe('log injection and size', () => {
  it('a value with a quote and a backslash cannot forge another key=value pair in syslog text', () => {
    const forged = 'x\\" exitCode=0 target={"user":"root"} y=\\"';
    const text = formatSyslogText({ msg: 'job completed', id: forged, exitCode: 7 });
    assert.equal(text, `job completed id=${JSON.stringify(forged)} exitCode=7`);
    assert.deepEqual(JSON.parse(text.slice('job completed id='.length, text.lastIndexOf(' exitCode='))), forged);
  });
  it('bidi overrides and zero-width characters are escaped', () => {
    assert.equal(escapeControl('a\u202Eb\u200Bc\uFEFF'), 'a\\u202Eb\\u200Bc\\uFEFF');
  });
  it('long strings and long lists are cut, with a marker that says how much', () => {
    const long = 'a'.repeat(5000);
    assert.equal(sanitizeDeep(long), `${'a'.repeat(1024)}…[3976 more characters]`);
    const list = sanitizeDeep(Array.from({ length: 100 }, (_, i) => String(i))) as string[];
    assert.equal(list.length, 65);
    assert.equal(list.at(-1), '…[36 more items]');
  });
});

describe('log level', () => {
  it("values out of range are clamped with gLExec's warnings", () => {
    assert.deepEqual(clampLogLevel(9), {
      level: 5,
      warning: 'Specified loglevel 9 is too large, using max. log level 5.',
    });
    assert.deepEqual(clampLogLevel(-1), {
      level: 0,
      warning: 'Specified loglevel -1 is too small, using min. log level 0.',
    });
    assert.deepEqual(clampLogLevel(3), { level: 3 });
  });
});

describe('grid-mapfile', () => {
  it('a quoted DN and its accounts are read, the first account is the mapping', () => {
    assert.deepEqual(parseGridMapLine('"/C=NL/O=Example/CN=Jane Doe" jane,other'), {
      dn: '/C=NL/O=Example/CN=Jane Doe',
      accounts: ['jane', 'other'],
      quoted: true,
    });
  });
  it('an unquoted DN without spaces is read', () => {
    assert.deepEqual(parseGridMapLine('/C=NL/CN=x  acct'), { dn: '/C=NL/CN=x', accounts: ['acct'], quoted: false });
  });
  it('backslashes are kept as written, as LCMAPS keeps them: the DN ends at the next quote', () => {
    assert.equal(
      parseGridMapLine('"/CN=Robot: host\\/node.example.org" acct')?.dn,
      '/CN=Robot: host\\/node.example.org',
    );
    assert.equal(parseGridMapLine('"/CN=Jos\\xC3\\xA9" acct')?.dn, '/CN=Jos\\xC3\\xA9');
    assert.deepEqual(parseGridMapLine('"/CN=a \\"b" acct'), { dn: '/CN=a \\', accounts: ['b" acct'], quoted: true });
  });
  it('a # after the account starts a comment, and a carriage return stays part of the account', () => {
    assert.deepEqual(parseGridMapLine('"/CN=x" acct # the payload account'), {
      dn: '/CN=x',
      accounts: ['acct'],
      quoted: true,
    });
    assert.deepEqual(parseGridMapLine('"/CN=x" acct#note'), { dn: '/CN=x', accounts: ['acct'], quoted: true });
    assert.deepEqual(parseGridMapLine('"/CN=x" acct\r'), { dn: '/CN=x', accounts: ['acct\r'], quoted: true });
  });
  it('a * in a DN matches any text where wildcards are allowed', () => {
    assert.equal(gridMapDnMatches('/C=NL/O=Example/*', '/C=NL/O=Example/OU=Users/CN=x', true), true);
    assert.equal(gridMapDnMatches('/C=NL/O=Example/*', '/C=NL/O=Example/OU=Users/CN=x', false), false);
    assert.equal(gridMapDnMatches('/C=NL/O=Ex.mple/*', '/C=NL/O=Example/CN=x', true), false);
    assert.equal(gridMapDnMatches('/C=NL/O=Example/CN=x', '/C=NL/O=Example/CN=x', false), true);
  });
  it('comments and blank lines are skipped', () => {
    assert.equal(parseGridMapLine('  # "/CN=x" y'), undefined);
    assert.equal(parseGridMapLine('   '), undefined);
  });
  it('a line without an account is a 202 naming the file and line', () => {
    const error = thrown(() => parseGridMap('"/CN=a" x\n"/CN=b"\n', '/etc/gm'));
    assert.equal(error.exitCode, 202);
    assert.equal(error.message, '/etc/gm line 2: no account after the DN');
  });
  it('a DN without an entry is a 203', () => {
    const error = thrown(() => mapDn(parseGridMap('"/CN=a" x\n', '/etc/gm'), '/CN=b', '/etc/gm'));
    assert.equal(error.exitCode, 203);
    assert.equal(error.message, '/CN=b has no entry in grid-mapfile /etc/gm');
  });
  it('a pool account entry is refused until pool support exists', () => {
    assert.equal(
      thrown(() => mapDn(parseGridMap('"/CN=a" .atlas\n', '/gm'), '/CN=a', '/gm')).code,
      'mapping.pool_unsupported',
    );
    const unquoted = thrown(() => mapDn(parseGridMap('/C=NL/CN=Jane Doe jdoe\n', '/gm'), '/C=NL/CN=Jane Doe', '/gm'));
    assert.deepEqual(
      [unquoted.code, unquoted.message],
      [
        'gridmap.unquoted_dn',
        '/gm line 1: the DN must be in double quotes (unquoted, it ends at the first blank: "/C=NL/CN=Jane")',
      ],
    );
    assert.equal(
      mapDn(parseGridMap('/C=NL/CN=Jane jdoe\n', '/gm'), '/C=NL/CN=Jane', '/gm'),
      'jdoe',
      'an unquoted DN without blanks is fine, as for LCMAPS',
    );
  });
});

describe('payload environment', () => {
  const target: Target = {
    name: 'alice',
    uid: asUid(1001),
    gid: asGid(1001),
    home: '/home/alice',
    shell: '/bin/sh',
    groupName: 'alice',
    groups: [asGid(1001)],
  };
  const config = (preserve: string[]): Config => ({ ...defaultConfig(), preserve_env_variables: preserve });

  it('keeps GLEXEC_* and preserved variables, drops the rest, and sets HOME, USER, LOGNAME and PATH', () => {
    const caller = new Map([
      ['GLEXEC_ID', 'job 1'],
      ['GLEXEC_EPILOG_TARGET_RC', '0'],
      ['KEEP', 'k'],
      ['SECRET', 's'],
      ['HOME', '/home/pilot'],
      ['X509_USER_PROXY', '/tmp/x509'],
      ['LD_PRELOAD', '/tmp/evil.so'],
    ]);
    const { env } = buildPayloadEnv(caller, config(['KEEP', 'X509_USER_PROXY']), target);
    assert.deepEqual(
      { ...env },
      {
        GLEXEC_ID: 'job 1',
        KEEP: 'k',
        HOME: '/home/alice',
        USER: 'alice',
        LOGNAME: 'alice',
        PATH: DEFAULT_PAYLOAD_PATH,
      },
    );
  });
  it('drops values that look like shell functions', () => {
    const { env, dropped } = buildPayloadEnv(new Map([['GLEXEC_X', '() { :; }; echo pwned']]), config([]), target);
    assert.equal(env.GLEXEC_X, undefined);
    assert.deepEqual(dropped, [{ name: 'GLEXEC_X', why: 'value looks like a shell function' }]);
  });
  it('drops a preserved locale or time zone whose value is a path', () => {
    const { env } = buildPayloadEnv(
      new Map([
        ['LC_ALL', '/tmp/evil'],
        ['LANG', 'en_US.UTF-8'],
        ['TZ', '/tmp/zone'],
      ]),
      config(['LC_ALL', 'LANG', 'TZ']),
      target,
    );
    assert.deepEqual(
      { ...env, HOME: undefined, USER: undefined, LOGNAME: undefined, PATH: undefined },
      { LANG: 'en_US.UTF-8', HOME: undefined, USER: undefined, LOGNAME: undefined, PATH: undefined },
    );
  });
  it('a preserved PATH wins over the default', () => {
    assert.equal(buildPayloadEnv(new Map([['PATH', '/opt/bin']]), config(['PATH']), target).env.PATH, '/opt/bin');
  });
});

describe('shim arguments and the command line', () => {
  it("the shim arguments are read, and the caller's arguments follow -- unchanged", () => {
    const shim = parseShimArgs([
      '--config=/etc/glexec.conf',
      '--caller-uid=1000',
      '--caller-gid=100',
      '--caller-groups=100,27',
      '--caller-cwd=/home/p q',
      '--caller-cwd-fd=5',
      '--caller-stderr-fd=4',
      '--caller-rlimits=cpu=10:unlimited',
      '--caller-env-fd=3',
      '--phase=conclude',
      '--plan-fd=7',
      '--done-fd=8',
      '--',
      '/bin/echo',
      '--',
      '-V',
    ]);
    assert.deepEqual(shim, {
      configPath: '/etc/glexec.conf',
      callerUid: 1000,
      callerGid: 100,
      callerGroups: [100, 27],
      callerCwd: '/home/p q',
      cwdFd: 5,
      stderrFd: 4,
      envFd: 3,
      callerLimits: new Map([['cpu', { soft: 10, hard: 'unlimited' }]]),
      proxy: undefined,
      argv: ['/bin/echo', '--', '-V'],
      phase: 'conclude',
      planFd: 7,
      doneFd: 8,
    });
  });
  it('phase 1 has no "done" descriptor: --done-fd=none', () => {
    assert.equal(parseShimArgs(['--caller-uid=1', '--caller-gid=1', '--done-fd=none', '--']).doneFd, undefined);
  });
  it('a working directory the shim could not open (-1) is no descriptor at all', () => {
    assert.equal(parseShimArgs(['--caller-uid=1', '--caller-gid=1', '--caller-cwd-fd=-1', '--']).cwdFd, undefined);
  });
  it('arguments that did not come from the shim are refused', () => {
    assert.equal(thrown(() => parseShimArgs(['/bin/true'])).code, 'shim.bad_args');
    assert.equal(
      thrown(() => parseShimArgs(['--caller-uid=1', '--caller-gid=1', '--phase=other', '--'])).code,
      'shim.bad_args',
    );
    assert.equal(thrown(() => parseShimArgs(['--caller-uid=x', '--'])).code, 'shim.bad_args');
  });
  it('the environment block keeps the first of a repeated name', () => {
    assert.deepEqual(
      [...parseEnvironmentBlock(Buffer.from('A=1\0B=x=y\0A=2\0junk\0'))],
      [
        ['A', '1'],
        ['B', 'x=y'],
      ],
    );
  });
  it('options after the payload path belong to the payload', () => {
    assert.deepEqual(toAction(['/bin/ls', '-V', '--help']), {
      kind: 'run',
      payload: '/bin/ls',
      args: ['-V', '--help'],
    });
  });
  it('-V asks for the version with the built-in paths', () =>
    assert.deepEqual(toAction(['-V']), { kind: 'version', builtIns: true }));
  it('-v asks for the version line only', () =>
    assert.deepEqual(toAction(['-v']), { kind: 'version', builtIns: false }));
  it('no payload asks for a proxy renewal (the pipeline decides whether it is one)', () =>
    assert.deepEqual(toAction([]), { kind: 'renew' }));
  it('a command line that starts with the payload is the run commander makes of it, whatever follows (commander is not loaded for it)', () => {
    const word = fc.oneof(
      fc.constantFrom('-v', '-V', '--check', '--help', '-h', '--', '-', '--frobnicate', '-vV', '--version=1', ''),
      fc.string(),
    );
    fc.assert(
      fc.property(
        word.filter((first) => !first.startsWith('-')),
        fc.array(word, { maxLength: 6 }),
        (first, rest) => {
          const argv = [first, ...rest];
          assert.deepEqual(toAction(argv), parseWithCommander(argv));
          assert.equal(toAction(argv).kind, 'run');
        },
      ),
      { numRuns: 500 },
    );
  });
  it('a command line that starts with an option, or is empty, is parsed by commander', () => {
    const outcome = (parse: () => unknown) => {
      try {
        return { action: parse() };
      } catch (error) {
        return { error: String(error), exitCode: (error as { exitCode?: number }).exitCode };
      }
    };
    for (const argv of [['-v', '/bin/true'], ['--', '/bin/true', '-v'], ['-', '/bin/true'], ['--check'], ['-x'], []])
      assert.deepEqual(
        outcome(() => toAction(argv)),
        outcome(() => parseWithCommander(argv)),
        argv.join(' '),
      );
  });
  it('an unknown option before the payload is a 201', () => {
    const error = thrown(() => toAction(['--frobnicate', '/bin/true']));
    assert.equal(error.exitCode, 201);
    assert.equal(error.message, "unknown option '--frobnicate'");
  });
  it('start-payload gets numeric ids, the groups list and the caller directory slot, then the payload after --', () => {
    assert.deepEqual(
      startPayloadArgs({ uid: asUid(1001), gid: asGid(1002), groups: [asGid(1002), asGid(1003)] }, '/bin/x', ['-a'], {
        cgroupProcs: ['/cg/job/cgroup.procs'],
        limits: ['cpu=7:unlimited'],
        cwdFd: 9,
        home: '/home/x',
        noSymlink: true,
      }),
      [
        '--cgroup-procs=/cg/job/cgroup.procs',
        '--rlimit=cpu=7:unlimited',
        '--uid=1001',
        '--gid=1002',
        '--groups=1002,1003',
        '--cwd-fd=4',
        '--home=/home/x',
        '--no-symlink',
        '--',
        '/bin/x',
        '-a',
      ],
    );
  });
  it('the version constant matches package.json', () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, '../../../package.json'), 'utf8')) as { version: string };
    assert.equal(VERSION, pkg.version);
  });
});

describe('timestamps', () => {
  it('isoTimestamp writes what toISOString writes, for every millisecond of the years 0 to 9999 and beyond', () => {
    const edges = [0, -1, 1, Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1), Date.UTC(0, 0, 1) - 1];
    edges.push(-62167219200000, -62167219200001, 8.64e15, -8.64e15, 1796185951499.5);
    for (const ms of edges) assert.equal(isoTimestamp(ms), new Date(ms).toISOString(), String(ms));
    fc.assert(
      fc.property(fc.integer({ min: -8.64e15, max: 8.64e15 }), (ms) => isoTimestamp(ms) === new Date(ms).toISOString()),
      { numRuns: 20000 },
    );
  });

  it('isoTimestamp throws for a time that is not one, as toISOString does', () => {
    assert.throws(() => isoTimestamp(NaN), RangeError);
    assert.throws(() => isoTimestamp(8.64e15 + 1), RangeError);
  });
});
