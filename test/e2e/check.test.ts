/**
 * `glexec --check` through the installed shim: one line per item, a fix for each problem,
 * exit 0 or 202, root only, and nothing changed.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { TestPki } from '../helpers/pki-fixtures';
import { installForSuite } from '../helpers/suite';
import { type Account, needsRoot, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;
const root: Account = { name: 'root', uid: 0, gid: 0 };

function check(): { status: number | null; lines: string[]; stderr: string } {
  const result = system.run(['--check'], { as: root });
  return { status: result.status, lines: result.stdout.split('\n').filter(Boolean), stderr: result.stderr };
}

/** The one error line for `item`, which must also say how to fix it. */
function errorLine(lines: string[], item: string): string {
  const found = lines.filter((line) => line.startsWith(`error   ${item}: `));
  assert.equal(found.length, 1, `expected one error for ${item}:\n${lines.join('\n')}`);
  assert.match(found[0] ?? '', /\(fix: .+\)$/);
  return found[0] ?? '';
}

describe('glexec --check', { skip: needsRoot }, () => {
  installForSuite(
    (installed, testPki) => {
      system = installed;
      pki = testPki;
    },
    { keepLog: true },
  );

  it('a sound installation gives one ok line per item and exits 0', () => {
    const { status, lines } = check();
    assert.equal(status, 0, lines.join('\n'));
    assert.deepEqual(
      lines.map((line) => line.split(':')[0]),
      [
        'ok      config',
        'ok      config',
        'ok      white lists',
        'ok      certdir',
        'ok      grid-mapfile',
        'ok      epilogue',
        'ok      log',
        'ok      containment',
        'ok      tools',
        'ok      tools',
        'glexec --check',
      ],
    );
    assert.equal(lines.at(-1), 'glexec --check: no problems found');
  });

  it('is for root only: the pilot gets 203', () => {
    const result = system.run(['--check']);
    assertRefused(result, 203, 'glexec: glexec --check is for root');
  });

  it('takes no payload', () => {
    const result = system.run(['--check', '/bin/true'], { as: root });
    assertRefused(result, 201, 'glexec: --check takes no payload');
  });

  it('reports every bad key at once, each with a fix, and exits 202', () => {
    system.writeConfig(
      system.standardConfig(['epilog = /x', 'log_level = loud', 'use_lcas = yes', 'linger = yes', 'linger = no']),
    );
    const { status, lines } = check();
    assert.equal(status, 202);
    const errors = lines.filter((line) => line.startsWith('error   config: '));
    assert.equal(errors.length, 4, lines.join('\n'));
    assert.ok(errors.some((line) => line.includes("unknown key 'epilog'") && line.includes('correct its name')));
    assert.ok(errors.some((line) => line.includes("value 'loud' for key 'log_level'")));
    assert.ok(errors.some((line) => line.includes("'use_lcas' = 'yes' is not supported")));
    assert.ok(errors.some((line) => line.includes("'linger' in [glexec] is set twice")));
    assert.equal(lines.at(-1), 'glexec --check: 4 problem(s) found');
  });

  it('a configuration file others can write is an error with the fix', () => {
    chmodSync(system.configPath, 0o666);
    const { status, lines } = check();
    assert.equal(status, 202);
    assert.match(errorLine(lines, 'config'), /is world-writable .*chmod go-w/);
  });

  it('a missing configuration file is an error', () => {
    rmSync(system.configPath);
    const { status, lines } = check();
    assert.equal(status, 202);
    assert.match(errorLine(lines, 'config'), /configuration file .* cannot be checked: ENOENT/);
  });

  it('empty white lists are a warning, not an error', () => {
    system.writeConfig(system.standardConfig(['user_white_list =']));
    const { status, lines } = check();
    assert.equal(status, 0);
    assert.ok(
      lines.includes(
        'warning white lists: user_white_list and group_white_list are empty: nobody may call glexec (fix: list the pilot accounts in user_white_list)',
      ),
    );
  });

  it('a certdir without CA files is an error', () => {
    const empty = join(system.root, 'empty-certs');
    mkdirSync(empty, { recursive: true, mode: 0o755 });
    system.writeConfig(system.standardConfig([`certdir = ${empty}`]));
    const { status, lines } = check();
    assert.equal(status, 202);
    assert.match(errorLine(lines, 'certdir'), /has no CA certificates/);
  });

  it('a certdir that does not exist is an error', () => {
    system.writeConfig(system.standardConfig([`certdir = ${join(system.root, 'nowhere')}`]));
    assert.match(errorLine(check().lines, 'certdir'), /cannot be checked: ENOENT/);
  });

  it('a grid-mapfile syntax error names the line', () => {
    system.writeGridMap([`"${pki.userDn}" ${system.target.name}`, '"/C=NL/CN=unterminated acct']);
    const { status, lines } = check();
    assert.equal(status, 202);
    assert.match(errorLine(lines, 'grid-mapfile'), /line 2: the quoted DN has no closing quote/);
  });

  it('a grid-mapfile that maps to accounts that do not exist is a warning', () => {
    system.writeGridMap([`"${pki.userDn}" nosuchaccount`]);
    const { status, lines } = check();
    assert.equal(status, 0);
    assert.ok(
      lines.some(
        (line) =>
          line.startsWith('warning grid-mapfile: ') && line.includes('accounts that do not exist: nosuchaccount'),
      ),
    );
  });

  it('an untrusted epilogue is an error naming the component', () => {
    const dir = join(system.root, 'open-epilogues');
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
    writeFileSync(join(dir, 'e.sh'), '#!/bin/sh\n', { mode: 0o755 });
    system.writeConfig(system.standardConfig([`epilogue = ${dir}/e.sh`]));
    const { status, lines } = check();
    assert.equal(status, 202);
    assert.match(errorLine(lines, 'epilogue'), new RegExp(`${dir} is world-writable`));
  });

  it('an epilogue whose #! interpreter lies in a directory another account owns is an error naming the interpreter', () => {
    const dir = join(system.root, 'pilot-bin');
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    chownSync(dir, system.pilot.uid, system.pilot.gid);
    copyFileSync('/usr/bin/dash', join(dir, 'sh'));
    chmodSync(join(dir, 'sh'), 0o755);
    const epilogue = join(system.bin, 'foreign-interp.sh');
    writeFileSync(epilogue, `#!${dir}/sh\nexit 0\n`, { mode: 0o755 });
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    const { status, lines } = check();
    assert.equal(status, 202);
    const line = errorLine(lines, 'epilogue');
    assert.ok(
      line.startsWith(
        `error   epilogue: epilogue ${epilogue} is not trusted: its interpreter ${dir}/sh (#! of ${epilogue}): ${dir} is owned by uid ${system.pilot.uid}, not by root (fix: `,
      ),
      line,
    );
  });

  it('a trusted #!/bin/sh epilogue is ok, and the line names the interpreter that was walked too', () => {
    const epilogue = system.installProgram('plain.sh', '#!/bin/sh\nexit 0\n');
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    const { status, lines } = check();
    assert.equal(status, 0, lines.join('\n'));
    assert.ok(
      lines.some((line) =>
        line.startsWith(
          `ok      epilogue: ${epilogue}: trusted, run by /usr/bin/dash (trusted too), runs as root:root, `,
        ),
      ),
      lines.join('\n'),
    );
  });

  it('epilogue_user without epilogue_group is a warning that the epilogue runs with gid 0, suggesting epilogue_group', () => {
    const epilogue = system.installProgram('as-pilot.sh', '#!/bin/sh\nexit 0\n');
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`, `epilogue_user = ${system.stranger.name}`]));
    const { status, lines } = check();
    assert.equal(status, 0, lines.join('\n'));
    const name = system.stranger.name;
    assert.ok(
      lines.includes(
        `warning epilogue: epilogue_user ${name} runs the epilogue with gid 0 (gLExec's default when epilogue_group is unset): ${name} may own the epilogue, and through it reads and writes what group root may (fix: set epilogue_group to a group of ${name}'s own)`,
      ),
      lines.join('\n'),
    );
    system.writeConfig(
      system.standardConfig([
        `epilogue = ${epilogue}`,
        `epilogue_user = ${name}`,
        `epilogue_group = ${system.stranger.name}g`,
      ]),
    );
    assert.ok(!check().lines.some((line) => line.startsWith('warning epilogue:')));
  });

  it('with VOMS modules in lcmaps.db, the vomsdir is checked: missing is a warning, a vouching .lsc is ok, one others can write is an error', () => {
    const db = join(system.root, 'etc/check-voms-lcmaps.db');
    writeFileSync(
      db,
      [
        `vomslocalgroup = "lcmaps_voms_localgroup.mod" "-groupmapfile ${system.gridmapPath}"`,
        `localaccount = "lcmaps_localaccount.mod" "-gridmapfile ${system.gridmapPath}"`,
        'glexec_get_account:',
        'vomslocalgroup -> localaccount',
        '',
      ].join('\n'),
      { mode: 0o644 },
    );
    const vomsdir = join(system.root, 'etc/check-vomsdir');
    const configure = (): void =>
      system.writeConfig(
        system.standardConfig([
          `lcmaps_db_file = ${db}`,
          'lcmaps_get_account_policy = glexec_get_account',
          `vomsdir = ${vomsdir}`,
        ]),
      );
    configure();
    const missing = check();
    assert.equal(missing.status, 0, missing.lines.join('\n'));
    assert.match(
      missing.lines.find((line) => line.startsWith('warning vomsdir')) ?? '',
      /does not exist: every VOMS AC is dropped/,
    );

    mkdirSync(join(vomsdir, 'testvo'), { recursive: true, mode: 0o755 });
    writeFileSync(join(vomsdir, 'testvo/voms.example.org.lsc'), '/C=NL/CN=voms.example.org\n/C=NL/CN=CA\n', {
      mode: 0o644,
    });
    const sound = check();
    assert.equal(sound.status, 0, sound.lines.join('\n'));
    assert.match(
      sound.lines.find((line) => line.startsWith('ok      vomsdir')) ?? '',
      /1 \.lsc file\(s\) \(testvo\/voms\.example\.org\.lsc\)/,
    );

    chmodSync(join(vomsdir, 'testvo'), 0o777);
    const open = check();
    assert.equal(open.status, 202);
    assert.match(errorLine(open.lines, 'vomsdir'), /testvo/);
    chmodSync(join(vomsdir, 'testvo'), 0o755);
    system.writeConfig(system.standardConfig());
  });

  it('a log file owned by someone else is an error', () => {
    system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.pilotProxy } });
    chownSync(system.logFile, system.pilot.uid, 0);
    try {
      const { status, lines } = check();
      assert.equal(status, 202);
      assert.match(errorLine(lines, 'log'), /must be a regular root-owned file/);
    } finally {
      system.clearLog();
    }
  });

  it('changes nothing: a log directory that does not exist yet is not created', () => {
    const logDir = join(system.root, 'not-yet');
    system.writeConfig(system.standardConfig([`log_file = ${logDir}/glexec_log`]));
    const { status, lines } = check();
    assert.equal(status, 0, lines.join('\n'));
    assert.ok(lines.includes(`ok      log: ${logDir}/glexec_log: its directory will be created on the first run`));
    assert.equal(existsSync(logDir), false);
  });

  it('a cgroup_base that is not a cgroup v2 directory is a warning (process-group fallback), and an error with max_processes', () => {
    const notCgroup = join(system.root, 'not-a-cgroup/glexec');
    system.writeConfig(system.standardConfig([`cgroup_base = ${notCgroup}`]));
    const warned = check();
    assert.equal(warned.status, 0);
    assert.ok(
      warned.lines.some((line) =>
        line.startsWith(
          `warning containment: payloads will be contained by process group only: ${notCgroup} is not a cgroup v2 directory (fix: `,
        ),
      ),
    );
    system.writeConfig(system.standardConfig([`cgroup_base = ${notCgroup}`, 'max_processes = 10']));
    const refused = check();
    assert.equal(refused.status, 202);
    assert.match(errorLine(refused.lines, 'containment'), /max_processes cannot be enforced/);
  });

  // Syslog with and without a listener on /dev/log: test/e2e/sysadmin.test.ts, under a private /dev.
});
