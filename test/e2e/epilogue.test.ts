/**
 * The epilogue, end to end through the installed shim: the trusted-root check, the identity and
 * environment it runs with, its timeout, and what its result does to glexec's exit code.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { TestPki } from '../helpers/pki-fixtures';
import { hasEnded, processesOfAccount, startAsAccount, waitUntil, waitUntilRunning } from '../helpers/processes';
import { type Account, needsRoot, REPO, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;
let epiUser: Account;
let epiGroup: string;
/** Root-owned directory the epilogues write what they saw into. */
let out: string;

const proxyEnv = (extra: Record<string, string> = {}) => ({ GLEXEC_CLIENT_CERT: pki.pilotProxy, ...extra });

/** An epilogue script in a fresh root-owned 0755 directory under the test root. */
function epilogueScript(name: string, body: string, mode = 0o755): string {
  const dir = join(system.root, 'epilogues');
  mkdirSync(dir, { mode: 0o755, recursive: true });
  const path = join(dir, name);
  rmSync(path, { force: true });
  writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode });
  chmodSync(path, mode);
  return path;
}

function configWithEpilogue(path: string, extra: string[] = []): void {
  system.writeConfig(system.standardConfig([`epilogue = ${path}`, 'epilogue_timeout = 30', ...extra]));
}

function completion(): Record<string, unknown> {
  const record = system.logRecords().find((entry) => entry.msg === 'job completed');
  assert.ok(record, 'no completion record');
  // A run whose epilogue succeeded and whose payload left nothing is concluded by the monitor
  // (the record's pid is glexec's own) when it may be; otherwise by phase 2 (a child of glexec).
  const epilogue = record.epilogue as { result?: string; leftovers?: string } | undefined;
  if (runBy === 'the monitor' && epilogue?.result === 'ok' && epilogue.leftovers === 'none' && record.leftovers === 0)
    assert.equal(record.pid, record.glexecPid, `the monitor did not conclude ${JSON.stringify(record)}`);
  if (runBy === 'phase 2') assert.notEqual(record.pid, record.glexecPid, JSON.stringify(record));
  return record;
}

/** Runs /bin/true through glexec with `epilogue` set, expecting a 202 naming the rule, and no payload run. */
function expectUntrusted(path: string, rule: string, extra: string[] = []): void {
  configWithEpilogue(path, extra);
  const marker = join(system.scratch, 'payload-ran');
  rmSync(marker, { force: true });
  const result = system.run(['/usr/bin/touch', marker], { env: proxyEnv() });
  assertRefused(result, 202, `glexec: epilogue ${path} is not trusted: ${rule}`);
  assert.equal(existsSync(marker), false, 'the payload ran although the epilogue was refused');
}

/** A fresh pair of files for a payload and a test to wait on each other. */
function handshakeFiles(): { started: string; go: string } {
  const started = join(system.scratch, 'started');
  const go = join(system.scratch, 'go');
  rmSync(started, { force: true });
  rmSync(go, { force: true });
  return { started, go };
}

/** What a started glexec printed on stderr, and how it exited. */
function collect(child: ReturnType<TestSystem['start']>): Promise<{ status: number | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((resolve) => child.once('close', (status) => resolve({ status, stderr })));
}

/** A directory under the test root owned by the pilot, holding a copy of /bin/dash as `sh`. */
function pilotOwnedShell(name: string): string {
  const dir = join(system.root, name);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chownSync(dir, system.pilot.uid, system.pilot.gid);
  copyFileSync('/usr/bin/dash', join(dir, 'sh'));
  chmodSync(join(dir, 'sh'), 0o755);
  return join(dir, 'sh');
}

/** An epilogue whose first line is `firstLine` instead of `#!/bin/sh`. */
function epilogueWithLine(name: string, firstLine: string, body: string): string {
  const path = epilogueScript(name, body);
  writeFileSync(path, `${firstLine}\n${body}\n`);
  return path;
}

/**
 * Every test of the epilogue runs twice: once run by phase 2 (log_level 5: phase 2 has records
 * below notice to write), once by the monitor (log_level 3: when the payload left nothing, the
 * monitor runs the epilogue and, if it succeeded, writes the record itself; docs/architecture.md).
 */
let runBy: 'phase 2' | 'the monitor';

for (const by of ['phase 2', 'the monitor'] as const)
  describe(`the epilogue, run by ${by}`, { skip: needsRoot }, () => {
    before(() => {
      runBy = by;
      system = TestSystem.create();
      system.logLevel = by === 'the monitor' ? 3 : 5;
      pki = TestPki.create(system);
      epiGroup = system.addGroup('epigrp');
      epiUser = system.addUser('epi', []);
      out = join(system.root, 'epilogue-out');
      mkdirSync(out, { mode: 0o755 });
    });
    after(() => system?.tearDown());
    beforeEach(() => {
      pki.writeStandardGridMap();
      system.clearLog();
      rmSync(out, { recursive: true, force: true });
      mkdirSync(out, { mode: 0o777 });
      chmodSync(out, 0o777);
    });

    describe('environment and identity', () => {
      it("sees every GLEXEC_EPILOG_* variable, the payload's environment, /dev/null stdio, and runs as root in its own group", () => {
        const path = epilogueScript(
          'env.sh',
          [
            `env -0 > ${out}/env`,
            'stdio="$(readlink /proc/$$/fd/0) $(readlink /proc/$$/fd/1) $(readlink /proc/$$/fd/2)"',
            `echo "$stdio" > ${out}/stdio`,
            `echo "$(id -u) $(id -g) $(id -G)" > ${out}/id`,
            `ps -o pid=,pgid= -p $$ > ${out}/pgid`,
          ].join('\n'),
        );
        configWithEpilogue(path);
        const args = ['-c', 'exit 5', 'two words', 'line\nbreak', ''];
        const result = system.run(['/bin/sh', ...args], {
          env: proxyEnv({ GLEXEC_ID: 'job 7', GLEXEC_EPILOG_TARGET_RC: '0', GLEXEC_EPILOG_HOSTILE: 'x' }),
        });
        assert.equal(result.status, 5, result.stderr);
        const env = Object.fromEntries(
          readFileSync(join(out, 'env'), 'utf8')
            .split('\0')
            .filter(Boolean)
            .map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]),
        );
        const epilog = Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('GLEXEC_EPILOG_')));
        const record = completion();
        const supplementary = (record.target as { groups: number[] }).groups.filter((gid) => gid !== system.target.gid);
        assert.deepEqual(epilog, {
          GLEXEC_EPILOG_ARGC: '6',
          GLEXEC_EPILOG_ARGV0: '/bin/sh',
          GLEXEC_EPILOG_ARGV1: '-c',
          GLEXEC_EPILOG_ARGV2: 'exit 5',
          GLEXEC_EPILOG_ARGV3: 'two words',
          GLEXEC_EPILOG_ARGV4: 'line\nbreak',
          GLEXEC_EPILOG_ARGV5: '',
          GLEXEC_EPILOG_GLEXEC_USER: system.pilot.name,
          GLEXEC_EPILOG_GLEXEC_GROUP: `${system.pilot.name}g`,
          GLEXEC_EPILOG_GLEXEC_UID: String(system.pilot.uid),
          GLEXEC_EPILOG_GLEXEC_GID: String(system.pilot.gid),
          GLEXEC_EPILOG_GLEXEC_SGIDS: '',
          GLEXEC_EPILOG_TARGET_USER: system.target.name,
          GLEXEC_EPILOG_TARGET_GROUP: `${system.target.name}g`,
          GLEXEC_EPILOG_TARGET_UID: String(system.target.uid),
          GLEXEC_EPILOG_TARGET_GID: String(system.target.gid),
          GLEXEC_EPILOG_TARGET_SGIDS: supplementary.join(':'),
          GLEXEC_EPILOG_GLEXEC_PID: String(record.glexecPid),
          GLEXEC_EPILOG_GLEXEC_SID: epilog.GLEXEC_EPILOG_GLEXEC_SID,
          GLEXEC_EPILOG_GLEXEC_PGID: epilog.GLEXEC_EPILOG_GLEXEC_PGID,
          GLEXEC_EPILOG_TARGET_PID: String(record.payloadPid),
          GLEXEC_EPILOG_TARGET_PGID: String(record.payloadPid),
          GLEXEC_EPILOG_TARGET_RC: '5',
          GLEXEC_EPILOG_PATH: path,
          GLEXEC_EPILOG_TARGET_CGROUP: epilog.GLEXEC_EPILOG_TARGET_CGROUP,
          GLEXEC_EPILOG_LEFTOVER_COUNT: '0',
          GLEXEC_EPILOG_LEFTOVER_FILE: epilog.GLEXEC_EPILOG_LEFTOVER_FILE,
        });
        assert.equal(dirname(String(epilog.GLEXEC_EPILOG_TARGET_CGROUP)), system.cgroupBase);
        assert.match(String(epilog.GLEXEC_EPILOG_TARGET_CGROUP), /\/job-\d+-[0-9a-f]+$/);
        assert.equal(dirname(String(epilog.GLEXEC_EPILOG_LEFTOVER_FILE)), system.runtimeDirectory);
        assert.match(String(epilog.GLEXEC_EPILOG_LEFTOVER_FILE), /\/leftovers-\d+-[0-9a-f]+\.tsv$/);
        assert.match(String(epilog.GLEXEC_EPILOG_GLEXEC_SID), /^\d+$/);
        assert.match(String(epilog.GLEXEC_EPILOG_GLEXEC_PGID), /^\d+$/);
        assert.equal(supplementary.length, 1);
        // The caller's GLEXEC_* variables come along; nothing else the caller or payload chose does
        // (dash adds PWD for itself).
        const rest = Object.fromEntries(
          Object.entries(env).filter(([name]) => !name.startsWith('GLEXEC_EPILOG_') && name !== 'PWD'),
        );
        assert.deepEqual(rest, {
          GLEXEC_ID: 'job 7',
          GLEXEC_CLIENT_CERT: pki.pilotProxy,
          HOME: '/root',
          USER: 'root',
          LOGNAME: 'root',
          PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        });
        assert.equal(readFileSync(join(out, 'stdio'), 'utf8'), '/dev/null /dev/null /dev/null\n');
        assert.equal(readFileSync(join(out, 'id'), 'utf8'), '0 0 0\n');
        const [pid, pgid] = readFileSync(join(out, 'pgid'), 'utf8').trim().split(/\s+/);
        assert.equal(pgid, pid);
        assert.deepEqual((record.epilogue as { result: string }).result, 'ok');
      });

      it('a payload killed by a signal gives GLEXEC_EPILOG_TARGET_RC 128+N', () => {
        configWithEpilogue(epilogueScript('rc.sh', `echo "$GLEXEC_EPILOG_TARGET_RC" > ${out}/rc`));
        assert.equal(system.run(['/bin/sh', '-c', 'kill -KILL $$'], { env: proxyEnv() }).status, 137);
        assert.equal(readFileSync(join(out, 'rc'), 'utf8'), '137\n');
      });

      it("never gets a preserved variable, the payload's HOME or the caller's PATH, which would steer a root program", () => {
        const path = epilogueScript('steer.sh', `echo "$PYTHONPATH|$HOME|$PATH" > ${out}/steer`);
        configWithEpilogue(path, ['preserve_env_variables = PYTHONPATH, PATH']);
        const result = system.run(['/usr/bin/printenv', 'PYTHONPATH', 'PATH'], {
          env: proxyEnv({ PYTHONPATH: '/tmp/evil', PATH: '/tmp/evil-bin:/usr/bin:/bin' }),
        });
        assert.equal(result.status, 0, result.stderr);
        assert.equal(result.stdout, '/tmp/evil\n/tmp/evil-bin:/usr/bin:/bin\n');
        assert.equal(
          readFileSync(join(out, 'steer'), 'utf8'),
          '|/root|/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n',
        );
      });

      it('runs as epilogue_user and epilogue_group, with only that gid as its groups', () => {
        const path = epilogueScript('as-user.sh', `echo "$(id -u) $(id -g) $(id -G)" > ${out}/id`);
        configWithEpilogue(path, [`epilogue_user = ${epiUser.name}`, `epilogue_group = ${epiGroup}`]);
        assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
        const gid = Number(spawnSync('getent', ['group', epiGroup], { encoding: 'utf8' }).stdout.split(':')[2]);
        assert.equal(readFileSync(join(out, 'id'), 'utf8'), `${epiUser.uid} ${gid} ${gid}\n`);
      });

      it('epilogue_user with user_identity_switch_by = lcmaps is a 202 that says why', () => {
        configWithEpilogue(epilogueScript('x.sh', 'exit 0'), [
          `epilogue_user = ${epiUser.name}`,
          'user_identity_switch_by = lcmaps',
        ]);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assertRefused(
          result,
          202,
          'glexec: epilogue_user and epilogue_group can only be used with user_identity_switch_by = glexec',
        );
      });

      it('linger = no still lingers, and the epilogue still runs', () => {
        configWithEpilogue(epilogueScript('ran.sh', `touch ${out}/ran`), ['linger = no']);
        assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
        assert.ok(existsSync(join(out, 'ran')));
      });
    });

    describe('trusted-root check', () => {
      it('a relative path is a 202 naming the key', () => {
        system.writeConfig(system.standardConfig(['epilogue = epilogues/x.sh']));
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assertRefused(
          result,
          202,
          `glexec: ${system.configPath}: value 'epilogues/x.sh' for key 'epilogue' not understood: expected an absolute path`,
        );
      });

      it('a path with .. is refused as not canonical', () => {
        epilogueScript('dots.sh', 'exit 0');
        const dotted = `${system.root}/bin/../epilogues/dots.sh`;
        expectUntrusted(dotted, `${dotted} is not canonical (it has a ".." component)`);
      });

      it('a symbolic link in the path is refused', () => {
        epilogueScript('real.sh', 'exit 0');
        const link = join(system.root, 'epilogue-link');
        rmSync(link, { force: true });
        symlinkSync(join(system.root, 'epilogues'), link);
        expectUntrusted(join(link, 'real.sh'), `${link} is a symbolic link (the path must be canonical)`);
      });

      it('a directory writable by an untrusted group is refused', () => {
        const dir = join(system.root, 'groupdir');
        mkdirSync(dir, { recursive: true });
        chownSync(dir, 0, system.pilot.gid);
        chmodSync(dir, 0o775);
        writeFileSync(join(dir, 'e.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
        expectUntrusted(
          join(dir, 'e.sh'),
          `${dir} is writable by group gid ${system.pilot.gid}, which is not trusted (mode 0775)`,
        );
      });

      it('a world-writable directory is refused', () => {
        const dir = join(system.root, 'worlddir');
        mkdirSync(dir, { recursive: true });
        chmodSync(dir, 0o777);
        writeFileSync(join(dir, 'e.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
        expectUntrusted(join(dir, 'e.sh'), `${dir} is world-writable (mode 0777)`);
      });

      it('a sticky world-writable directory like /tmp is refused', () => {
        const dir = join(system.root, 'stickydir');
        mkdirSync(dir, { recursive: true });
        chmodSync(dir, 0o1777);
        writeFileSync(join(dir, 'e.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
        expectUntrusted(join(dir, 'e.sh'), `${dir} is world-writable (sticky or not) (mode 1777)`);
      });

      it('a file owned by another user is refused', () => {
        const path = epilogueScript('foreign.sh', 'exit 0');
        chownSync(path, system.pilot.uid, 0);
        expectUntrusted(path, `${path} is owned by uid ${system.pilot.uid}, not by root`);
      });

      it('a file writable by epilogue_group members is allowed when that group is set', () => {
        const gid = Number(spawnSync('getent', ['group', epiGroup], { encoding: 'utf8' }).stdout.split(':')[2]);
        const path = epilogueScript('group-writable.sh', `touch ${out}/ran`, 0o775);
        chownSync(path, 0, gid);
        configWithEpilogue(path, [`epilogue_group = ${epiGroup}`]);
        assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
        assert.ok(existsSync(join(out, 'ran')));
      });

      it('the same group-writable file is refused when epilogue_group is not set', () => {
        const gid = Number(spawnSync('getent', ['group', epiGroup], { encoding: 'utf8' }).stdout.split(':')[2]);
        const path = epilogueScript('group-writable.sh', 'exit 0', 0o775);
        chownSync(path, 0, gid);
        expectUntrusted(path, `${path} is writable by group gid ${gid}, which is not trusted (mode 0775)`);
      });

      it('a file owned by epilogue_user is allowed', () => {
        const path = epilogueScript('owned.sh', `touch ${out}/ran`);
        chownSync(path, epiUser.uid, epiUser.gid);
        configWithEpilogue(path, [`epilogue_user = ${epiUser.name}`]);
        assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
        assert.ok(existsSync(join(out, 'ran')));
      });

      it('an epilogue that does not exist is a 202 before the payload runs', () => {
        const path = join(system.root, 'epilogues/missing.sh');
        configWithEpilogue(path);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assertRefused(result, 202, `glexec: epilogue ${path} cannot be checked: ENOENT`);
      });

      it('an epilogue made untrusted while the payload runs is not run, and the caller is told why on stderr: 202', async () => {
        const path = epilogueScript('late.sh', `touch ${out}/ran`);
        configWithEpilogue(path);
        const { started, go } = handshakeFiles();
        const child = system.start(['/bin/sh', '-c', `touch ${started}; while [ ! -e ${go} ]; do sleep 0.02; done`], {
          env: proxyEnv(),
        });
        const finished = collect(child);
        // The payload runs, so glexec's check of the epilogue before the payload is behind us.
        await waitUntil(() => existsSync(started), 'the payload to start');
        chmodSync(path, 0o777);
        writeFileSync(go, '');
        const { status, stderr } = await finished;
        assert.equal(
          stderr,
          `glexec: epilogue ${path} was not run: epilogue ${path} is not trusted: ${path} is world-writable (mode 0777)\n`,
        );
        assert.equal(status, 202);
        assert.equal(existsSync(join(out, 'ran')), false);
        const epilogue = completion().epilogue as { result: string; reason: string };
        assert.equal(epilogue.result, 'failed');
        assert.equal(
          epilogue.reason,
          `was not run: epilogue ${path} is not trusted: ${path} is world-writable (mode 0777)`,
        );
      });
    });

    describe('interpreters', () => {
      it('an epilogue whose #! names an interpreter in a directory the pilot owns is refused before the payload: 202', () => {
        const shell = pilotOwnedShell('pilot-interp');
        const path = epilogueWithLine('foreign-interp.sh', `#!${shell}`, `touch ${out}/ran`);
        expectUntrusted(
          path,
          `its interpreter ${shell} (#! of ${path}): ${join(system.root, 'pilot-interp')} is owned by uid ${system.pilot.uid}, not by root`,
        );
        assert.equal(existsSync(join(out, 'ran')), false);
      });

      it('an interpreter that is a trusted script is walked too: its own untrusted #! is refused', () => {
        const shell = pilotOwnedShell('pilot-interp2');
        const middle = epilogueWithLine('middle-interp', `#!${shell}`, 'exit 0');
        const path = epilogueWithLine('two-levels.sh', `#!${middle}`, 'exit 0');
        expectUntrusted(
          path,
          `its interpreter ${shell} (#! of ${middle}): ${join(system.root, 'pilot-interp2')} is owned by uid ${system.pilot.uid}, not by root`,
        );
      });

      it('an interpreter reached through symbolic links is walked to the file they lead to', () => {
        const shell = pilotOwnedShell('pilot-interp3');
        const link = join(system.root, 'epilogues', 'sh-link');
        rmSync(link, { force: true });
        symlinkSync(shell, link);
        const path = epilogueWithLine('linked-interp.sh', `#!${link}`, 'exit 0');
        expectUntrusted(
          path,
          `its interpreter ${link} (#! of ${path}): ${join(system.root, 'pilot-interp3')} is owned by uid ${system.pilot.uid}, not by root`,
        );
      });

      it("the kernel's depth of #! interpreters runs; one level more is refused before the payload", () => {
        // Five #! files (the epilogue and four interpreter scripts) before /bin/sh: the most Linux runs.
        // /bin/sh ends up reading the first of them, level-1, with the others as its arguments.
        let interpreter = epilogueWithLine('level-1', '#!/bin/sh', `touch ${out}/ran`);
        for (let level = 2; level <= 4; level++)
          interpreter = epilogueWithLine(`level-${level}`, `#!${interpreter}`, '');
        const deepest = epilogueWithLine('five-levels.sh', `#!${interpreter}`, '');
        configWithEpilogue(deepest);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assert.equal(result.stderr, '');
        assert.equal(result.status, 0);
        assert.ok(existsSync(join(out, 'ran')));
        const tooDeep = epilogueWithLine('six-levels.sh', `#!${deepest}`, 'exit 0');
        expectUntrusted(tooDeep, `${tooDeep} has more than 5 levels of #! interpreters, more than the kernel follows`);
      });

      it("#!/usr/bin/env NAME runs the NAME found on the epilogue's fixed PATH, and --check names it", () => {
        const path = epilogueWithLine('env-sh.sh', '#!/usr/bin/env sh', `echo "$0" > ${out}/ran`);
        configWithEpilogue(path);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assert.equal(result.stderr, '');
        assert.equal(result.status, 0);
        assert.equal(readFileSync(join(out, 'ran'), 'utf8'), `${path}\n`);
        const check = system.run(['--check'], { as: { name: 'root', uid: 0, gid: 0 } });
        assert.match(
          check.stdout,
          new RegExp(
            `^ok      epilogue: ${path}: trusted, run by /usr/bin/env → /usr/bin/dash \\(trusted too\\), runs as root:root`,
            'm',
          ),
        );
      });

      it('#!/usr/bin/env with a program in a directory the pilot owns is refused', () => {
        const shell = pilotOwnedShell('pilot-env');
        const path = epilogueWithLine('env-foreign.sh', `#!/usr/bin/env ${shell}`, 'exit 0');
        expectUntrusted(
          path,
          `${shell} (run by /usr/bin/env): ${join(system.root, 'pilot-env')} is owned by uid ${system.pilot.uid}, not by root`,
        );
      });

      it('#!/usr/bin/env NAME is refused when the NAME it finds on the PATH belongs to another account', () => {
        const name = `${system.prefix}-tool`;
        const planted = join('/usr/local/bin', name);
        copyFileSync('/usr/bin/dash', planted);
        try {
          chownSync(planted, system.pilot.uid, system.pilot.gid);
          chmodSync(planted, 0o755);
          const path = epilogueWithLine('env-planted.sh', `#!/usr/bin/env ${name}`, 'exit 0');
          expectUntrusted(
            path,
            `${planted} (found by /usr/bin/env on the epilogue's PATH): ${planted} is owned by uid ${system.pilot.uid}, not by root`,
          );
        } finally {
          rmSync(planted, { force: true });
        }
      });

      it('#!/usr/bin/env with options or a NAME found nowhere is refused', () => {
        const options = epilogueWithLine('env-options.sh', '#!/usr/bin/env -S sh -e', 'exit 0');
        expectUntrusted(
          options,
          `#!/usr/bin/env -S sh -e: env gets the rest of the #! line as one word, and only a plain program name is accepted`,
        );
        const missing = epilogueWithLine('env-missing.sh', `#!/usr/bin/env ${system.prefix}-nowhere`, 'exit 0');
        expectUntrusted(
          missing,
          `/usr/bin/env finds no program ${system.prefix}-nowhere on the epilogue's PATH (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)`,
        );
      });

      it('an interpreter made untrusted while the payload runs is refused at run time, and the caller is told: 202', async () => {
        const dir = join(system.root, 'late-interp');
        mkdirSync(dir, { recursive: true, mode: 0o755 });
        chownSync(dir, 0, 0);
        copyFileSync('/usr/bin/dash', join(dir, 'sh'));
        chmodSync(join(dir, 'sh'), 0o755);
        const path = epilogueWithLine('late-interp.sh', `#!${dir}/sh`, `touch ${out}/ran`);
        configWithEpilogue(path);
        const { started, go } = handshakeFiles();
        const child = system.start(['/bin/sh', '-c', `touch ${started}; while [ ! -e ${go} ]; do sleep 0.02; done`], {
          env: proxyEnv(),
        });
        const finished = collect(child);
        await waitUntil(() => existsSync(started), 'the payload to start');
        chownSync(dir, system.pilot.uid, system.pilot.gid);
        writeFileSync(go, '');
        const { status, stderr } = await finished;
        const rule = `its interpreter ${dir}/sh (#! of ${path}): ${dir} is owned by uid ${system.pilot.uid}, not by root`;
        assert.equal(stderr, `glexec: epilogue ${path} was not run: epilogue ${path} is not trusted: ${rule}\n`);
        assert.equal(status, 202);
        assert.equal(existsSync(join(out, 'ran')), false);
      });
    });

    describe('epilogue_user and the payload account', () => {
      it('a run mapped to the epilogue_user account is refused before the payload starts: 202', () => {
        configWithEpilogue(epilogueScript('as-target.sh', `touch ${out}/ran`), [
          `epilogue_user = ${system.target.name}`,
          `epilogue_group = ${epiGroup}`,
        ]);
        const marker = join(system.scratch, 'payload-ran');
        rmSync(marker, { force: true });
        const result = system.run(['/usr/bin/touch', marker], { env: proxyEnv() });
        assertRefused(
          result,
          202,
          `glexec: the payload account ${system.target.name} is epilogue_user, whom the epilogue trusts; map the job to another account or set another epilogue_user`,
        );
        assert.equal(existsSync(marker), false);
        assert.equal(existsSync(join(out, 'ran')), false);
      });

      it('a run whose payload account is in epilogue_group is refused before the payload starts: 202', () => {
        configWithEpilogue(epilogueScript('group-target.sh', `touch ${out}/ran`), [
          `epilogue_group = ${system.supplementaryGroup}`,
        ]);
        const marker = join(system.scratch, 'payload-ran');
        rmSync(marker, { force: true });
        const result = system.run(['/usr/bin/touch', marker], { env: proxyEnv() });
        assertRefused(
          result,
          202,
          `glexec: the payload account ${system.target.name} is in epilogue_group ${system.supplementaryGroup}, whose members may change the epilogue; map the job to another account or set another epilogue_group`,
        );
        assert.equal(existsSync(marker), false);
      });
    });

    describe('$0', () => {
      it('is the configured path, so a script finds its helpers with $(dirname "$0")', () => {
        const helper = join(system.root, 'epilogues', 'helper.sh');
        writeFileSync(helper, `echo "helper sourced by $(basename "$0")" > ${out}/helper\n`, { mode: 0o644 });
        const path = epilogueScript(
          'uses-helper.sh',
          `echo "$0" > ${out}/zero\ntr '\\0' ' ' < /proc/$$/cmdline > ${out}/cmdline\n. "$(dirname "$0")/helper.sh"`,
        );
        configWithEpilogue(path);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assert.equal(result.status, 0, result.stderr);
        assert.equal(readFileSync(join(out, 'zero'), 'utf8'), `${path}\n`);
        assert.equal(readFileSync(join(out, 'cmdline'), 'utf8'), `/bin/sh ${path} `);
        assert.equal(readFileSync(join(out, 'helper'), 'utf8'), 'helper sourced by uses-helper.sh\n');
      });
    });

    describe('timeout and result', () => {
      it('an epilogue that ignores SIGTERM is killed after epilogue_timeout and kill_grace, and glexec exits 202', () => {
        const path = epilogueScript(
          'stubborn.sh',
          `trap '' TERM\necho $$ > ${out}/started\nwhile :; do sleep 0.05; done`,
        );
        system.writeConfig(system.standardConfig([`epilogue = ${path}`, 'epilogue_timeout = 0.5', 'kill_grace = 0.5']));
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assertRefused(
          result,
          202,
          `glexec: epilogue ${path} ran longer than epilogue_timeout (0.5 s) and was killed with SIGKILL after kill_grace (0.5 s)`,
        );
        const epiloguePid = Number(readFileSync(join(out, 'started'), 'utf8'));
        const epilogue = completion().epilogue as { result: string; forcefullyKilled: boolean };
        assert.equal(epilogue.result, 'timed_out');
        assert.equal(epilogue.forcefullyKilled, true);
        assert.ok(epiloguePid > 0);
        assert.ok(hasEnded(epiloguePid), 'the epilogue still runs');
      });

      it('an epilogue that honours SIGTERM at the timeout ends without SIGKILL, still a 202', () => {
        const path = epilogueScript('slow.sh', 'exec sleep 30');
        system.writeConfig(system.standardConfig([`epilogue = ${path}`, 'epilogue_timeout = 0.2', 'kill_grace = 5']));
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assertRefused(
          result,
          202,
          `glexec: epilogue ${path} ran longer than epilogue_timeout (0.2 s) and ended on SIGTERM`,
        );
        const epilogue = completion().epilogue as { result: string; forcefullyKilled: boolean };
        assert.deepEqual([epilogue.result, epilogue.forcefullyKilled], ['timed_out', false]);
      });

      it('a background child the epilogue leaves behind is gone when glexec exits', () => {
        configWithEpilogue(epilogueScript('bg.sh', `/bin/sleep 987 &\necho $! > ${out}/bg\nexit 0`));
        assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
        const child = Number(readFileSync(join(out, 'bg'), 'utf8'));
        assert.ok(child > 0);
        assert.ok(hasEnded(child), "the epilogue's child still runs");
        assert.notEqual((completion().epilogue as { leftovers: string }).leftovers, 'none');
      });

      it('an epilogue whose children all ended before it has no leftovers, and one whose child outlives it by a moment has', () => {
        configWithEpilogue(epilogueScript('waits.sh', `/bin/sleep 0 &\nwait\nexit 0`));
        assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
        assert.equal((completion().epilogue as { leftovers: string }).leftovers, 'none');
        // The child is still in the epilogue's group when the epilogue exits: glexec must look, and end it.
        configWithEpilogue(epilogueScript('outlived.sh', `/bin/sleep 986 &\nexit 0`));
        system.clearLog();
        assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
        assert.equal((completion().epilogue as { leftovers: string }).leftovers, 'terminated');
      });

      it('an epilogue that exits 203 makes glexec exit 204 and say so on stderr', () => {
        const path = epilogueScript('e203.sh', 'exit 203');
        configWithEpilogue(path);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assertRefused(result, 204, `glexec: epilogue ${path} exited with 203`);
      });

      it('an epilogue that exits 1 makes glexec exit 202, whatever the payload did, and tells the caller in one line', () => {
        const path = epilogueScript('e1.sh', 'exit 1');
        configWithEpilogue(path);
        const result = system.run(['/bin/sh', '-c', 'echo payload output >&2; exit 9'], { env: proxyEnv() });
        assert.equal(result.stderr, `payload output\nglexec: epilogue ${path} exited with 1\n`);
        assert.equal(result.status, 202);
        const epilogue = completion().epilogue as { result: string; exitCode: number; reason: string };
        assert.deepEqual([epilogue.result, epilogue.exitCode, epilogue.reason], ['failed', 1, 'exited with 1']);
      });

      it('an epilogue that is killed by a signal is named with the signal on stderr', () => {
        const path = epilogueScript('usr1.sh', 'kill -USR1 $$');
        configWithEpilogue(path);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assertRefused(result, 202, `glexec: epilogue ${path} was killed by SIGUSR1`);
      });

      it("an epilogue that exits 0 leaves the payload's code, and glexec writes nothing on stderr", () => {
        configWithEpilogue(epilogueScript('e0.sh', 'exit 0'));
        const result = system.run(['/bin/sh', '-c', 'exit 9'], { env: proxyEnv() });
        assert.equal(result.stderr, '');
        assert.equal(result.status, 9);
      });

      it('with silent_logging = yes a failed epilogue is only logged: nothing on stderr, still 202', () => {
        const path = epilogueScript('e1-silent.sh', 'exit 1');
        configWithEpilogue(path, ['silent_logging = yes']);
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assert.equal(result.stderr, '');
        assert.equal(result.status, 202);
        assert.equal((completion().epilogue as { reason: string }).reason, 'exited with 1');
      });
    });

    describe('the Nikhef example epilogue', () => {
      it("kills the payload's leftover in its process group and leaves an unrelated process of the same user running", async () => {
        const log = join(out, 'epilogue.log');
        const source = readFileSync(join(REPO, 'etc/epilogue/nikhef-example.sh'), 'utf8').replace(
          'LOGFILE=/var/log/glexec/epilogue.log',
          `LOGFILE=${log}`,
        );
        const path = epilogueScript('nikhef.sh', source.replace(/^#!\/bin\/sh\n/, ''));
        configWithEpilogue(path);
        const unrelated = startAsAccount(system.target, ['/bin/sleep', '301']);
        try {
          await waitUntilRunning(unrelated.pid, '/usr/bin/sleep');
          const result = system.run(['/bin/sh', '-c', '/bin/sleep 300 & exit 0'], { env: proxyEnv() });
          assert.equal(result.status, 0, result.stderr);
          const text = readFileSync(log, 'utf8');
          assert.match(text, /Sending SIGKILL to PIDs: \d+/);
          // The unrelated process is still listed (a killed one may still show as a zombie until init reaps it).
          assert.match(
            text,
            new RegExp(`Remaining processes from uid ${system.target.uid}:( \\d+)* ${unrelated.pid}\\b`),
          );
          assert.deepEqual(processesOfAccount(system.target.uid, 'sleep 300'), []);
          assert.deepEqual(processesOfAccount(system.target.uid, 'sleep 301'), [unrelated.pid]);
          // The epilogue did the work: glexec's own cleanup found nothing left.
          assert.equal(completion().cleanup, 'none');
        } finally {
          unrelated.kill('SIGKILL');
        }
      });

      it('logs under its own name, $(basename $0), because $0 is its configured path', () => {
        const log = join(out, 'epilogue.log');
        const source = readFileSync(join(REPO, 'etc/epilogue/nikhef-example.sh'), 'utf8').replace(
          'LOGFILE=/var/log/glexec/epilogue.log',
          `LOGFILE=${log}`,
        );
        configWithEpilogue(epilogueScript('nikhef.sh', source.replace(/^#!\/bin\/sh\n/, '')));
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assert.equal(result.status, 0, result.stderr);
        assert.match(
          readFileSync(log, 'utf8'),
          /^\w{3} [ \d]\d \d\d:\d\d:\d\d \S+ nikhef\.sh\[\d+\]: +Running as uid 0 \(root\) for uid \d+/m,
        );
      });
    });
  });

describe('the example epilogues in etc/epilogue', { skip: needsRoot }, () => {
  before(() => {
    system = TestSystem.create();
    pki = TestPki.create(system);
    pki.writeStandardGridMap();
  });
  after(() => system?.tearDown());

  it("reap-leftovers.sh kills what stayed in the payload's process group, spares the account's other processes, and logs to syslog", async () => {
    const path = epilogueScript(
      'reap-leftovers.sh',
      readFileSync(join(REPO, 'etc/epilogue/reap-leftovers.sh'), 'utf8').replace(/^#!\/bin\/sh\n/, ''),
    );
    configWithEpilogue(path);
    const unrelated = startAsAccount(system.target, ['/bin/sleep', '303']);
    try {
      await waitUntilRunning(unrelated.pid, '/usr/bin/sleep');
      const { status, stderr, datagrams } = system.runWithSyslog(['/bin/sh', '-c', '/bin/sleep 302 & exit 0'], {
        GLEXEC_CLIENT_CERT: pki.pilotProxy,
      });
      assert.equal(status, 0, stderr);
      const reaped = datagrams.filter((line) => line.includes('glexec-epilogue'));
      assert.equal(reaped.length, 1, datagrams.join('|'));
      // daemon (3) * 8 + notice (5) = 29
      assert.match(
        reaped[0] ?? '',
        new RegExp(
          `^<29>.*glexec-epilogue: job of ${system.target.name}: sent SIGKILL to what was left in (cgroup \\S+|process group \\d+): \\d+ $`,
        ),
      );
      assert.deepEqual(processesOfAccount(system.target.uid, 'sleep 302'), []);
      assert.deepEqual(processesOfAccount(system.target.uid, 'sleep 303'), [unrelated.pid]);
    } finally {
      unrelated.kill('SIGKILL');
    }
  });

  it("clean-scratch.sh empties the payload account's scratch directory as that account, without following a planted symlink", () => {
    const scratchRoot = join(system.root, 'scratch-root');
    const dir = join(scratchRoot, system.target.name);
    mkdirSync(join(dir, 'sub'), { recursive: true });
    chmodSync(scratchRoot, 0o755);
    const precious = join(system.root, 'precious');
    writeFileSync(precious, 'root data\n', { mode: 0o644 });
    writeFileSync(join(dir, 'sub/output.dat'), 'x');
    symlinkSync(precious, join(dir, 'link-to-precious'));
    spawnSync('chown', ['-R', '-h', `${system.target.uid}:${system.target.gid}`, dir]);
    const source = readFileSync(join(REPO, 'etc/epilogue/clean-scratch.sh'), 'utf8').replace(
      'SCRATCH_ROOT=/scratch',
      `SCRATCH_ROOT=${scratchRoot}`,
    );
    configWithEpilogue(epilogueScript('clean-scratch.sh', source.replace(/^#!\/bin\/sh\n/, '')));
    assert.equal(system.run(['/bin/true'], { env: proxyEnv() }).status, 0);
    assert.deepEqual(spawnSync('ls', ['-A', dir], { encoding: 'utf8' }).stdout, '');
    assert.equal(readFileSync(precious, 'utf8'), 'root data\n');
  });
});
