/**
 * A hostile review of the epilogue in the monitor (docs/architecture.md, "The epilogue in the
 * monitor"): the same run once with log_level 3 (the monitor runs the epilogue) and once with
 * log_level 4 (phase 2 runs it) must give the epilogue the same process and the caller the same
 * result; nothing the caller controls may make the monitor's path fail where phase 2's would not,
 * or leave root's files behind.
 */
import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TestPki } from '../helpers/pki-fixtures';
import { hasEnded, waitUntil } from '../helpers/processes';
import { installForSuite } from '../helpers/suite';
import { type CompletedRun, needsRoot, type RunOptions, TestSystem } from '../helpers/system';
import { cgroupMounts } from '../../src/sys/cgroup';

let system: TestSystem;
let pki: TestPki;
const noCgroup = cgroupMounts().v2 === undefined ? 'no cgroup v2 is mounted here' : false;

/** One run at `logLevel` with `extra` config lines: its exit, stderr and completion record. */
function runAt(args: string[], logLevel: number, extra: string[], options: RunOptions = {}): CompletedRun {
  return system.completedRun(args, logLevel, extra, {
    ...options,
    env: { GLEXEC_CLIENT_CERT: pki.pilotProxy, ...options.env },
  });
}

/** Root's directory of this suite's epilogues and of what they write. */
const epilogues = () => join(system.root, 'review-epilogues');

/** A root-owned /bin/sh epilogue with `body`; its config lines. */
function epilogue(name: string, body: string, more: string[] = ['epilogue_timeout = 30']): string[] {
  mkdirSync(epilogues(), { recursive: true, mode: 0o755 });
  const path = join(epilogues(), name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return [`epilogue = ${path}`, ...more];
}

/** What a file the epilogue wrote holds, removed after reading ('' when none was written). */
function take(path: string): string {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    // The epilogue did not run.
  }
  rmSync(path, { force: true });
  return text;
}

/**
 * The same run twice: at log level 3 (the monitor may conclude it) and at 4 (phase 2 must), each
 * with what its epilogue wrote to `seen` (empty when it wrote nothing).
 */
function bothWays(args: string[], extra: string[], seen: string, options: RunOptions = {}) {
  take(seen);
  const byMonitor = runAt(args, 3, extra, options);
  const seenByMonitor = take(seen);
  const byPhase2 = runAt(args, 4, extra, options);
  return { byMonitor, seenByMonitor, byPhase2, seenByPhase2: take(seen) };
}

const leftoverLists = (): string[] =>
  readdirSync(system.runtimeDirectory).filter((name) => name.startsWith('leftovers-'));

describe('the epilogue in the monitor, reviewed as an attacker', { skip: needsRoot || noCgroup }, () => {
  installForSuite((made, madePki) => {
    system = made;
    pki = madePki;
  });

  it('gives the epilogue the same process whichever of the monitor and phase 2 starts it: environment, limits, signals, identity, descriptors, directory, cgroup', () => {
    const state = join(epilogues(), 'state');
    const extra = epilogue(
      'state.sh',
      [
        '{',
        // The values that differ from run to run by nature: pids, the job's cgroup, the list's name.
        "  env | grep -v -E '^GLEXEC_EPILOG_(TARGET_PID|TARGET_PGID|GLEXEC_PID|GLEXEC_SID|GLEXEC_PGID|LEFTOVER_FILE|TARGET_CGROUP)=' | sort",
        '  echo "umask $(umask)"',
        '  echo "cwd $(pwd)"',
        '  echo "soft"; ulimit -S -a',
        '  echo "hard"; ulimit -H -a',
        "  grep -E '^(Uid|Gid|Groups|SigBlk|SigIgn|CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs)' /proc/self/status",
        '  echo "oom $(cat /proc/self/oom_score_adj)"',
        '  echo "fds $(ls /proc/self/fd | tr "\\n" " ")"',
        '  echo "cgroup $(cat /proc/self/cgroup)"',
        `} > ${state}`,
      ].join('\n'),
    );
    // A pilot whose soft descriptor limit is below its hard one, as on most hosts.
    const options: RunOptions = { before: 'ulimit -S -n 2000', env: { GLEXEC_JOB_ID: 'job 17' } };
    const { byMonitor, seenByMonitor, byPhase2, seenByPhase2 } = bothWays(['/bin/true'], extra, state, options);
    assert.ok(byMonitor.byMonitor && !byPhase2.byMonitor, 'one run each way');
    assert.notEqual(seenByMonitor, '');
    assert.equal(seenByMonitor, seenByPhase2);
  });

  it('gives the epilogue an epilogue_timeout longer than 24.8 days in phase 2 as the monitor does: it runs to its end', () => {
    const extra = epilogue('long-timeout.sh', '/bin/sleep 0.5; exit 0', ['epilogue_timeout = 3000000']);
    const byMonitor = runAt(['/bin/true'], 3, extra);
    const byPhase2 = runAt(['/bin/true'], 4, extra);
    assert.ok(byMonitor.byMonitor && !byPhase2.byMonitor, 'one run each way');
    assert.deepEqual(
      [byMonitor.status, byMonitor.stderr, (byMonitor.record.epilogue as { result: string }).result],
      [0, '', 'ok'],
    );
    assert.deepEqual(
      [byPhase2.status, byPhase2.stderr, (byPhase2.record.epilogue as { result: string }).result],
      [0, '', 'ok'],
    );
  });

  it('runs the payload and the epilogue for a caller with as many GLEXEC_ variables as a payload may get, records the run and leaves no leftover list behind', () => {
    const ran = join(epilogues(), 'ran');
    const extra = epilogue('many.sh', `echo "$GLEXEC_EPILOG_ARGC" > ${ran}`);
    // The payload's environment stays within the monitor's 65536 items; the epilogue's, with its
    // own variables added, does not.
    const env: Record<string, string> = { GLEXEC_CLIENT_CERT: pki.pilotProxy };
    for (let index = 0; index < 65_520; index++) env[`GLEXEC_V${index}`] = '';
    take(ran);
    system.writeConfig(system.standardConfig(['log_level = 3', ...extra]));
    system.clearLog();
    const result = system.run(['/bin/true'], { env });
    const completed = system.logRecords().filter((record) => record.msg === 'job completed').length;
    const left = leftoverLists();
    for (const name of left) rmSync(join(system.runtimeDirectory, name), { force: true });
    assert.deepEqual(
      { status: result.status, stderr: result.stderr, epilogue: take(ran), completed, left },
      { status: 0, stderr: '', epilogue: '1\n', completed: 1, left: [] },
    );
  });

  it('leaves no leftover list behind when glexec is killed while the payload runs: the monitor makes it only just before the epilogue', async () => {
    const extra = epilogue('killed.sh', 'exit 0');
    system.writeConfig(system.standardConfig(['log_level = 3', ...extra]));
    const started = join(system.scratch, 'payload-started');
    rmSync(started, { force: true });
    const glexec = system.start(
      ['/bin/sh', '-c', `echo $$ > ${started}.tmp; mv ${started}.tmp ${started}; exec sleep 600`],
      {
        env: { GLEXEC_CLIENT_CERT: pki.pilotProxy },
      },
    );
    const exited = new Promise((resolve) => glexec.once('exit', resolve));
    await waitUntil(() => existsSync(started), 'the payload to start');
    const payload = Number(readFileSync(started, 'utf8').trim());
    // No list exists while the payload runs.
    assert.deepEqual(leftoverLists(), []);
    // The batch system ends glexec (its pid: setpriv exec'd the shim) at once, then the payload.
    assert.ok(glexec.pid !== undefined);
    process.kill(glexec.pid, 'SIGKILL');
    await exited;
    process.kill(payload, 'SIGKILL');
    await waitUntil(() => hasEnded(payload), 'the payload to end');
    rmSync(started, { force: true });
    const left = leftoverLists();
    for (const name of left) rmSync(join(system.runtimeDirectory, name), { force: true });
    assert.deepEqual(left, []);
  });

  it('leaves an epilogue whose environment would hold the slot byte to phase 2, which gives it the caller value unchanged', () => {
    const seen = join(epilogues(), 'slot');
    const extra = epilogue('slot.sh', `printf '%s|%s' "$GLEXEC_TAG" "$GLEXEC_EPILOG_TARGET_RC" > ${seen}`);
    take(seen);
    const run = runAt(['/bin/sh', '-c', 'exit 5'], 3, extra, { env: { GLEXEC_TAG: 'a\x01Rb\x01I' } });
    assert.equal(run.byMonitor, false);
    assert.equal(run.status, 5);
    assert.equal(take(seen), 'a\x01Rb\x01I|5');
  });

  it("refuses, through phase 2's walk, an epilogue made untrusted while the payload ran without any mode or owner changing: rewritten in place, its directory swapped, its interpreter link retargeted: 202, not run", async () => {
    // An interpreter in a directory everyone may write: what the trust walk must never let root run.
    const untrusted = join(system.scratch, 'untrusted-bin');
    mkdirSync(untrusted, { recursive: true });
    copyFileSync('/usr/bin/dash', join(untrusted, 'sh'));
    const base = join(epilogues(), 'swap');
    const ran = join(epilogues(), 'swap-ran');
    const trustedLink = join(epilogues(), 'interp');
    const changes: [string, (path: string) => void][] = [
      ['rewritten in place', (path) => writeFileSync(path, `#!${untrusted}/sh\ntouch ${ran}\n`)],
      [
        'its directory swapped',
        (path) => {
          rmSync(`${base}.old`, { recursive: true, force: true });
          renameSync(base, `${base}.old`);
          mkdirSync(base, { mode: 0o755 });
          writeFileSync(path, `#!${untrusted}/sh\ntouch ${ran}\n`, { mode: 0o755 });
        },
      ],
      [
        'its interpreter link retargeted',
        () => {
          rmSync(trustedLink);
          symlinkSync(`${untrusted}/sh`, trustedLink);
        },
      ],
    ];
    for (const [what, change] of changes) {
      rmSync(base, { recursive: true, force: true });
      mkdirSync(base, { recursive: true, mode: 0o755 });
      rmSync(trustedLink, { force: true });
      symlinkSync('/usr/bin/dash', trustedLink);
      const path = join(base, 'epilogue.sh');
      writeFileSync(path, `#!${trustedLink}\ntouch ${ran}\n`, { mode: 0o755 });
      system.writeConfig(system.standardConfig(['log_level = 3', `epilogue = ${path}`]));
      system.clearLog();
      const started = join(system.scratch, 'swap-started');
      const go = join(system.scratch, 'swap-go');
      rmSync(started, { force: true });
      rmSync(go, { force: true });
      rmSync(ran, { force: true });
      const glexec = system.start(['/bin/sh', '-c', `touch ${started}; while [ ! -e ${go} ]; do sleep 0.02; done`], {
        env: { GLEXEC_CLIENT_CERT: pki.pilotProxy },
      });
      let stderr = '';
      glexec.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const status = new Promise<number | null>((resolve) => glexec.once('close', resolve));
      await waitUntil(() => existsSync(started), 'the payload to start');
      change(path);
      writeFileSync(go, '');
      assert.equal(await status, 202, `${what}: ${stderr}`);
      assert.match(stderr, /^glexec: epilogue \S+ was not run: /, what);
      assert.equal(existsSync(ran), false, what);
      const completed = system.logRecords().find((record) => record.msg === 'job completed');
      assert.notEqual(completed?.pid, completed?.glexecPid, `${what}: phase 2 concluded`);
    }
  });

  it('gives the epilogue of a payload killed by a signal, real-time ones included, the return code, exit code and record phase 2 gives it', () => {
    const seen = join(epilogues(), 'signalled');
    const extra = epilogue('signalled.sh', `echo "$GLEXEC_EPILOG_TARGET_RC" > ${seen}`);
    const comparable = (record: Record<string, unknown>) => {
      const { time, pid, glexecPid, payloadPid, payloadPgid, payloadMs, totalMs, ...rest } = record;
      const { durationMs, ...epilogueRest } = rest.epilogue as Record<string, unknown>;
      assert.ok(
        [time, pid, glexecPid, payloadPid, payloadPgid, payloadMs, totalMs, durationMs].every((v) => v !== undefined),
      );
      return { ...rest, epilogue: epilogueRest };
    };
    for (const signal of ['TERM', 'KILL', '40']) {
      const args = ['/bin/sh', '-c', `kill -${signal} $$`];
      const { byMonitor, seenByMonitor: rcByMonitor, byPhase2, seenByPhase2: rcByPhase2 } = bothWays(args, extra, seen);
      assert.ok(byMonitor.byMonitor && !byPhase2.byMonitor, `${signal}: one run each way`);
      assert.deepEqual(
        [byMonitor.status, byMonitor.stderr, rcByMonitor, comparable(byMonitor.record)],
        [byPhase2.status, byPhase2.stderr, rcByPhase2, comparable(byPhase2.record)],
        signal,
      );
    }
  });

  it('sends syslog, after an epilogue it ran, the datagram phase 2 sends for the same run, but for the time, pids and durations', () => {
    const extra = epilogue('syslog.sh', 'exit 0');
    const datagram = (logLevel: number) => {
      system.writeConfig(system.standardConfig([`log_level = ${logLevel}`, 'log_destination = syslog', ...extra]));
      const run = system.runWithSyslog(['/bin/true'], { GLEXEC_CLIENT_CERT: pki.pilotProxy });
      const records = run.datagrams.filter((text) => text.includes(': job completed '));
      assert.equal(records.length, 1, run.datagrams.join('\n'));
      const [, priority, pid, text] = /^<(\d+)>.{15} glexec\[(\d+)\]: (.*)$/s.exec(records[0] ?? '') ?? [];
      const glexecPid = /glexecPid=(\d+)/.exec(text ?? '')?.[1];
      const comparable = ['glexecPid', 'payloadPid', 'payloadPgid', 'payloadMs', 'totalMs']
        .reduce((line, key) => line.replace(new RegExp(` ${key}=\\d+`), ` ${key}=${key}`), text ?? '')
        .replace(/"durationMs":\d+/, '"durationMs":0');
      return { status: run.status, stderr: run.stderr, priority, byMonitor: pid === glexecPid, comparable };
    };
    const byMonitor = datagram(3);
    const byPhase2 = datagram(4);
    assert.ok(byMonitor.byMonitor && !byPhase2.byMonitor, 'one run each way');
    assert.match(byMonitor.comparable, / epilogue=\{"result":"ok"/);
    assert.deepEqual({ ...byMonitor, byMonitor: true }, { ...byPhase2, byMonitor: true });
  });

  it('gives the epilogue the same leftover list whichever of the monitor and phase 2 starts it: its directory, owner, mode and lines', () => {
    const seen = join(epilogues(), 'list');
    const extra = epilogue(
      'list.sh',
      [
        'list="$GLEXEC_EPILOG_LEFTOVER_FILE"',
        `{ echo "$GLEXEC_EPILOG_LEFTOVER_COUNT $(dirname "$list") $(stat -c '%U:%G %a %s' "$list")"; cat "$list"; } > ${seen}`,
      ].join('\n'),
    );
    const {
      byMonitor,
      seenByMonitor: listByMonitor,
      byPhase2,
      seenByPhase2: listByPhase2,
    } = bothWays(['/bin/true'], extra, seen);
    assert.ok(byMonitor.byMonitor && !byPhase2.byMonitor, 'one run each way');
    assert.notEqual(listByMonitor, '');
    assert.equal(listByMonitor, listByPhase2);
  });

  it('watches paths with spaces and a newline: it runs such an epilogue itself, and leaves it to phase 2 once one of those paths changed', async () => {
    const odd = join(epilogues(), 'odd\nname');
    const spaced = join(epilogues(), 'dir with space');
    const link = join(epilogues(), 'odd-link');
    const ran = join(epilogues(), 'odd-ran');
    mkdirSync(odd, { recursive: true, mode: 0o755 });
    mkdirSync(spaced, { recursive: true, mode: 0o755 });
    copyFileSync('/usr/bin/dash', join(odd, 'sh'));
    rmSync(link, { force: true });
    symlinkSync(join(odd, 'sh'), link);
    const path = join(spaced, 'epi logue.sh');
    writeFileSync(path, `#!${link}\necho "$PPID" > '${ran}'\n`, { mode: 0o755 });
    system.writeConfig(system.standardConfig(['log_level = 3', `epilogue = ${path}`]));
    system.clearLog();
    take(ran);
    const untouched = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.pilotProxy } });
    assert.equal(untouched.status, 0, untouched.stderr);
    const first = system.logRecords().find((record) => record.msg === 'job completed');
    assert.equal(first?.pid, first?.glexecPid, 'the monitor concluded');
    assert.equal(take(ran).trim(), String(first?.glexecPid), 'the monitor ran the epilogue');

    system.clearLog();
    const started = join(system.scratch, 'odd-started');
    const go = join(system.scratch, 'odd-go');
    rmSync(started, { force: true });
    rmSync(go, { force: true });
    const glexec = system.start(['/bin/sh', '-c', `touch ${started}; while [ ! -e ${go} ]; do sleep 0.02; done`], {
      env: { GLEXEC_CLIENT_CERT: pki.pilotProxy },
    });
    const status = new Promise<number | null>((resolve) => glexec.once('close', resolve));
    await waitUntil(() => existsSync(started), 'the payload to start');
    // A new, equally trusted interpreter at the path with the newline: a new inode.
    rmSync(join(odd, 'sh'));
    copyFileSync('/usr/bin/dash', join(odd, 'sh'));
    writeFileSync(go, '');
    assert.equal(await status, 0);
    const second = system.logRecords().find((record) => record.msg === 'job completed');
    assert.notEqual(second?.pid, second?.glexecPid, 'phase 2 concluded');
    assert.notEqual(take(ran).trim(), String(second?.glexecPid), 'phase 2 ran the epilogue');
  });

  it('lets a process the epilogue left read the leftover list until it is ended, whichever of the monitor and phase 2 ran the epilogue', () => {
    const seen = join(epilogues(), 'late-reader');
    const ready = join(epilogues(), 'late-reader-ready');
    // The leftover reads the list when it is told to end (SIGTERM), then ends. The epilogue exits
    // only once the leftover has its trap and its sleep has started (a handshake on a fifo): a
    // SIGTERM before that would find a sleep not yet exec'd, which then outlives the grace.
    const extra = epilogue(
      'late-reader.sh',
      [
        'list="$GLEXEC_EPILOG_LEFTOVER_FILE"',
        `rm -f ${ready}; mkfifo ${ready}`,
        `( trap 'cat "$list" > ${seen} 2>/dev/null || echo gone > ${seen}; exit 0' TERM`,
        '  /bin/sleep 600 &',
        '  until read -r name < /proc/$!/comm 2>/dev/null && [ "$name" = sleep ]; do :; done',
        `  echo started > ${ready}`,
        '  wait $! ) &',
        `read -r started < ${ready}`,
        'exit 0',
      ].join('\n'),
    );
    const {
      byMonitor,
      seenByMonitor: readByMonitorsLeftover,
      byPhase2,
      seenByPhase2: readByPhase2sLeftover,
    } = bothWays(['/bin/true'], extra, seen);
    // The monitor ran it (its parent), and phase 2 ended what it left, as in phase 2's own run.
    assert.equal(byMonitor.status, byPhase2.status);
    assert.deepEqual(
      [byMonitor.byMonitor, (byMonitor.record.epilogue as { leftovers: string }).leftovers],
      [false, (byPhase2.record.epilogue as { leftovers: string }).leftovers],
    );
    assert.match(readByPhase2sLeftover, /^pid\tppid/);
    assert.equal(readByMonitorsLeftover, readByPhase2sLeftover);
  });
});
