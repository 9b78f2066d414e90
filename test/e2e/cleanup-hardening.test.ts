/**
 * Hardening of cleanup, records and logs (issue 10): no payload process escapes cleanup by the
 * state /proc shows for it, no pid reused by the same account is killed.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { describeProcess } from '../../src/sys/procinfo';
import { signalProcesses } from '../../src/sys/proc';
import { cgroupMounts } from '../../src/sys/cgroup';
import { TestPki } from '../helpers/pki-fixtures';
import { needsRoot, TestSystem } from '../helpers/system';

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
  const source = join(system.root, 'zombie-leader.c');
  writeFileSync(source, [
    '#include <fcntl.h>', '#include <pthread.h>', '#include <stdio.h>', '#include <string.h>', '#include <time.h>', '#include <unistd.h>',
    'static void *run_on(void *unused) { (void)unused; for (;;) pause(); return NULL; }',
    'static char leader_state(pid_t pid) {',
    '  char path[64], text[512];',
    '  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);',
    '  int fd = open(path, O_RDONLY);',
    '  if (fd < 0) return 0;',
    '  ssize_t length = read(fd, text, sizeof text - 1);',
    '  close(fd);',
    '  if (length <= 0) return 0;',
    '  text[length] = 0;',
    '  char *end = strrchr(text, \')\');',
    '  return end && end[1] && end[2] ? end[2] : 0;',
    '}',
    'int main(void) {',
    '  pid_t child = fork();',
    '  if (child < 0) return 1;',
    '  if (child == 0) {',
    '    pthread_t thread;',
    '    if (pthread_create(&thread, NULL, run_on, NULL) != 0) _exit(1);',
    '    pthread_exit(NULL);',
    '  }',
    '  struct timespec pause_a_little = { 0, 1000000 };',
    '  while (leader_state(child) != \'Z\') nanosleep(&pause_a_little, NULL);',
    '  printf("%d\\n", (int)child);',
    '  return 0;',
    '}', '',
  ].join('\n'));
  const program = join(system.bin, 'zombie-leader');
  execFileSync('gcc', ['-o', program, source, '-lpthread']);
  chmodSync(program, 0o755);
  return program;
}

describe('cleanup hardening', { skip: needsRoot }, () => {
  before(() => {
    system = TestSystem.create();
    pki = TestPki.create(system);
  });
  after(() => system?.tearDown());
  beforeEach(() => {
    pki.writeStandardGridMap();
    system.writeConfig(system.standardConfig());
    system.clearLog();
  });

  describe('a leftover whose main thread exited while another thread runs on', () => {
    it('is counted, killed and recorded with containment by cgroup', { skip: noCgroup }, () => {
      const payload = installZombieLeaderPayload();
      const result = system.run([payload], { env: proxyEnv() });
      assert.equal(result.status, 0, result.stderr);
      const record = completion();
      assert.deepEqual([record.containment, record.leftovers, record.cleanup, record.survivors], ['cgroup', 1, 'killed', 0]);
      assert.deepEqual(liveProcessesOf(system.target.uid), [], `still running; the payload's child was ${result.stdout.trim()}`);
    });

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
      assert.deepEqual(liveProcessesOf(system.target.uid), [], `still running; the payload's child was ${result.stdout.trim()}`);
    });
  });

  it('a process of the same account whose start time differs from the one a scan saw is not signalled; the one it saw is', async () => {
    const sleeper = spawn('/usr/bin/setpriv', ['--reuid', String(system.target.uid), '--regid', String(system.target.gid), '--clear-groups', '--', '/bin/sleep', '300'], { stdio: 'ignore' });
    const ended = new Promise<NodeJS.Signals | null>((resolve) => sleeper.once('exit', (_code, signal) => resolve(signal)));
    try {
      const pid = sleeper.pid ?? 0;
      let seen = describeProcess(pid);
      // setpriv execs sleep with the pid kept; wait until the exec has switched the uid.
      while (seen?.uid !== system.target.uid) seen = describeProcess(pid);
      // What a scan saw before the pid was freed and reused: same pid and account, earlier start.
      signalProcesses([{ pid, uid: system.target.uid, startTicks: seen.startTicks - 1 }], 'SIGKILL');
      signalProcesses([{ pid, uid: system.target.uid + 1, startTicks: seen.startTicks }], 'SIGKILL');
      assert.equal(describeProcess(pid)?.state === 'S' || describeProcess(pid)?.state === 'R', true, 'the reused pid was killed');
      signalProcesses([{ pid, uid: system.target.uid, startTicks: seen.startTicks }], 'SIGKILL');
      assert.equal(await ended, 'SIGKILL');
    } finally {
      sleeper.kill('SIGKILL');
    }
  });
});
