/**
 * Hardening of cleanup, records and logs (issue 10): no payload process escapes cleanup by the
 * state /proc shows for it, no pid reused by the same account is killed, no completion record is
 * lost (huge argv, many arguments, a full file system, no syslog daemon), and a caller in no white
 * list can neither park root glexec on a stderr pipe that never drains nor grow root's log.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { describeProcess } from '../../src/sys/procinfo';
import { signalProcesses } from '../../src/sys/proc';
import { cgroupMembers, cgroupMounts, cgroupPopulated, killCgroup } from '../../src/sys/cgroup';
import { SYSLOG_UNHEARD } from '../../src/sys/syslog';
import { TestPki } from '../helpers/pki-fixtures';
import { installForSuite } from '../helpers/suite';
import { startAsAccount, waitUntil, waitUntilRunning } from '../helpers/processes';
import { type Account, needsRoot, REPO, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;
const proxyEnv = () => ({ GLEXEC_CLIENT_CERT: pki.pilotProxy });
const noCgroup = needsRoot || (cgroupMounts().v2 === undefined ? 'no cgroup v2 is mounted here' : false);

function completion(): Record<string, unknown> {
  const record = system.logRecords().find((entry) => entry.msg === 'job completed');
  assert.ok(record, 'no completion record');
  return record;
}

/** Processes of `uid` with at least one thread that is neither a zombie nor dead. */
function liveProcessesOf(uid: number): number[] {
  const live: number[] = [];
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${entry}/status`, 'utf8').match(new RegExp(`^Uid:\\s+${uid}\\s`, 'm'))) continue;
      const states = readdirSync(`/proc/${entry}/task`).map((task) => {
        const stat = readFileSync(`/proc/${entry}/task/${task}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      });
      if (states.some((state) => state !== 'Z' && state !== 'X')) live.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return live;
}

/**
 * A payload that leaves a child whose main thread has exited (pthread_exit) while a second thread
 * runs on: /proc shows the child as Z. It prints the child's pid once /proc shows that.
 */
function installZombieLeaderPayload(): string {
  return system.copyProgram(join(REPO, 'build/c/zombie-leader'), 'zombie-leader');
}

/**
 * A caller's stderr that never drains: a pipe filled to the brim, whose read end the caller holds
 * and never reads, and whose shared O_NONBLOCK flag it clears again and again while glexec runs.
 * Prints glexec's exit status.
 */
function installStallingCaller(): string {
  return system.copyProgram(join(REPO, 'build/c/stall-stderr'), 'stall-stderr');
}

/** Runs `program args` as `account`, with the caller environment the tests use. */
function runAs(
  account: Account,
  program: string,
  args: readonly string[],
  env: Record<string, string> = {},
): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(
    '/usr/bin/setpriv',
    ['--reuid', String(account.uid), '--regid', String(account.gid), '--init-groups', '--', program, ...args],
    { env: system.callerEnv(env), cwd: system.scratch, encoding: 'utf8', timeout: 120_000 },
  );
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const logSize = (): number => (existsSync(system.logFile) ? statSync(system.logFile).size : 0);

/** A tmpfs of 64 KiB, filled up, as the directory of the log file; unmounted by `unmount`. */
function fullLogDirectory(): { logFile: string; unmount: () => void } {
  const directory = join(system.root, `full-log-${Date.now()}`);
  mkdirSync(directory, { mode: 0o755 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=755', 'tmpfs', directory]);
  const unmount = () => {
    spawnSync('umount', [directory]);
    rmSync(directory, { recursive: true, force: true });
  };
  try {
    // cat stops at ENOSPC: the file system is full.
    spawnSync('/bin/sh', ['-c', `cat /dev/zero > ${directory}/filler`]);
    return { logFile: join(directory, 'glexec_log'), unmount };
  } catch (error) {
    unmount();
    throw error;
  }
}

const noHostSyslog = existsSync('/dev/log') ? 'this machine has a /dev/log' : false;

describe('cleanup hardening', { skip: needsRoot }, () => {
  installForSuite((installed, testPki) => {
    system = installed;
    pki = testPki;
  });

  describe('a leftover whose main thread exited while another thread runs on', () => {
    it('is counted, killed and recorded with containment by cgroup', { skip: noCgroup }, () => {
      const payload = installZombieLeaderPayload();
      const result = system.run([payload], { env: proxyEnv() });
      assert.equal(result.status, 0, result.stderr);
      const record = completion();
      assert.deepEqual(
        [record.containment, record.leftovers, record.cleanup, record.survivors],
        ['cgroup', 1, 'killed', 0],
      );
      assert.deepEqual(
        liveProcessesOf(system.target.uid),
        [],
        `still running; the payload's child was ${result.stdout.trim()}`,
      );
    });

    it(
      'is the one member its cgroup lists as a process but not as a thread, and killCgroup ends it beside an ordinary process',
      { skip: noCgroup },
      async () => {
        const cgroup = join(system.cgroupBase ?? '', `members-${process.pid}`);
        mkdirSync(cgroup, { recursive: true });
        const intoCgroup = (command: string[]): string[] => [
          '/bin/sh',
          '-c',
          `echo $$ > ${cgroup}/cgroup.procs && exec "$@"`,
          'sh',
          '/usr/bin/setpriv',
          ...['--reuid', String(system.target.uid), '--regid', String(system.target.gid), '--clear-groups', '--'],
          ...command,
        ];
        const [shell, ...shellArgs] = intoCgroup([installZombieLeaderPayload()]);
        const printed = spawnSync(shell ?? '', shellArgs, { encoding: 'utf8', timeout: 60_000 });
        const leaderless = Number(printed.stdout.trim());
        const [sleepShell, ...sleepArgs] = intoCgroup(['/bin/sleep', '300']);
        const sleeper = spawn(sleepShell ?? '', sleepArgs, { stdio: 'ignore' });
        try {
          assert.ok(leaderless > 0, `the zombie-leader program printed ${JSON.stringify(printed.stdout)}`);
          await waitUntilRunning(sleeper.pid, '/usr/bin/sleep');
          const members = cgroupMembers(cgroup);
          assert.deepEqual(members?.leaderless, [leaderless]);
          assert.deepEqual(members?.pids.sort(), [leaderless, sleeper.pid].sort());
          await killCgroup(cgroup, 5000);
          assert.equal(cgroupPopulated(cgroup), false);
          assert.deepEqual(liveProcessesOf(system.target.uid), []);
        } finally {
          for (const pid of [leaderless, sleeper.pid ?? 0])
            if (pid > 0 && describeProcess(pid)) process.kill(pid, 'SIGKILL');
          await waitUntil(() => !cgroupPopulated(cgroup), 'the test cgroup to empty');
          rmdirSync(cgroup);
        }
      },
    );

    it('is counted, killed and recorded with containment by process group', () => {
      system.writeConfig(system.standardConfig([`cgroup_base = ${join(system.root, 'not-a-cgroup/glexec')}`]));
      const payload = installZombieLeaderPayload();
      const result = system.run([payload], { env: proxyEnv() });
      assert.equal(result.status, 0, result.stderr);
      const record = completion();
      assert.equal(record.containment, 'pgid');
      assert.equal(record.leftovers, 1);
      assert.equal(record.survivors, 0);
      assert.notEqual(record.cleanup, 'none');
      assert.deepEqual(
        liveProcessesOf(system.target.uid),
        [],
        `still running; the payload's child was ${result.stdout.trim()}`,
      );
    });
  });

  it('a process of the same account whose start time differs from the one a scan saw is not signalled; the one it saw is', async () => {
    const sleeper = startAsAccount(system.target, ['/bin/sleep', '300'], { detached: false });
    const ended = new Promise<NodeJS.Signals | null>((resolve) =>
      sleeper.once('exit', (_code, signal) => resolve(signal)),
    );
    try {
      const pid = sleeper.pid ?? 0;
      // setpriv execs sleep with the pid kept; wait until the exec has switched the uid.
      await waitUntil(() => describeProcess(pid)?.uid === system.target.uid, 'the sleeper to run as the target');
      const seen = describeProcess(pid);
      assert.ok(seen);
      // What a scan saw before the pid was freed and reused: same pid and account, earlier start.
      signalProcesses([{ pid, uid: system.target.uid, startTicks: seen.startTicks - 1 }], 'SIGKILL');
      signalProcesses([{ pid, uid: system.target.uid + 1, startTicks: seen.startTicks }], 'SIGKILL');
      assert.equal(
        describeProcess(pid)?.state === 'S' || describeProcess(pid)?.state === 'R',
        true,
        'the reused pid was killed',
      );
      signalProcesses([{ pid, uid: system.target.uid, startTicks: seen.startTicks }], 'SIGKILL');
      assert.equal(await ended, 'SIGKILL');
    } finally {
      sleeper.kill('SIGKILL');
    }
  });
  describe('no completion record is lost', () => {
    it('a huge argv full of control characters still gives one syslog datagram of at most 4 kB, which says what was cut', () => {
      system.writeConfig(system.standardConfig(['log_destination = syslog']));
      // Each control character is escaped to four characters: 15 of these were about 6 MB of record.
      const huge = '\x01'.repeat(100_000);
      const { status, stderr, datagrams } = system.runWithSyslog(
        ['/bin/true', ...Array.from({ length: 15 }, () => huge)],
        proxyEnv(),
      );
      assert.equal(status, 0, stderr);
      const records = datagrams.filter((line) => line.includes('job completed'));
      assert.equal(records.length, 1, datagrams.map((line) => line.slice(0, 80)).join('|'));
      const record = records[0] ?? '';
      assert.ok(Buffer.byteLength(record) <= 4096 + 64, `${Buffer.byteLength(record)} bytes`);
      assert.match(record, /truncated=\{"strings":\d+,"items":\d+\}/);
      assert.match(record, /exitCode=0/);
      assert.ok(datagrams.every((line) => Buffer.byteLength(line) <= 4096 + 64));
    });

    it('65,000 arguments: the epilogue runs with the true GLEXEC_EPILOG_ARGC and the ARGVn that fit in 64 KiB', () => {
      const out = join(system.root, 'epilogue-env');
      rmSync(out, { force: true });
      const epilogue = system.installProgram('save-env.sh', `#!/bin/sh\nenv > ${out}\n`);
      system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
      const result = system.run(['/bin/true', ...Array.from({ length: 65_000 }, (_, index) => String(index))], {
        env: proxyEnv(),
      });
      assert.equal(result.status, 0, result.stderr);
      const record = completion();
      assert.equal((record.epilogue as { result?: string }).result, 'ok');
      const env = readFileSync(out, 'utf8').split('\n');
      assert.ok(env.includes('GLEXEC_EPILOG_ARGC=65001'));
      assert.ok(env.includes('GLEXEC_EPILOG_ARGV0=/bin/true'));
      const passed = env.filter((line) => line.startsWith('GLEXEC_EPILOG_ARGV'));
      const bytes = passed.reduce((sum, line) => sum + Buffer.byteLength(line) + 1, 0);
      assert.ok(passed.length > 1000 && bytes <= 64 * 1024, `${passed.length} variables, ${bytes} bytes`);
      assert.ok(
        env.includes(`GLEXEC_EPILOG_ARGV${passed.length - 1}=${passed.length - 2}`),
        'the ARGVn passed are the first ones, in order',
      );
    });

    it("caller GLEXEC_* variables too large for the epilogue's exec are a 201 before the payload starts", () => {
      const epilogue = system.installProgram('noop-epilogue.sh', '#!/bin/sh\nexit 0\n');
      system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
      const marker = join(system.scratch, 'payload-ran');
      rmSync(marker, { force: true });
      const payload = system.installProgram('touch-marker.sh', `#!/bin/sh\ntouch ${marker}\n`);
      // With an unlimited stack the caller's exec may take 6 MiB, and its variables fit with 2 kB to
      // spare; the epilogue's exec (the same variables and its own, under glexec's stack limit) does not.
      const room = 6 * 1024 * 1024 - 2048;
      const entry = (index: number, bytes: number) =>
        `export GLEXEC_BIG${String(index).padStart(2, '0')}=$(head -c ${bytes} /dev/zero | tr '\\0' x)`;
      const entryBytes = (bytes: number) => 'GLEXEC_BIGnn='.length + bytes + 1 + 8;
      const exports: string[] = [];
      let used = 0;
      for (let index = 0; used + entryBytes(100_000) <= room; index++, used += entryBytes(100_000))
        exports.push(entry(index, 100_000));
      exports.push(entry(99, room - used - entryBytes(0)));
      const result = system.run([payload], { env: proxyEnv(), before: ['ulimit -s unlimited', ...exports].join('; ') });
      assertRefused(
        result,
        201,
        /^glexec: the epilogue could not be given its environment \(\d+ bytes, at most \d+, one variable at most 131072\): the caller's GLEXEC_\* variables are too large$/,
      );
      assert.equal(existsSync(marker), false, 'the payload ran');
    });

    it('a log file on a full file system: the record goes to syslog and glexec exits 202 saying so', () => {
      const full = fullLogDirectory();
      try {
        system.writeConfig(system.standardConfig([`log_file = ${full.logFile}`]));
        const { status, stderr, datagrams } = system.runWithSyslog(['/bin/true'], proxyEnv());
        assert.equal(
          stderr,
          'glexec: the completion record could not be written to the log file (ENOSPC); it was written to syslog instead\n',
        );
        assert.equal(status, 202);
        const records = datagrams.filter((line) => line.includes('job completed'));
        assert.equal(records.length, 1);
        assert.match(records[0] ?? '', /payloadRc=0 .*exitCode=0/);
      } finally {
        full.unmount();
      }
    });

    it(
      'a log file on a full file system and no syslog daemon: the record goes to stderr and glexec exits 202',
      { skip: noHostSyslog },
      () => {
        const full = fullLogDirectory();
        try {
          system.writeConfig(system.standardConfig([`log_file = ${full.logFile}`]));
          const result = system.run(['/bin/true'], { env: proxyEnv() });
          assert.equal(result.status, 202);
          const match =
            /^glexec: the completion record could not be written to the log file \(ENOSPC\), nor to syslog: (\{.*\})\n$/.exec(
              result.stderr,
            );
          assert.ok(match, result.stderr);
          const record = JSON.parse(match[1] ?? '') as Record<string, unknown>;
          assert.deepEqual([record.msg, record.payloadRc, record.exitCode], ['job completed', 0, 0]);
        } finally {
          full.unmount();
        }
      },
    );

    it(
      'log_destination = syslog and nothing listens on /dev/log: the record goes to the log file and glexec exits 202 saying so',
      { skip: noHostSyslog },
      () => {
        system.writeConfig(system.standardConfig(['log_destination = syslog']));
        const result = system.run(['/bin/true'], { env: proxyEnv() });
        assert.equal(
          result.stderr,
          `glexec: warning: ${SYSLOG_UNHEARD}\nglexec: the completion record could not be written to syslog (nothing listens on /dev/log); it was written to the log file instead\n`,
        );
        assert.equal(result.status, 202);
        assert.equal(completion().exitCode, 0);
      },
    );
  });

  it('a white-listed caller with thousands of variables logged as dropped adds at most 32 KiB of ordinary records and the completion record', () => {
    const before = logSize();
    const dropped = Object.fromEntries(Array.from({ length: 3000 }, (_, index) => [`GLEXEC_NOT-A-NAME-${index}`, 'z']));
    const result = system.run(['/bin/true'], { env: { ...proxyEnv(), ...dropped } });
    assert.equal(result.status, 0, result.stderr);
    const added = logSize() - before;
    assert.ok(added <= 32 * 1024 + 2 * 4096, `${added} bytes`);
    const records = system.logRecords();
    assert.ok(
      records.some(
        (record) =>
          record.msg === 'this call has written as much to the log as one call may; further records are left out',
      ),
    );
    const completed = completion();
    assert.ok((completed.recordsLeftOut as number) > 2000, String(completed.recordsLeftOut));
  });

  describe('a caller in no white list', () => {
    it('cannot park glexec on a stderr pipe that never drains, even clearing its O_NONBLOCK flag: glexec ends with 203', () => {
      const staller = installStallingCaller();
      const result = runAs(system.stranger, staller, [system.shim, '/bin/true'], proxyEnv());
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, '203\n');
    });

    it('adds one short record to the log per refused call, however large its arguments and environment', () => {
      const before = logSize();
      const large = 'y'.repeat(100_000);
      const result = runAs(system.stranger, system.shim, ['/bin/true', ...Array.from({ length: 12 }, () => large)], {
        ...proxyEnv(),
        GLEXEC_ID: large,
      });
      assert.equal(result.status, 203);
      const added = logSize() - before;
      assert.ok(added > 0 && added <= 512, `${added} bytes`);
      assert.deepEqual(
        system.logRecords().map((record) => record.msg),
        [`caller ${system.stranger.name} (uid ${system.stranger.uid}) is not in user_white_list or group_white_list`],
      );
    });
  });
});
