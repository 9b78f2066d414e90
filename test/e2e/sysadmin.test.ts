/**
 * What a site admin meets first, through the installed shim: each kind of problem that
 * `glexec --check` finds gets the fix for that kind (and applying it removes the problem), and the
 * common mistakes are named, in --check and in the run.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { TestPki } from '../helpers/pki-fixtures';
import { installForSuite } from '../helpers/suite';
import { type Account, needsRoot, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;
const root: Account = { name: 'root', uid: 0, gid: 0 };

function check(): { status: number | null; lines: string[] } {
  const result = system.run(['--check'], { as: root });
  return { status: result.status, lines: result.stdout.split('\n').filter(Boolean) };
}

/** The one `level` line for `item` whose message contains `text`: its message and its fix. */
function finding(
  lines: string[],
  level: 'error' | 'warning',
  item: string,
  text: string,
): { message: string; fix: string } {
  const found = lines.filter((line) => line.startsWith(`${level.padEnd(7)} ${item}: `) && line.includes(text));
  assert.equal(found.length, 1, `expected one ${level} for ${item} with "${text}":\n${lines.join('\n')}`);
  const match = /^\S+\s+[^:]+: (.*) \(fix: (.*)\)$/.exec(found[0] ?? '');
  assert.ok(match, `no fix in: ${found[0]}`);
  return { message: match[1] ?? '', fix: match[2] ?? '' };
}

/** Nothing but ok lines for `item`. */
function allOk(lines: string[], item: string): void {
  const mine = lines.filter((line) => line.includes(` ${item}: `));
  assert.ok(mine.length > 0 && mine.every((line) => line.startsWith('ok ')), mine.join('\n'));
}

const withProxy = (path = pki.pilotProxy) => ({ GLEXEC_CLIENT_CERT: path });

describe('glexec --check gives each kind of problem its own fix', { skip: needsRoot }, () => {
  installForSuite(
    (installed, testPki) => {
      system = installed;
      pki = testPki;
    },
    { keepLog: true },
  );

  it('a missing file: create it, or set its key', () => {
    const absent = join(system.root, 'etc/no-grid-mapfile');
    system.writeConfig(system.standardConfig([`gridmapfile = ${absent}`]));
    const { fix } = finding(check().lines, 'error', 'grid-mapfile', 'cannot be checked: ENOENT');
    assert.equal(fix, `create ${absent}, or set gridmapfile to the right path`);
  });

  it('a missing directory: create that directory, or set its key', () => {
    const absent = join(system.root, 'no-certs');
    system.writeConfig(system.standardConfig([`certdir = ${absent}/certificates`]));
    const { fix } = finding(check().lines, 'error', 'certdir', 'cannot be checked: ENOENT');
    assert.equal(fix, `create ${absent}, or set certdir to the right path`);
  });

  it('a missing configuration file: install the example there, since its path is compiled in', () => {
    const saved = join(system.root, 'glexec.conf.saved');
    copyFileSync(system.configPath, saved);
    rmSync(system.configPath);
    try {
      const { status, lines } = check();
      assert.equal(status, 202);
      const { fix } = finding(lines, 'error', 'config', 'cannot be checked: ENOENT');
      assert.equal(fix, `install etc/glexec.conf (a commented example) as ${system.configPath}, root-owned, mode 0600`);
    } finally {
      copyFileSync(saved, system.configPath);
    }
  });

  it('a symbolic link in the path: the canonical path, as a setting', () => {
    const real = join(system.root, 'real-epilogues');
    const link = join(system.root, 'linked-epilogues');
    mkdirSync(real, { mode: 0o755 });
    chmodSync(real, 0o755);
    copyFileSync('/bin/true', join(real, 'e'));
    chmodSync(join(real, 'e'), 0o755);
    symlinkSync(real, link);
    system.writeConfig(system.standardConfig([`epilogue = ${link}/e`]));
    const { message, fix } = finding(check().lines, 'error', 'epilogue', 'is a symbolic link');
    assert.equal(message, `epilogue ${link}/e is not trusted: ${link} is a symbolic link (the path must be canonical)`);
    assert.equal(
      fix,
      `use the canonical path: set epilogue = ${real}/e (e.g. /usr/bin/… rather than /bin/… on merged-/usr systems)`,
    );
    system.writeConfig(system.standardConfig([`epilogue = ${real}/e`]));
    allOk(check().lines, 'epilogue');
  });

  it('a configuration file reached through a symbolic link: install again with its canonical path, which is compiled in', () => {
    const etc = join(system.root, 'etc');
    const real = join(system.root, 'etc-real');
    renameSync(etc, real);
    symlinkSync(real, etc);
    try {
      const { fix } = finding(check().lines, 'error', 'config', `${etc} is a symbolic link`);
      assert.equal(fix, `run install-system again with --config=${real}/glexec.conf (the canonical path)`);
    } finally {
      rmSync(etc);
      renameSync(real, etc);
    }
  });

  it('a group-writable directory: chmod go-w that directory, and nothing about owners', () => {
    chmodSync(system.certdir, 0o775);
    try {
      const { message, fix } = finding(check().lines, 'error', 'certdir', 'is writable by group');
      assert.match(message, new RegExp(`${system.certdir} is writable by group gid 0`));
      assert.equal(fix, `chmod go-w ${system.certdir}`);
    } finally {
      chmodSync(system.certdir, 0o755);
    }
    allOk(check().lines, 'certdir');
  });

  it('a file someone else owns: chown root:root that file', () => {
    chownSync(system.gridmapPath, system.pilot.uid, 0);
    const { message, fix } = finding(check().lines, 'error', 'grid-mapfile', 'is owned by uid');
    assert.match(message, new RegExp(`${system.gridmapPath} is owned by uid ${system.pilot.uid}, not by root`));
    assert.equal(fix, `chown root:root ${system.gridmapPath}`);
    chownSync(system.gridmapPath, 0, 0);
    allOk(check().lines, 'grid-mapfile');
  });

  it('a missing account or group: create it, or correct the key', () => {
    const epilogue = system.copyProgram('/bin/true', 'quiet-epilogue');
    system.writeConfig(
      system.standardConfig([
        `epilogue = ${epilogue}`,
        `epilogue_user = ${system.prefix}nosuch`,
        `log_file_group = ${system.prefix}nogroup`,
      ]),
    );
    const { lines } = check();
    assert.equal(
      finding(lines, 'error', 'epilogue', `epilogue_user '${system.prefix}nosuch' does not exist`).fix,
      'create the account, or correct epilogue_user',
    );
    assert.equal(
      finding(lines, 'error', 'log', `log_file_group '${system.prefix}nogroup' does not exist`).fix,
      'create the group, or correct log_file_group',
    );
  });

  it('a white list naming an account that does not exist: create it, or correct user_white_list', () => {
    system.writeConfig(system.standardConfig([`user_white_list = ${system.pilot.name}, ${system.prefix}ghost`]));
    assert.equal(
      finding(check().lines, 'warning', 'white lists', `do not exist: ${system.prefix}ghost`).fix,
      'create them, or correct user_white_list',
    );
  });

  it('a value that does not parse: the file, the line, and what was expected', () => {
    const lines = system.standardConfig(['linger = maybe']);
    system.writeConfig(lines);
    const line = lines.indexOf('linger = maybe') + 2; // after the [glexec] line
    const { fix } = finding(check().lines, 'error', 'config', "value 'maybe' for key 'linger'");
    assert.equal(fix, `correct ${system.configPath} line ${line}: expected yes or no`);
  });

  it('a grid-mapfile syntax error: what a line must look like', () => {
    system.writeGridMap([`"${pki.userDn}" ${system.target.name}`, '"/C=NL/CN=unterminated acct']);
    const { fix } = finding(check().lines, 'error', 'grid-mapfile', 'line 2: the quoted DN has no closing quote');
    assert.equal(fix, 'correct that line: expected "DN" account[,account…], the DN in double quotes');
  });

  it('CA certificates without their <hash>.0 file: openssl rehash, which removes the error', () => {
    const unhashed = join(system.root, 'certs-unhashed');
    mkdirSync(unhashed, { mode: 0o755 });
    chmodSync(unhashed, 0o755);
    const [anchor] = readdirSync(system.certdir).filter((name) => /^[0-9a-f]{8}\.0$/.test(name));
    assert.ok(anchor);
    copyFileSync(join(system.certdir, anchor), join(unhashed, 'example-ca.pem'));
    system.writeConfig(system.standardConfig([`certdir = ${unhashed}`]));
    const { message, fix } = finding(check().lines, 'error', 'certdir', 'have no <hash>.0 file');
    assert.match(message, new RegExp(`example-ca\\.pem \\(${anchor.slice(0, 8)}\\.0\\)`));
    assert.equal(fix, `run openssl rehash ${unhashed} (or c_rehash ${unhashed})`);
    execFileSync('openssl', ['rehash', unhashed]);
    allOk(check().lines, 'certdir');
  });

  it('a CA file not named by its subject hash: rehash too', () => {
    const misnamed = join(system.root, 'certs-misnamed');
    mkdirSync(misnamed, { mode: 0o755 });
    chmodSync(misnamed, 0o755);
    const [anchor] = readdirSync(system.certdir).filter((name) => /^[0-9a-f]{8}\.0$/.test(name));
    assert.ok(anchor);
    copyFileSync(join(system.certdir, anchor), join(misnamed, '00000000.0'));
    system.writeConfig(system.standardConfig([`certdir = ${misnamed}`]));
    const { message, fix } = finding(check().lines, 'error', 'certdir', 'not named by their subject hash');
    assert.match(message, new RegExp(`00000000\\.0 \\(its subject hash is ${anchor.slice(0, 8)}\\)`));
    assert.equal(fix, `run openssl rehash ${misnamed} (or c_rehash ${misnamed})`);
  });

  it('a certdir with no CA certificates at all: install the CA bundle', () => {
    const empty = join(system.root, 'certs-empty');
    mkdirSync(empty, { mode: 0o755 });
    chmodSync(empty, 0o755);
    system.writeConfig(system.standardConfig([`certdir = ${empty}`]));
    const { fix } = finding(check().lines, 'error', 'certdir', 'has no CA certificates');
    assert.equal(
      fix,
      `install the IGTF CA bundle (or your CA's certificate) into ${empty}, then run openssl rehash ${empty} (or c_rehash ${empty})`,
    );
  });

  it('an epilogue its runner cannot execute: chmod a+x it', () => {
    const epilogue = system.installProgram('not-executable', '#!/bin/sh\n', 0o644);
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    assert.equal(finding(check().lines, 'error', 'epilogue', 'is not executable').fix, `chmod a+x ${epilogue}`);
  });
});

describe('common mistakes are named', { skip: needsRoot }, () => {
  installForSuite((installed, testPki) => {
    system = installed;
    pki = testPki;
  });

  it('a white list separated by spaces: refused by the run and by --check, with the corrected line', () => {
    const spaced = `${system.pilot.name} ${system.stranger.name}`;
    const lines = system.standardConfig([`user_white_list = ${spaced}`]);
    system.writeConfig(lines);
    const run = system.run(['/bin/true'], { env: withProxy() });
    assertRefused(
      run,
      202,
      `glexec: ${system.configPath}: value '${spaced}' for key 'user_white_list' not understood: user_white_list takes a comma-separated list; got '${spaced}'`,
    );
    const { fix } = finding(check().lines, 'error', 'config', 'user_white_list takes a comma-separated list');
    assert.equal(
      fix,
      `correct ${system.configPath} line ${lines.findIndex((line) => line.startsWith('user_white_list')) + 2}: write user_white_list = ${system.pilot.name}, ${system.stranger.name}`,
    );
  });

  it('a glexec key under another section: a warning that it is ignored there, in --check and in the log', () => {
    const epilogue = system.copyProgram('/bin/true', 'misplaced-epilogue');
    system.writeConfig(['[glexec]', ...system.standardConfig(), '[lcmaps]', `epilogue = ${epilogue}`], { raw: true });
    const { status, lines } = check();
    assert.equal(status, 0, lines.join('\n'));
    const expected = `${system.configPath}: key 'epilogue' is under [lcmaps], not [glexec]: it is ignored there`;
    assert.equal(finding(lines, 'warning', 'config', expected).fix, 'move the key below the [glexec] line');
    assert.equal(system.run(['/bin/true'], { env: withProxy() }).status, 0);
    const warned = system.logRecords().filter((record) => record.msg === expected);
    assert.equal(warned.length, 1);
    assert.equal(warned[0]?.level, 'warn');
  });

  it('the admin running glexec as root: run it as the pilot account', () => {
    const result = system.run(['/bin/true'], { as: root, env: withProxy() });
    assertRefused(
      result,
      203,
      'glexec: glexec was run as root: run it as the pilot account; root is not in the white list',
    );
  });

  it('a proxy root owns, which the pilot cannot open: owned by uid 0, chown it to the pilot', () => {
    const rootsProxy = pki.copyProxy('roots-proxy.pem', 0, 0o600);
    const result = system.run(['/bin/true'], { env: withProxy(rootsProxy) });
    assertRefused(
      result,
      201,
      `glexec: GLEXEC_CLIENT_CERT ${rootsProxy} is owned by uid 0: chown it to the pilot (uid ${system.pilot.uid}); the caller cannot open it`,
    );
  });

  it('a proxy in a directory the pilot cannot enter: root tells nothing more than the errno', () => {
    const hidden = join(system.root, 'hidden');
    mkdirSync(hidden, { mode: 0o700 });
    chmodSync(hidden, 0o700);
    const proxy = join(hidden, 'proxy.pem');
    writeFileSync(proxy, 'x', { mode: 0o600 });
    const result = system.run(['/bin/true'], { env: withProxy(proxy) });
    assertRefused(result, 201, `glexec: GLEXEC_CLIENT_CERT ${proxy} cannot be opened by the caller (EACCES)`);
  });

  it("syslog with nothing listening on /dev/log: a warning on the caller's run, and in --check", () => {
    system.writeConfig(system.standardConfig(['log_destination = syslog']));
    const warning =
      'glexec: warning: log_destination = syslog, but nothing listens on /dev/log: log records are lost, and the completion record goes to the log file instead (exit 202)\n';
    const unheard = system.runWithSyslog(['/bin/true'], withProxy(), { listening: false });
    assert.equal(
      unheard.stderr,
      `${warning}glexec: the completion record could not be written to syslog (nothing listens on /dev/log); it was written to the log file instead\n`,
    );
    assert.equal(unheard.status, 202);
    const checked = system.runWithSyslog(['--check'], {}, { as: root, listening: false });
    const [logLine] = checked.stdout.split('\n').filter((line) => line.includes(' log: '));
    assert.equal(
      logLine,
      'warning log: log_destination = syslog, but nothing listens on /dev/log: log records are lost, and the completion record goes to the log file instead (exit 202) (fix: start the syslog daemon, or set log_destination = file)',
    );
  });

  it('syslog with a listener on /dev/log: no warning, and --check names the facility as glexec.conf writes it', () => {
    system.writeConfig(system.standardConfig(['log_destination = syslog']));
    const heard = system.runWithSyslog(['/bin/true'], withProxy());
    assert.equal(heard.stderr, '');
    assert.equal(heard.status, 0);
    assert.ok(heard.datagrams.some((datagram) => datagram.includes('job completed')));
    const checked = system.runWithSyslog(['--check'], {}, { as: root });
    assert.ok(checked.stdout.split('\n').includes('ok      log: syslog, facility LOG_DAEMON'), checked.stdout);
  });

  it('a DN without double quotes in the grid-mapfile: an error in --check naming the line, and the run refused with the same message (202)', () => {
    assert.match(pki.userDn, / /, 'the test DN must hold a blank');
    system.writeGridMap([`${pki.userDn} ${system.target.name}`]);
    const { status, lines } = check();
    assert.equal(status, 202);
    const { message, fix } = finding(lines, 'error', 'grid-mapfile', 'double quotes');
    assert.equal(
      message,
      `${system.gridmapPath} line 1: the DN must be in double quotes (unquoted, it ends at the first blank: "${pki.userDn.split(' ')[0]}")`,
    );
    assert.equal(fix, 'write that line as "DN" account, the DN in double quotes');
    const run = system.run(['/bin/true'], { env: withProxy() });
    assert.equal(run.stderr, `glexec: ${message}\n`);
    assert.equal(run.status, 202);
  });

  it(".pool entries in a grid-mapfile without lcmaps.db: an error in --check, with the run's own message", () => {
    system.writeGridMap([`"${pki.userDn}" .${system.prefix}pool`]);
    const { status, lines } = check();
    assert.equal(status, 202);
    const { message, fix } = finding(lines, 'error', 'grid-mapfile', 'pool');
    assert.match(fix, /lcmaps_db_file .*lcmaps_poolaccount\.mod/);
    assert.match(
      message,
      /maps to pool '\.gx[0-9a-f]+pool': pool accounts need lcmaps_db_file with lcmaps_poolaccount\.mod \(see the README's LCMAPS section\)$/,
    );
    const run = system.run(['/bin/true'], { env: withProxy() });
    assertRefused(run, 202, `glexec: ${message}`);
  });
});
