/**
 * Containment beyond gLExec 0.9: each payload in a cgroup of its own, leftovers listed for the log
 * and the epilogue, a race-free kill, max_processes and no_new_privs; and the process-group
 * fallback.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { cgroupMounts } from '../../src/sys/cgroup';
import { TestPki } from '../helpers/pki-fixtures';
import { killAccountProcesses, startAsAccount, waitUntil, waitUntilRunning } from '../helpers/processes';
import { needsRoot, REPO, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;
let out: string;
const mounts = cgroupMounts();
const noCgroup = needsRoot || (mounts.v2 === undefined ? 'no cgroup v2 is mounted here' : false);

const proxyEnv = () => ({ GLEXEC_CLIENT_CERT: pki.pilotProxy });

function completion(): Record<string, unknown> {
  const record = system.logRecords().find((entry) => entry.msg === 'job completed');
  assert.ok(record, 'no completion record');
  return record;
}

/** Running (not zombie) processes of `uid` whose command line contains `text`. */
function running(uid: number, text: string): string[] {
  const listing = spawnSync('ps', ['-o', 'pid=,stat=,args=', '-u', String(uid)], { encoding: 'utf8' }).stdout;
  return listing.split('\n').filter((line) => line.trim() !== '' && line.includes(text) && !/^\s*\d+\s+Z/.test(line));
}

describe('containment', { skip: noCgroup }, () => {
  before(() => {
    system = TestSystem.create();
    pki = TestPki.create(system);
    out = join(system.root, 'contained-out');
  });
  after(() => system?.tearDown());
  beforeEach(() => {
    pki.writeStandardGridMap();
    system.writeConfig(system.standardConfig());
    system.clearLog();
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out, { mode: 0o755 });
  });

  it("a setsid daemon made by a double fork is in the epilogue's leftover list and is gone when glexec exits; an unrelated process of the account keeps running", async () => {
    const epilogue = system.installProgram(
      'copy-leftovers.sh',
      `#!/bin/sh\ncp "$GLEXEC_EPILOG_LEFTOVER_FILE" ${out}/list\necho "$GLEXEC_EPILOG_LEFTOVER_COUNT $GLEXEC_EPILOG_TARGET_CGROUP" > ${out}/vars\n`,
    );
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`, 'epilogue_timeout = 30']));
    const unrelated = startAsAccount(system.target, ['/bin/sleep', '402']);
    try {
      await waitUntilRunning(unrelated.pid, '/usr/bin/sleep');
      const daemon = system.installProgram(
        'daemon.sh',
        "#!/bin/sh\n/usr/bin/setsid /bin/sh -c '/bin/sleep 401 >/dev/null 2>&1 & exit 0' &\nsleep 0.3\nexit 0\n",
      );
      const result = system.run([daemon], { env: proxyEnv() });
      assert.equal(result.status, 0, result.stderr);
      const list = readFileSync(join(out, 'list'), 'utf8').split('\n').filter(Boolean);
      assert.equal(list[0], 'pid\tppid\tuid\tpgid\tsid\tstarted\tcommand');
      const sleeper = list.find((line) => line.endsWith('\t/bin/sleep 401'));
      assert.ok(sleeper, list.join('\n'));
      const [, , uid, , sid] = (sleeper ?? '').split('\t');
      assert.equal(Number(uid), system.target.uid);
      assert.notEqual(Number(sid), completion().payloadPid, "the daemon left the payload's session");
      const [count, cgroup] = readFileSync(join(out, 'vars'), 'utf8').trim().split(' ');
      assert.equal(Number(count), list.length - 1);
      assert.equal(dirname(cgroup ?? ''), system.cgroupBase);
      assert.match(cgroup ?? '', /\/job-\d+-[0-9a-f]+$/);
      assert.deepEqual(running(system.target.uid, 'sleep 401'), []);
      assert.equal(running(system.target.uid, 'sleep 402').length, 1);
      const record = completion();
      assert.deepEqual(
        [record.containment, record.leftovers, record.cleanup, record.survivors],
        ['cgroup', list.length - 1, 'killed', 0],
      );
      assert.equal(existsSync(cgroup ?? ''), false, 'the payload cgroup is removed');
      const killed = system.logRecords().find((entry) => entry.msg === 'ending what the payload left behind');
      assert.ok((killed?.processes as { command: string }[]).some((process) => process.command === '/bin/sleep 401'));
    } finally {
      unrelated.kill('SIGKILL');
    }
  });

  it('a leftover cannot forge lines of the leftover list with its name or command line, and a huge command line is cut', () => {
    const forger = system.copyProgram(join(REPO, 'build/c/forge-comm'), 'forge');
    const epilogue = system.installProgram(
      'copy-list.sh',
      `#!/bin/sh\ncp "$GLEXEC_EPILOG_LEFTOVER_FILE" ${out}/list\n`,
    );
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    const payload = system.installProgram(
      'forge.sh',
      `#!/bin/sh\n${forger}\n/bin/sh -c 'sleep 30' "$(head -c 100000 /dev/zero | tr '\\0' x)" >/dev/null 2>&1 &\nsleep 0.2\n`,
    );
    const result = system.run([payload], { env: proxyEnv() });
    assert.equal(result.status, 0, result.stderr);
    const lines = readFileSync(join(out, 'list'), 'utf8').split('\n').filter(Boolean);
    // The header, the forger's child, the shell with the huge argument and its sleep.
    assert.equal(lines.length, 4, lines.join('\n'));
    for (const line of lines.slice(1)) assert.equal(line.split('\t').length, 7, line);
    // The kernel keeps 15 bytes of a process name.
    assert.ok(
      lines.some((line) => line.endsWith('\t[\\x0A1\\x091\\x090\\x091\\x091\\x09X\\x09ro]')),
      lines.join('\n'),
    );
    assert.ok(lines.every((line) => line.length < 4200));
  });

  it('a payload that keeps forking while it is killed leaves nothing behind', () => {
    system.writeConfig(system.standardConfig(['max_processes = 300']));
    const forker = system.installProgram(
      'forker.sh',
      "#!/bin/sh\n/bin/sh -c 'while :; do /bin/sleep 999 & done' >/dev/null 2>&1 &\n/bin/sh -c 'while :; do /bin/sh -c \"/bin/sleep 998 &\" ; done' >/dev/null 2>&1 &\nsleep 0.5\nexit 0\n",
    );
    const result = system.run([forker], { env: proxyEnv() });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(running(system.target.uid, ''), []);
    assert.ok((completion().leftovers as number) > 2);
    assert.equal(completion().survivors, 0);
  });

  it('max_processes stops a fork bomb', () => {
    system.writeConfig(system.standardConfig(['max_processes = 20']));
    // The shell gives up at the first fork the kernel refuses.
    const bomb = system.installProgram(
      'bomb.sh',
      '#!/bin/sh\nfor i in $(seq 60); do /bin/sleep 30 >/dev/null 2>&1 & done\n',
    );
    const result = system.run([bomb], { env: proxyEnv() });
    assert.notEqual(result.status, 0);
    assert.match(result.stderr, /fork/i);
    const left = completion().leftovers as number;
    assert.ok(left > 0 && left < 20, `leftovers: ${left}`);
    assert.deepEqual(running(system.target.uid, 'sleep 30'), []);
  });

  it('no_new_privs = yes makes a setuid-root program run without its privileges', () => {
    const program = system.copyProgram(join(REPO, 'build/c/print-euid'), 'print-euid');
    chmodSync(program, 0o4755);
    assert.equal(system.run([program], { env: proxyEnv() }).stdout, '0\n', 'without no_new_privs the setuid bit works');
    system.writeConfig(system.standardConfig(['no_new_privs = yes']));
    assert.equal(system.run([program], { env: proxyEnv() }).stdout, `${system.target.uid}\n`);
  });

  it('100 runs leave no cgroup directory and no process behind', () => {
    const before = system.jobCgroups().length;
    const leaver = system.installProgram('leaver.sh', '#!/bin/sh\n/bin/sleep 600 >/dev/null 2>&1 &\nexit 0\n');
    for (let run = 0; run < 100; run++) assert.equal(system.run([leaver], { env: proxyEnv() }).status, 0);
    assert.equal(system.jobCgroups().length, before);
    assert.deepEqual(running(system.target.uid, ''), []);
    assert.equal(
      existsSync(system.runtimeDirectory)
        ? readdirSync(system.runtimeDirectory).filter((name) => name.startsWith(`leftovers-`)).length
        : 0,
      0,
    );
  });

  it('kill_leftovers = no lists what is left but lets it run, and keeps its cgroup', async () => {
    system.writeConfig(system.standardConfig(['kill_leftovers = no']));
    const leaver = system.installProgram('leaver2.sh', '#!/bin/sh\n/bin/sleep 403 >/dev/null 2>&1 &\nexit 0\n');
    try {
      assert.equal(system.run([leaver], { env: proxyEnv() }).status, 0);
      assert.equal(running(system.target.uid, 'sleep 403').length, 1);
      const record = completion();
      assert.deepEqual([record.leftovers, record.cleanup, record.survivors], [1, 'none', 1]);
      assert.equal(dirname(String(record.keptCgroup)), system.cgroupBase);
      assert.match(String(record.keptCgroup), /\/job-\d+-[0-9a-f]+$/);
      assert.ok(existsSync(String(record.keptCgroup)));
    } finally {
      killAccountProcesses(system.target.uid);
      const kept = system.logRecords().find((entry) => entry.msg === 'job completed')?.keptCgroup;
      if (typeof kept === 'string')
        await waitUntil(() => spawnSync('rmdir', [kept]).status === 0 || !existsSync(kept), `${kept} to be removable`);
    }
  });

  it('a failure after the payload ran still ends its leftovers and writes the completion record', () => {
    const epilogue = system.installProgram('noop.sh', '#!/bin/sh\nexit 0\n');
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    mkdirSync(system.runtimeDirectory, { recursive: true });
    chmodSync(system.runtimeDirectory, 0o777);
    try {
      const leaver = system.installProgram('leaver5.sh', '#!/bin/sh\n/bin/sleep 406 >/dev/null 2>&1 &\nexit 0\n');
      const result = system.run([leaver], { env: proxyEnv() });
      assertRefused(
        result,
        202,
        `glexec: ${system.runtimeDirectory} must be a root-owned directory that only root can write`,
      );
      assert.deepEqual(running(system.target.uid, 'sleep 406'), []);
      const record = completion();
      assert.deepEqual([record.error, record.exitCode, record.cleanup], ['containment.leftover_dir', 202, 'killed']);
    } finally {
      chmodSync(system.runtimeDirectory, 0o755);
    }
  });

  it('a failure after the leftovers were listed writes a completion record that counts them', () => {
    const epilogue = system.installProgram('noop2.sh', '#!/bin/sh\nexit 0\n');
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    mkdirSync(system.runtimeDirectory, { recursive: true });
    chmodSync(system.runtimeDirectory, 0o777);
    try {
      const leaver = system.installProgram(
        'leaver6.sh',
        '#!/bin/sh\n/bin/sleep 407 >/dev/null 2>&1 &\n/bin/sleep 407 >/dev/null 2>&1 &\nexit 0\n',
      );
      const result = system.run([leaver], { env: proxyEnv() });
      assert.equal(result.status, 202);
      assert.equal(
        result.stderr,
        `glexec: ${system.runtimeDirectory} must be a root-owned directory that only root can write\n`,
      );
      assert.deepEqual(running(system.target.uid, 'sleep 407'), []);
      const record = completion();
      assert.deepEqual(
        [record.error, record.exitCode, record.leftovers, record.cleanup, record.survivors],
        ['containment.leftover_dir', 202, 2, 'killed', 0],
      );
    } finally {
      chmodSync(system.runtimeDirectory, 0o755);
    }
  });

  it('start-payload reports a failure to join on its status descriptor, which a started payload never inherits', () => {
    const helper = join(system.root, 'prefix/lib/glexec/start-payload');
    const identity = [`--uid=${system.target.uid}`, `--gid=${system.target.gid}`, '--groups='];
    const failed = spawnSync(
      helper,
      [`--cgroup-procs=${join(system.root, 'no-such-cgroup/cgroup.procs')}`, ...identity, '--', '/bin/true'],
      { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], encoding: 'utf8' },
    );
    assert.equal(failed.status, 126);
    assert.match(
      String(failed.output[3]),
      /^join cannot open .*no-such-cgroup\/cgroup\.procs: No such file or directory\n$/,
    );
    const dir = join(system.cgroupBase ?? '', `status-test-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    try {
      const started = spawnSync(
        helper,
        [`--cgroup-procs=${join(dir, 'cgroup.procs')}`, ...identity, '--', '/bin/sh', '-c', 'ls /proc/$$/fd'],
        { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], encoding: 'utf8', cwd: '/' },
      );
      assert.equal(started.status, 0, started.stderr);
      assert.equal(String(started.output[3]), 'cwd /\n');
      assert.ok(!started.stdout.split('\n').includes('3'), `the payload inherited descriptor 3: ${started.stdout}`);
    } finally {
      spawnSync('rmdir', [dir]);
    }
  });

  describe('without a usable cgroup v2', () => {
    it('falls back to the process group and session, says so in the completion record, and still ends what stayed there', () => {
      system.writeConfig(system.standardConfig([`cgroup_base = ${join(system.root, 'not-a-cgroup/glexec')}`]));
      const leaver = system.installProgram('leaver3.sh', '#!/bin/sh\n/bin/sleep 404 >/dev/null 2>&1 &\nexit 0\n');
      assert.equal(system.run([leaver], { env: proxyEnv() }).status, 0);
      assert.deepEqual(running(system.target.uid, 'sleep 404'), []);
      const record = completion();
      assert.deepEqual([record.containment, record.leftovers, record.cleanup], ['pgid', 1, 'terminated']);
      assert.ok(
        system
          .logRecords()
          .some(
            (entry) =>
              entry.msg === 'containment by process group' &&
              String(entry.reason).includes('is not a cgroup v2 directory'),
          ),
      );
    });

    it('max_processes that cannot be enforced is a 202', () => {
      system.writeConfig(
        system.standardConfig([`cgroup_base = ${join(system.root, 'not-a-cgroup/glexec')}`, 'max_processes = 10']),
      );
      const result = system.run(['/bin/true'], { env: proxyEnv() });
      assertRefused(
        result,
        202,
        /^glexec: max_processes cannot be enforced: .* is not a cgroup v2 directory glexec can use$/,
      );
    });

    it('containment = off leaves leftovers alone', () => {
      system.writeConfig(system.standardConfig(['containment = off']));
      const leaver = system.installProgram('leaver4.sh', '#!/bin/sh\n/bin/sleep 405 >/dev/null 2>&1 &\nexit 0\n');
      try {
        assert.equal(system.run([leaver], { env: proxyEnv() }).status, 0);
        assert.equal(running(system.target.uid, 'sleep 405').length, 1);
        assert.equal(completion().containment, 'off');
      } finally {
        killAccountProcesses(system.target.uid);
      }
    });
  });
});
