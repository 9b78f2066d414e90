/**
 * glexec end to end: the installed setuid shim, run by a real non-root pilot account, with a
 * proxy made by a test CA, mapping through a grid-mapfile to a real payload account.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestPki } from '../helpers/pki-fixtures';
import { installForSuite } from '../helpers/suite';
import { needsRoot, REPO, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;

/** The pilot's environment with its good proxy. */
const withProxy = (extra: Record<string, string | undefined> = {}) => ({
  GLEXEC_CLIENT_CERT: pki.pilotProxy,
  ...extra,
});

describe('glexec end to end', { skip: needsRoot }, () => {
  installForSuite((installed, testPki) => {
    system = installed;
    pki = testPki;
  });

  describe('the payload', () => {
    it('runs as the target uid, primary gid and supplementary groups from the group database', () => {
      const result = system.run(['/usr/bin/id'], { env: withProxy() });
      assert.equal(result.status, 0, result.stderr);
      const supplementary = Number(
        execFileSync('getent', ['group', system.supplementaryGroup], { encoding: 'utf8' }).split(':')[2],
      );
      assert.equal(
        result.stdout.trim(),
        `uid=${system.target.uid}(${system.target.name}) gid=${system.target.gid}(${system.target.name}g) groups=${system.target.gid}(${system.target.name}g),${supplementary}(${system.supplementaryGroup})`,
      );
    });

    it('is the leader of its own session and process group', () => {
      const script = system.installProgram('ids.sh', '#!/bin/sh\nps -o pid=,pgid=,sid= -p $$\n');
      const result = system.run([script], { env: withProxy() });
      assert.equal(result.status, 0, result.stderr);
      const [pid, pgid, sid] = result.stdout.trim().split(/\s+/).map(Number);
      assert.ok(pid !== undefined && pid > 1);
      assert.equal(pgid, pid);
      assert.equal(sid, pid);
    });

    it('gets exactly GLEXEC_* variables, preserved ones, and HOME, USER, LOGNAME and PATH for the target', () => {
      system.writeConfig(system.standardConfig(['preserve_env_variables = KEEP_ME']));
      const result = system.run(['/usr/bin/env'], {
        env: withProxy({
          GLEXEC_ID: 'job-42',
          KEEP_ME: 'kept',
          DROP_ME: 'dropped',
          HOME: '/home/pilot',
          X509_USER_PROXY: '/tmp/x',
          GLEXEC_EPILOG_TARGET_RC: '0',
          GLEXEC_FUNC: '() { :; }; echo pwned',
          LD_LIBRARY_PATH: '/tmp',
        }),
      });
      assert.equal(result.status, 0, result.stderr);
      const env = Object.fromEntries(
        result.stdout
          .trim()
          .split('\n')
          .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
      );
      assert.deepEqual(env, {
        GLEXEC_CLIENT_CERT: pki.pilotProxy,
        GLEXEC_ID: 'job-42',
        KEEP_ME: 'kept',
        HOME: join(system.root, 'home', system.target.name),
        USER: system.target.name,
        LOGNAME: system.target.name,
        PATH: '/usr/local/bin:/usr/bin:/bin',
      });
    });

    it('keeps its arguments unchanged, spaces, newlines and dashes included', () => {
      const args = ['two words', 'line\nbreak', '--', '-V', ''];
      const result = system.run(['/usr/bin/printf', '[%s]', ...args], { env: withProxy() });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, args.map((arg) => `[${arg}]`).join(''));
    });

    it("starts in the caller's working directory with umask 022, and reads the caller's stdin", () => {
      const script = system.installProgram('where.sh', '#!/bin/sh\npwd\numask\ncat\n');
      const result = system.run([script], { env: withProxy(), cwd: system.scratch, input: 'from stdin' });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, `${system.scratch}\n0022\nfrom stdin`);
    });
  });

  describe('exit codes', () => {
    const exitWith = (code: number) => system.run(['/bin/sh', '-c', `exit ${code}`], { env: withProxy() });

    it('a payload that exits 0 gives 0', () => assert.equal(exitWith(0).status, 0));
    it('a payload that exits 7 gives 7', () => assert.equal(exitWith(7).status, 7));
    it('a payload that exits 203 gives 204', () => assert.equal(exitWith(203).status, 204));
    it('a payload killed by SIGTERM gives 143 (128 + 15)', () => {
      assert.equal(system.run(['/bin/sh', '-c', 'kill -TERM $$'], { env: withProxy() }).status, 143);
    });
    it('a payload the target may not execute gives 126', () => {
      const path = system.installProgram('private.sh', '#!/bin/sh\necho ran\n', 0o700);
      assertRefused(
        system.run([path], { env: withProxy() }),
        126,
        `glexec: payload ${path} is not executable by ${system.target.name}`,
      );
    });
    it('a payload that does not exist gives 201', () => {
      assertRefused(
        system.run(['/no/such/payload'], { env: withProxy() }),
        201,
        'glexec: payload /no/such/payload does not exist',
      );
    });
    it('a relative payload path gives 201', () => {
      assertRefused(
        system.run(['true'], { env: withProxy() }),
        201,
        `glexec: payload must be an absolute path, got 'true'`,
      );
    });
    it('a payload that is a directory gives 126', () => {
      assertRefused(
        system.run([system.scratch], { env: withProxy() }),
        126,
        `glexec: payload ${system.scratch} is not a regular file`,
      );
    });
    it('a payload reached through a symlink gives 201 with prohibit_exec_via_symlink = yes, and runs without it', () => {
      const link = join(system.bin, 'true-link');
      rmSync(link, { force: true });
      symlinkSync('/usr/bin/true', link);
      assert.equal(system.run([link], { env: withProxy() }).status, 0);
      system.writeConfig(system.standardConfig(['prohibit_exec_via_symlink = yes']));
      assertRefused(
        system.run([link], { env: withProxy() }),
        201,
        `glexec: payload ${link} is a symbolic link and prohibit_exec_via_symlink is set`,
      );
    });
    it('an option glexec does not know, before the payload, gives 201', () => {
      assertRefused(
        system.run(['--frobnicate', '/bin/true'], { env: withProxy() }),
        201,
        `glexec: unknown option '--frobnicate'`,
      );
    });
    it('no payload at all gives 201 and the usage line', () => {
      assertRefused(
        system.run([], { env: withProxy() }),
        201,
        'glexec: usage: glexec /absolute/path/to/payload [arguments...]',
      );
    });
  });

  describe('the proxy', () => {
    it('no proxy variable gives 201', () => {
      assertRefused(
        system.run(['/bin/true']),
        201,
        'glexec: no proxy given: set GLEXEC_CLIENT_CERT (or X509_USER_PROXY) to the proxy file',
      );
    });
    it('X509_USER_PROXY is used when GLEXEC_CLIENT_CERT is unset', () => {
      assert.equal(system.run(['/bin/true'], { env: { X509_USER_PROXY: pki.pilotProxy } }).status, 0);
    });
    it('an empty GLEXEC_CLIENT_CERT gives 201', () => {
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: '' } }),
        201,
        'glexec: GLEXEC_CLIENT_CERT is set but empty',
      );
    });
    it('a proxy file that does not exist gives 201', () => {
      const path = join(system.scratch, 'missing.pem');
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: path } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${path} does not exist`,
      );
    });
    it('a proxy owned by someone else gives 201', () => {
      const path = pki.copyProxy('foreign.pem', system.stranger.uid, 0o644);
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: path } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${path} is owned by uid ${system.stranger.uid}, not by the caller (uid ${system.pilot.uid})`,
      );
    });

    it('a proxy the caller cannot read itself is never opened by root: 201', () => {
      const path = pki.copyProxy('unreadable.pem', system.stranger.uid, 0o600);
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: path } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${path} cannot be opened by the caller (EACCES)`,
      );
      // Its own file, in a directory it cannot enter: root could open it, the caller cannot.
      const hidden = join(system.root, 'hidden');
      mkdirSync(hidden, { recursive: true, mode: 0o700 });
      const inside = join(hidden, 'proxy.pem');
      writeFileSync(inside, readFileSync(pki.pilotProxy));
      chownSync(inside, system.pilot.uid, system.pilot.gid);
      chmodSync(inside, 0o600);
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: inside } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${inside} cannot be opened by the caller (EACCES)`,
      );
    });
    it('a proxy readable by group or others gives 201', () => {
      const path = pki.copyProxy('open.pem', system.pilot.uid, 0o644);
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: path } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${path} has mode 0644: group, other and special bits are not allowed (use chmod 600)`,
      );
    });
    it('a proxy reached through a symbolic link gives 201', () => {
      const link = join(system.scratch, 'link.pem');
      rmSync(link, { force: true });
      symlinkSync(pki.pilotProxy, link);
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: link } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${link} is a symbolic link; give the file itself`,
      );
    });
    it('an expired proxy gives 201', () => {
      const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.expiredProxy } });
      assertRefused(result, 201, /^glexec: proxy certificate .*CN=Jane Doe.* expired at .*$/);
    });
    it('a plain certificate that is not a proxy gives 203', () => {
      const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.plainCertificate } });
      assertRefused(result, 203, /^glexec: .*not a proxy.*$/);
    });
    it('a proxy from a CA that is not in certdir gives 203', () => {
      const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.unknownCaProxy } });
      assertRefused(result, 203, /^glexec: .*(unknown|not trusted|no trusted|CA).*$/i);
    });
    it('a certdir that others can write gives 202: a pilot must not be able to plant a CA', () => {
      chmodSync(system.certdir, 0o1777);
      try {
        assertRefused(
          system.run(['/bin/true'], { env: withProxy() }),
          202,
          `glexec: certificate directory ${system.certdir} is not trusted: ${system.certdir} is world-writable (sticky or not) (mode 1777)`,
        );
      } finally {
        chmodSync(system.certdir, 0o755);
      }
    });

    it('a FIFO given as the proxy is refused without blocking: 201', () => {
      const fifo = join(system.scratch, 'proxy.fifo');
      rmSync(fifo, { force: true });
      execFileSync('mkfifo', ['-m', '600', fifo]);
      chownSync(fifo, system.pilot.uid, system.pilot.gid);
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: fifo } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${fifo} is not a regular file`,
      );
    });

    it('an empty proxy file is refused: 201', () => {
      const path = join(system.scratch, 'empty.pem');
      writeFileSync(path, '');
      chownSync(path, system.pilot.uid, system.pilot.gid);
      chmodSync(path, 0o600);
      assertRefused(
        system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: path } }),
        201,
        `glexec: GLEXEC_CLIENT_CERT ${path} is empty`,
      );
    });

    it('a proxy file without its private key is refused: 201', () => {
      const path = join(system.scratch, 'nokey.pem');
      const text = readFileSync(pki.pilotProxy, 'utf8').replace(
        /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----\n/,
        '',
      );
      writeFileSync(path, text);
      chownSync(path, system.pilot.uid, system.pilot.gid);
      chmodSync(path, 0o600);
      const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: path } });
      assertRefused(
        result,
        201,
        /^glexec: the proxy file holds no private key for proxy certificate \/C=NL\/O=Example\/CN=Jane Doe\/CN=\d+$/,
      );
    });

    it('a legacy (pre-RFC 3820) proxy is accepted', () => {
      assert.equal(system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.legacyProxy } }).status, 0);
    });
  });

  describe('the target proxy', () => {
    const targetPath = () => join(system.scratch, 'target-proxy.pem');
    beforeEach(() => rmSync(targetPath(), { force: true }));

    it('GLEXEC_SOURCE_PROXY is copied to GLEXEC_TARGET_PROXY as the target, mode 0600, and X509_USER_PROXY points at it', () => {
      const result = system.run(['/bin/sh', '-c', 'echo "$X509_USER_PROXY"; stat -c "%u %a" "$X509_USER_PROXY"'], {
        env: withProxy({ GLEXEC_SOURCE_PROXY: pki.pilotProxy, GLEXEC_TARGET_PROXY: targetPath() }),
      });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, `${targetPath()}\n${system.target.uid} 600\n`);
      assert.deepEqual(readFileSync(targetPath()), readFileSync(pki.pilotProxy));
    });

    it('with create_target_proxy = yes and no GLEXEC_TARGET_PROXY, the copy goes to /tmp under a name nobody can guess, for the run only', () => {
      system.writeConfig(system.standardConfig(['create_target_proxy = yes']));
      const result = system.run(['/bin/sh', '-c', 'echo "$X509_USER_PROXY"; cat "$X509_USER_PROXY"'], {
        env: withProxy(),
      });
      assert.equal(result.status, 0, result.stderr);
      const [path = '', ...contents] = result.stdout.split('\n');
      assert.match(path, new RegExp(`^/tmp/x509up_u${system.target.uid}\\.glexec\\.[0-9a-f]{16}$`));
      assert.equal(contents.join('\n'), readFileSync(pki.pilotProxy, 'utf8'));
      assert.equal(existsSync(path), false);
    });

    it('a target proxy in a directory that does not exist gives 201', () => {
      const missing = join(system.scratch, 'no-such-dir/proxy');
      const result = system.run(['/bin/true'], {
        env: withProxy({ GLEXEC_SOURCE_PROXY: pki.pilotProxy, GLEXEC_TARGET_PROXY: missing }),
      });
      assertRefused(result, 201, /^glexec: .*no-such-dir.*(does not exist|No such)/);
    });

    it('an empty GLEXEC_SOURCE_PROXY or GLEXEC_TARGET_PROXY gives 201', () => {
      for (const env of [{ GLEXEC_SOURCE_PROXY: '' }, { GLEXEC_TARGET_PROXY: '' }]) {
        const result = system.run(['/bin/true'], { env: withProxy(env) });
        assertRefused(result, 201, /^glexec: GLEXEC_(SOURCE|TARGET)_PROXY .*empty/);
      }
    });

    it('an existing target file of someone else is never overwritten: 201', () => {
      writeFileSync(targetPath(), 'not yours\n', { mode: 0o644 });
      chownSync(targetPath(), system.stranger.uid, system.stranger.gid);
      const result = system.run(['/bin/true'], {
        env: withProxy({ GLEXEC_SOURCE_PROXY: pki.pilotProxy, GLEXEC_TARGET_PROXY: targetPath() }),
      });
      assert.equal(result.status, 201);
      assert.equal(readFileSync(targetPath(), 'utf8'), 'not yours\n');
    });
  });

  describe('caller and mapping', () => {
    it('a caller in no white list gives 203', () => {
      const strangerProxy = pki.copyProxy('stranger.pem', system.stranger.uid, 0o600);
      assertRefused(
        system.run(['/bin/true'], { as: system.stranger, env: { GLEXEC_CLIENT_CERT: strangerProxy } }),
        203,
        `glexec: caller ${system.stranger.name} (uid ${system.stranger.uid}) is not in user_white_list or group_white_list`,
      );
    });
    it('an empty white list allows nobody', () => {
      system.writeConfig(system.standardConfig(['user_white_list =']));
      assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 203);
    });
    it('a caller allowed by its group in group_white_list runs', () => {
      system.writeConfig(system.standardConfig(['user_white_list =', `group_white_list = ${system.pilot.name}g`]));
      assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
    });
    it('user_white_list = * allows anyone and logs a warning', () => {
      system.writeConfig(system.standardConfig(['user_white_list = *']));
      assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
      assert.ok(
        system
          .logRecords()
          .some(
            (record) =>
              record.level === 'warn' &&
              record.msg === 'All users are allowed to use glexec, this might not be what you want.',
          ),
      );
    });
    it('a DN without a grid-mapfile entry gives 203', () => {
      system.writeGridMap(['"/C=NL/O=Example/CN=Somebody Else" nobody']);
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        203,
        `glexec: ${pki.userDn} has no entry in grid-mapfile ${system.gridmapPath}`,
      );
    });
    it('a mapping to an account that does not exist gives 203', () => {
      system.writeGridMap([`"${pki.userDn}" nosuchaccount`]);
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        203,
        `glexec: ${pki.userDn} maps to account 'nosuchaccount', which does not exist`,
      );
    });
    it('a mapping to root gives 203', () => {
      system.writeGridMap([`"${pki.userDn}" root`]);
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        203,
        `glexec: ${pki.userDn} maps to 'root', which has uid 0; glexec never runs payloads as root`,
      );
    });
    it('a grid-mapfile that others can write gives 202', () => {
      chmodSync(system.gridmapPath, 0o666);
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        202,
        `glexec: grid-mapfile ${system.gridmapPath} is not trusted: ${system.gridmapPath} is world-writable (mode 0666)`,
      );
    });
  });

  describe('glexec.conf', () => {
    it('a missing configuration file gives 202', () => {
      rmSync(system.configPath);
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        202,
        `glexec: configuration file ${system.configPath} cannot be checked: ENOENT`,
      );
    });
    it('an unknown key gives 202 naming it', () => {
      system.writeConfig(system.standardConfig(['epilog = /bin/true']));
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        202,
        `glexec: ${system.configPath}: unknown key 'epilog' in [glexec]`,
      );
    });
    it('a bad value gives 202 naming the key and the value', () => {
      system.writeConfig(system.standardConfig(['log_destination = foo']));
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        202,
        `glexec: ${system.configPath}: value 'foo' for key 'log_destination' not understood: expected one of syslog, file`,
      );
    });
    it('a configuration file writable by its group gives 202', () => {
      chmodSync(system.configPath, 0o620);
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        202,
        `glexec: configuration file ${system.configPath} is not trusted: ${system.configPath} is writable by group gid 0, which is not trusted (mode 0620)`,
      );
    });
    it('a configuration file owned by another account gives 202', () => {
      chownSync(system.configPath, system.pilot.uid, 0);
      assertRefused(
        system.run(['/bin/true'], { env: withProxy() }),
        202,
        `glexec: configuration file ${system.configPath} is not trusted: ${system.configPath} is owned by uid ${system.pilot.uid}, not by root`,
      );
    });
    it("silent_logging = yes keeps the caller's stderr empty but still logs the error", () => {
      system.writeConfig(system.standardConfig(['silent_logging = yes']));
      const result = system.run(['/no/such/payload'], { env: withProxy() });
      assert.equal(result.status, 201);
      assert.equal(result.stderr, '');
      assert.ok(system.logRecords().some((record) => record.level === 'error' && record.code === 'payload.missing'));
    });
  });

  describe('the installation', () => {
    it('install-system installs the shim setuid root, the program, the addon and the man pages, all root-owned and writable by root only', () => {
      const prefix = join(system.root, 'prefix');
      const listing = execFileSync('find', [prefix, '-mindepth', '1', '-printf', '%P %u %g %m %y\n'], {
        encoding: 'utf8',
      })
        .trim()
        .split('\n')
        .filter((line) => !/^lib\/glexec\/glexec-(main|conclude)\.[0-9a-f-]+\.cache /.test(line))
        .sort();
      assert.deepEqual(listing, [
        'lib root root 755 d',
        'lib/glexec root root 755 d',
        'lib/glexec/flock.node root root 644 f',
        'lib/glexec/glexec-check.js root root 644 f',
        'lib/glexec/glexec-cli.js root root 644 f',
        'lib/glexec/glexec-conclude.js root root 644 f',
        'lib/glexec/glexec-lcmaps.js root root 644 f',
        'lib/glexec/glexec-main.js root root 644 f',
        'lib/glexec/glexec-voms.js root root 644 f',
        'lib/glexec/glexec.js root root 644 f',
        'lib/glexec/lcmaps-helper root root 700 f',
        'lib/glexec/posix.node root root 644 f',
        'lib/glexec/start-payload root root 700 f',
        'sbin root root 755 d',
        'sbin/glexec root root 4755 f',
        'share root root 755 d',
        'share/man root root 755 d',
        'share/man/man5 root root 755 d',
        'share/man/man5/glexec.conf.5 root root 644 f',
        'share/man/man8 root root 755 d',
        'share/man/man8/glexec.8 root root 644 f',
      ]);
    });

    it("after a full run glexec keeps a V8 code cache of each phase's bundle, root-owned and writable by root only", () => {
      assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
      const lib = join(system.root, 'prefix/lib/glexec');
      for (const bundle of ['main', 'conclude']) {
        const caches = readdirSync(lib).filter((name) =>
          new RegExp(`^glexec-${bundle}\\.[0-9a-f]+(-[0-9a-f]+){4}\\.cache$`).test(name),
        );
        assert.equal(caches.length, 1, bundle);
        assert.equal(
          execFileSync('stat', ['-c', '%u %g %a %F', join(lib, caches[0] ?? '')], { encoding: 'utf8' }),
          '0 0 644 regular file\n',
        );
      }
    });

    it('never reads the code cache of another bundle: one edited in place, at the same length, gets a cache of its own', () => {
      const lib = join(system.root, 'prefix/lib/glexec');
      const caches = (): string[] =>
        readdirSync(lib).filter((name) => name.startsWith('glexec-main.') && name.endsWith('.cache'));
      assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
      const [first] = caches();
      assert.ok(first !== undefined, 'no code cache after a full run');
      const bundle = join(lib, 'glexec-main.js');
      const original = readFileSync(bundle, 'latin1');
      assert.ok(original.includes('"0.1.0"'), 'the version literal is not in the bundle');
      // Written into the same inode, same length: V8's own check (the source's length) cannot tell.
      writeFileSync(bundle, original.replace('"0.1.0"', '"9.9.9"'), { encoding: 'latin1', flag: 'r+' });
      try {
        assert.match(system.run(['-v']).stdout, /^glexec 9\.9\.9 /);
        assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
        const now = caches();
        assert.equal(now.length, 1, `one cache, not ${now.join(', ')}`);
        assert.notEqual(now[0], first);
      } finally {
        writeFileSync(bundle, original, { encoding: 'latin1', flag: 'r+' });
      }
    });

    it('install-system refuses a prefix that others can write', () => {
      const open = join(system.scratch, 'open-prefix');
      const result = spawnSync(
        process.execPath,
        [join(REPO, 'scripts/install-system.mjs'), `--prefix=${open}`, `--config=${system.configPath}`],
        { encoding: 'utf8' },
      );
      assert.equal(result.status, 1);
      assert.match(
        result.stderr,
        new RegExp(
          `^install-system: prefix: ${system.scratch} must be owned by root and not writable by group or others`,
        ),
      );
    });
  });

  describe('the setuid shim', () => {
    it('-V prints the version and the built-in paths', () => {
      const result = system.run(['-V']);
      assert.equal(result.status, 0, result.stderr);
      const lines = result.stdout.split('\n');
      assert.match(lines[0] ?? '', /^glexec \d+\.\d+\.\d+ /);
      assert.equal(lines[1], `GLEXEC_CONFIG_FILE="${system.configPath}"`);
      assert.equal(lines[2], `GLEXEC_NODE="${process.execPath}"`);
      assert.equal(lines[3], `GLEXEC_PROGRAM="${join(system.root, 'prefix/lib/glexec/glexec.js')}"`);
    });

    it('-h prints the usage and every option (commander, from the installed glexec-cli.js) and exits 0', () => {
      const result = system.run(['-h']);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stderr, '');
      assert.match(
        result.stdout,
        /^Usage: glexec \[-v \| -V \| --check\] \/absolute\/path\/to\/payload \[arguments\.\.\.\]\n/,
      );
      for (const option of ['-v', '-V, --version', '--check', '-h, --help'])
        assert.ok(result.stdout.includes(`  ${option} `), option);
    });

    it('refuses to run unless it is setuid root', () => {
      const copy = join(system.bin, 'glexec-no-setuid');
      copyFileSync(system.shim, copy);
      chmodSync(copy, 0o755);
      const result = spawnSync(
        '/usr/bin/setpriv',
        [
          '--reuid',
          String(system.pilot.uid),
          '--regid',
          String(system.pilot.gid),
          '--init-groups',
          '--',
          copy,
          '/bin/true',
        ],
        { encoding: 'utf8' },
      );
      assertRefused(result, 202, 'glexec: not installed setuid root; ask the site administrator to run install-system');
    });

    it('NODE_OPTIONS, LD_PRELOAD and friends set by the caller have no effect', () => {
      const marker = join(system.scratch, 'hijacked');
      rmSync(marker, { force: true });
      const script = join(system.scratch, 'hijack.js');
      writeFileSync(
        script,
        `require('fs').appendFileSync(${JSON.stringify(marker)}, 'node ' + process.pid + '\\n')\n`,
        { mode: 0o644 },
      );
      const library = join(system.scratch, 'hijack.so');
      const source = join(system.scratch, 'hijack.c');
      // Records every process the library is loaded into: its parent pid and its executable.
      writeFileSync(
        source,
        [
          '#include <stdio.h>',
          '#include <unistd.h>',
          '__attribute__((constructor)) static void hijack(void) {',
          '  char exe[256] = ""; ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1); if (n > 0) exe[n] = 0;',
          `  FILE *f = fopen("${marker}", "a"); if (f) { fprintf(f, "preload %d %s\\n", (int)getppid(), exe); fclose(f); }`,
          '}',
          '',
        ].join('\n'),
      );
      execFileSync('gcc', ['-shared', '-fPIC', '-o', library, source]);
      chmodSync(library, 0o755);
      const result = system.run(['/bin/true'], {
        env: withProxy({
          NODE_OPTIONS: `--require ${script}`,
          NODE_PATH: system.scratch,
          LD_PRELOAD: library,
          LD_LIBRARY_PATH: system.scratch,
          TZ: '/etc/passwd',
          GCONV_PATH: system.scratch,
        }),
      });
      assert.equal(result.status, 0, result.stderr);
      // The test's own setpriv (child of this test process, switching to the pilot) loads it; nothing after the shim may.
      const hits = existsSync(marker) ? readFileSync(marker, 'utf8').split('\n').filter(Boolean) : [];
      assert.deepEqual(
        hits.filter((line) => line !== `preload ${process.pid} /usr/bin/setpriv`),
        [],
      );
    });

    it('the caller cannot signal the lingering glexec, not even with SIGKILL', async () => {
      const child = system.start(['/bin/sleep', '30'], { env: withProxy() });
      try {
        const glexecPid = await waitForGlexec(child.pid ?? 0);
        for (const signal of ['-USR1', '-KILL', '-TERM']) {
          const result = spawnSync(
            '/usr/bin/setpriv',
            [
              '--reuid',
              String(system.pilot.uid),
              '--regid',
              String(system.pilot.gid),
              '--init-groups',
              '--',
              '/bin/kill',
              signal,
              String(glexecPid),
            ],
            { encoding: 'utf8' },
          );
          assert.notEqual(result.status, 0);
          assert.match(result.stderr, /Operation not permitted/);
        }
        assert.ok(isAlive(glexecPid));
      } finally {
        // Root may: SIGTERM reaches the payload, and glexec cleans up (cgroup included) and exits.
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    });

    it("a SIGTERM from root reaches the payload's process group, and glexec exits 143", async () => {
      const child = system.start(['/bin/sh', '-c', 'sleep 30 & wait'], { env: withProxy() });
      const glexecPid = await waitForGlexec(child.pid ?? 0);
      await waitForProcessOf(system.target.uid, 'sleep');
      process.kill(glexecPid, 'SIGTERM');
      const status = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      assert.equal(status, 143);
      assert.equal(processesOf(system.target.uid).length, 0);
    });
  });

  describe('resource limits', () => {
    // Soft limits: lifting a caller's hard limit needs CAP_SYS_RESOURCE, which root in a confined
    // test machine may lack (glexec then lifts soft limits up to the hard ones).
    it("a caller's file-size and CPU limits bind the payload but cannot stop the completion record", () => {
      const script = system.installProgram(
        'limits.sh',
        '#!/bin/sh\necho "fsize=$(ulimit -S -f) cpu=$(ulimit -S -t)"\n',
      );
      const result = system.run([script], { env: withProxy(), before: 'ulimit -S -f 1; ulimit -S -t 7' });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, 'fsize=1 cpu=7\n');
      // The log is far past 512 bytes by now: the record could not have been appended under the caller's limit.
      assert.equal(system.logRecords().filter((entry) => entry.msg === 'job completed').length, 1);
    });

    it("a caller's hard file-size limit is lifted with CAP_SYS_RESOURCE, and refused (202) without it", () => {
      const capEff = BigInt(
        `0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'}`,
      );
      const canLift = (capEff & (1n << 24n)) !== 0n;
      const result = system.run(['/bin/sh', '-c', 'ulimit -H -f'], { env: withProxy(), before: 'ulimit -f 4' });
      if (canLift) {
        assert.equal(result.status, 0, result.stderr);
        assert.equal(result.stdout, '4\n');
      } else {
        assertRefused(
          result,
          202,
          `glexec: the caller's hard fsize limit cannot be lifted (that needs CAP_SYS_RESOURCE): Operation not permitted`,
        );
      }
    });

    it('a caller with a tiny descriptor limit still gets a working glexec', () => {
      const result = system.run(['/bin/sh', '-c', 'ulimit -S -n'], { env: withProxy(), before: 'ulimit -S -n 8' });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, '8\n');
    });

    it("a caller with a tiny soft stack limit gets its payload started with it, not a start that dies of SIGSEGV and reads as the payload's", () => {
      // The monitor's child starts the payload on the monitor's stack, whose growth the caller's limit would forbid.
      for (const kib of [16, 64]) {
        const result = system.run(['/bin/sh', '-c', 'ulimit -S -s'], {
          env: withProxy(),
          before: `ulimit -S -s ${kib}`,
        });
        assert.equal(result.status, 0, `${kib} KiB: ${result.status} ${result.stderr}`);
        assert.equal(result.stdout, `${kib}\n`);
      }
    });

    it('a caller with a soft data limit of 384 KiB still gets a working glexec: the setuid shim carries no large zero-initialised data', () => {
      // The shim is loaded under the caller's limits; 256 KiB of static data more made it fail there.
      const result = system.run(['/bin/sh', '-c', 'ulimit -S -d'], { env: withProxy(), before: 'ulimit -S -d 384' });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, '384\n');
    });
  });

  describe('linger and leftovers', () => {
    it('what the payload leaves in its process group gets SIGTERM, then SIGKILL after kill_grace', () => {
      const script = system.installProgram(
        'leave.sh',
        "#!/bin/sh\ntrap '' TERM\n/bin/sh -c \"trap '' TERM; sleep 60\" &\nexit 3\n",
      );
      const result = system.run([script], { env: withProxy() });
      assert.equal(result.status, 3, result.stderr);
      assert.deepEqual(processesOf(system.target.uid), []);
      const record = system.logRecords().find((entry) => entry.msg === 'job completed');
      assert.equal(record?.cleanup, 'killed');
    });
  });

  describe('logging', () => {
    it('writes one completion record with caller, target, command, pids, exit and duration', () => {
      const result = system.run(['/bin/sh', '-c', 'exit 5'], {
        env: withProxy({ GLEXEC_ID: 'evil\n{"msg":"job completed","forged":true}' }),
      });
      assert.equal(result.status, 5);
      const text = readFileSync(system.logFile, 'utf8');
      for (const line of text.split('\n').filter(Boolean)) JSON.parse(line);
      assert.ok(!text.includes('\n{"msg":"job completed","forged"'));
      const records = system.logRecords().filter((entry) => entry.msg === 'job completed');
      assert.equal(records.length, 1);
      const record = records[0] as Record<string, unknown>;
      assert.deepEqual(record.caller, {
        user: system.pilot.name,
        uid: system.pilot.uid,
        gid: system.pilot.gid,
        groups: [system.pilot.gid],
      });
      assert.equal((record.target as { user: string }).user, system.target.name);
      assert.equal(record.dn, pki.userDn);
      assert.deepEqual(record.command, ['/bin/sh', '-c', 'exit 5']);
      assert.deepEqual(record.ending, { code: 5 });
      assert.equal(record.exitCode, 5);
      assert.equal(record.level, 'notice');
      assert.equal(record.id, 'evil\\x0A{"msg":"job completed","forged":true}');
      assert.equal(typeof record.payloadPid, 'number');
      assert.equal(typeof record.payloadMs, 'number');
      assert.equal(typeof record.totalMs, 'number');
    });

    it("the completion record gives the payload's duration and the whole run's apart", () => {
      assert.equal(system.run(['/bin/sleep', '0.3'], { env: withProxy() }).status, 0);
      const record = system.logRecords().find((entry) => entry.msg === 'job completed') as {
        payloadMs: number;
        totalMs: number;
        durationMs?: number;
      };
      assert.ok(record.payloadMs >= 300, `payloadMs ${record.payloadMs}`);
      assert.ok(record.totalMs > record.payloadMs, `totalMs ${record.totalMs}, payloadMs ${record.payloadMs}`);
      assert.equal(record.durationMs, undefined);
    });

    it('the completion record is written even with log_level = 0', () => {
      system.writeConfig(system.standardConfig(['log_level = 0']));
      assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
      assert.deepEqual(
        system.logRecords().map((entry) => entry.msg),
        ['job completed'],
      );
    });

    it("a log_level above 5 is clamped with gLExec's warning", () => {
      system.writeConfig(system.standardConfig(['log_level = 9']));
      assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
      assert.ok(
        system.logRecords().some((entry) => entry.msg === 'Specified loglevel 9 is too large, using max. log level 5.'),
      );
    });

    it('a log file that is a symbolic link is refused with 202', () => {
      const target = join(system.root, 'log/elsewhere');
      writeFileSync(target, '');
      system.clearLog();
      symlinkSync(target, system.logFile);
      try {
        const result = system.run(['/bin/true'], { env: withProxy() });
        assertRefused(result, 202, /^glexec: cannot open log file .*: ELOOP$/);
      } finally {
        system.clearLog();
      }
    });

    it('a log directory that others can write is refused with 202', () => {
      const dir = join(system.scratch, 'logs');
      system.writeConfig(system.standardConfig([`log_file = ${dir}/glexec_log`]));
      execFileSync('mkdir', ['-p', '-m', '0777', dir]);
      chmodSync(dir, 0o777);
      const result = system.run(['/bin/true'], { env: withProxy() });
      assertRefused(result, 202, /^glexec: log directory .* is not trusted: .* is world-writable/);
    });

    it('a huge argv cannot keep the job out of syslog: long values are cut', () => {
      system.writeConfig(system.standardConfig(['log_destination = syslog']));
      // Together past what one syslog datagram may carry (about 208 KiB here); each below exec's 128 KiB.
      const huge = 'A'.repeat(120_000);
      const { status, stderr, datagrams } = system.runWithSyslog(['/bin/true', huge, huge], {
        GLEXEC_CLIENT_CERT: pki.pilotProxy,
      });
      assert.equal(status, 0, stderr);
      const completion = datagrams.filter((line) => line.includes('job completed'));
      assert.equal(completion.length, 1);
      assert.match(completion[0] ?? '', /…\[118976 more characters\]/);
    });

    it('with log_destination = syslog the completion record reaches /dev/log as one line, with facility and ident', () => {
      system.writeConfig(system.standardConfig(['log_destination = syslog', 'syslog_facility = LOG_LOCAL3']));
      const { status, stderr, datagrams } = system.runWithSyslog(['/bin/true'], {
        GLEXEC_CLIENT_CERT: pki.pilotProxy,
        GLEXEC_ID: 'a\nb',
      });
      assert.equal(status, 0, stderr);
      const completion = datagrams.filter((line) => line.includes('job completed'));
      assert.equal(completion.length, 1, datagrams.join('|'));
      // local3 = 19, notice = 5: <157>; ident glexec with the pid.
      assert.match(completion[0] ?? '', /^<157>.* glexec\[\d+\]: job completed .*id="a\\\\x0Ab" /);
      assert.ok(!(completion[0] ?? '').slice(0, -1).includes('\n'));
    });
  });
});

async function waitForGlexec(setprivPid: number): Promise<number> {
  // setpriv execs the shim, which execs node: the pid stays the same.
  for (let i = 0; i < 200; i++) {
    const status = readStatus(setprivPid);
    if (status && /^Uid:\s+0\s+0\s+0\s+0$/m.test(status) && spawnSync('pgrep', ['-P', String(setprivPid)]).status === 0)
      return setprivPid;
    await sleep(25);
  }
  throw new Error('glexec did not start its payload');
}

function readStatus(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  return readStatus(pid) !== undefined;
}

/** Running processes of `uid`; zombies (killed, not yet reaped by init) do not count. */
function processesOf(uid: number): string[] {
  const result = spawnSync('ps', ['-o', 'pid=,stat=', '-u', String(uid)], { encoding: 'utf8' });
  return result.stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([pid, stat]) => pid && !stat?.startsWith('Z'))
    .map(([pid]) => pid as string);
}

async function waitForProcessOf(uid: number, name: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (spawnSync('pgrep', ['-u', String(uid), '-x', name]).status === 0) return;
    await sleep(25);
  }
  throw new Error(`no ${name} of uid ${uid} appeared`);
}
