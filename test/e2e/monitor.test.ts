/**
 * The C monitor between the two TypeScript phases (docs/architecture.md): while the payload runs,
 * glexec is one small C process and no node; a phase 1 killed before the start runs nothing; a
 * phase 2 that dies still leaves the payload's cgroup killed and a completion record.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { TestPki } from '../helpers/pki-fixtures';
import { processesOfAccount, waitUntil } from '../helpers/processes';
import { installForSuite } from '../helpers/suite';
import { needsRoot, REPO, TestSystem } from '../helpers/system';
import { cgroupMounts } from '../../src/sys/cgroup';
import { encodePlan, type Plan } from '../../src/plan';
import { endingOfWaitStatus, exitCodeOf, rawReturnCode } from '../../src/exitcode';

let system: TestSystem;
let pki: TestPki;
const proxyEnv = (): Record<string, string> => ({ GLEXEC_CLIENT_CERT: pki.pilotProxy });
const noCgroup = cgroupMounts().v2 === undefined ? 'no cgroup v2 is mounted here' : false;

function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function descendants(pid: number): number[] {
  return children(pid).flatMap((child) => [child, ...descendants(child)]);
}

function executable(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** Private memory of `pid` in kB (clean and dirty), from /proc/<pid>/smaps_rollup. */
function privateKb(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(rollup)?.[1] ?? NaN);
  return field('Private_Clean') + field('Private_Dirty');
}

/** A payload that writes its pid, then waits until the test writes to its FIFO. */
function waitingJob(name: string): { pidFile: string; fifo: string; args: string[] } {
  const pidFile = join(system.scratch, `${name}.pid`);
  const fifo = join(system.scratch, `${name}.fifo`);
  for (const path of [pidFile, fifo]) spawnSync('rm', ['-f', path]);
  assert.equal(spawnSync('mkfifo', ['-m', '0666', fifo]).status, 0);
  const script = system.installProgram(
    'wait-on-fifo.sh',
    '#!/bin/sh\necho $$ > "$1.tmp" && mv "$1.tmp" "$1"\nread line < "$2"\n',
  );
  return { pidFile, fifo, args: [script, pidFile, fifo] };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** The target's /tmp copies of create_target_proxy. */
function targetProxyCopies(): string[] {
  return readdirSync('/tmp')
    .filter((name) => name.startsWith(`x509up_u${system.target.uid}.glexec.`))
    .sort();
}

function completion(): Record<string, unknown> {
  const record = system.logRecords().find((entry) => entry.msg === 'job completed');
  assert.ok(record, 'no completion record');
  return record;
}

describe('the monitor', { skip: needsRoot }, () => {
  installForSuite((made, madePki) => {
    system = made;
    pki = madePki;
  });

  it('is the glexec process while the payload runs: the shim binary, with the payload as its only child and no node process under it', async () => {
    const job = waitingJob('alone');
    const glexec = system.start(job.args, { env: proxyEnv() });
    const ended = exited(glexec);
    const monitor = glexec.pid ?? 0;
    await waitUntil(() => existsSync(job.pidFile), 'the payload to start');
    const payload = Number(readFileSync(job.pidFile, 'utf8'));
    assert.equal(executable(monitor), system.shim);
    // Phase 1 may still be on its way out: it has ended once the payload is the only child.
    await waitUntil(() => children(monitor).length === 1, 'phase 1 to end');
    assert.deepEqual(children(monitor), [payload]);
    assert.deepEqual(
      [monitor, ...descendants(monitor)].filter((pid) => executable(pid) === process.execPath),
      [],
    );
    const kb = privateKb(monitor);
    assert.ok(kb <= 1024, `the lingering glexec holds ${kb} kB of private memory`);
    writeFileSync(job.fifo, 'go\n');
    assert.equal(await ended, 0);
    assert.equal(completion().glexecPid, monitor);
  });

  it('holds at most 1 MB of private memory per lingering job, with eight jobs at once', async (t) => {
    const jobs = Array.from({ length: 8 }, (_, index) => waitingJob(`many-${index}`));
    const running = jobs.map((job) => {
      const child = system.start(job.args, { env: proxyEnv() });
      return { job, child, ended: exited(child) };
    });
    await waitUntil(() => jobs.every((job) => existsSync(job.pidFile)), 'every payload to start');
    await waitUntil(() => running.every(({ child }) => children(child.pid ?? 0).length === 1), 'every phase 1 to end');
    const kbs = running.map(({ child }) => privateKb(child.pid ?? 0));
    const total = kbs.reduce((sum, kb) => sum + kb, 0);
    t.diagnostic(`private memory of ${kbs.length} lingering glexec: ${total} kB in all, ${kbs.join(', ')} kB each`);
    for (const kb of kbs) assert.ok(kb <= 1024, `${kb} kB`);
    for (const { job } of running) writeFileSync(job.fifo, 'go\n');
    assert.deepEqual(
      await Promise.all(running.map(({ ended }) => ended)),
      jobs.map(() => 0),
    );
  });

  it('runs nothing when phase 1 is killed before the payload starts: 202 and one line', async () => {
    system.writeConfig(system.standardConfig(['create_target_proxy = yes']));
    const marker = join(system.scratch, 'must-not-run');
    spawnSync('rm', ['-f', marker]);
    const payload = system.installProgram('touch-marker.sh', `#!/bin/sh\ntouch ${marker}\n`);
    // Phase 1 reads the proxy under a shared lock before its checks: it waits while the test holds it.
    const holder = spawn('/usr/bin/flock', ['--exclusive', pki.pilotProxy, '-c', 'echo locked; exec sleep 60'], {
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => holder.stdout?.once('data', () => resolve()));
    try {
      const glexec = system.start([payload], { env: proxyEnv() });
      const ended = exited(glexec);
      let stderr = '';
      glexec.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const monitor = glexec.pid ?? 0;
      await waitUntil(() => system.logRecords().some((entry) => entry.msg === 'glexec invoked'), 'phase 1 to start');
      const phase1 = children(monitor).filter((pid) => executable(pid) === process.execPath);
      assert.equal(phase1.length, 1);
      process.kill(phase1[0] ?? 0, 'SIGKILL');
      const status = await ended;
      assertRefused(
        { status, stderr },
        202,
        'glexec: internal error: the decision phase ended by signal 9; nothing was run',
      );
    } finally {
      if (holder.pid !== undefined) process.kill(-holder.pid, 'SIGKILL');
    }
    assert.equal(existsSync(marker), false);
    assert.deepEqual(processesOfAccount(system.target.uid), []);
    assert.equal(
      system.logRecords().some((entry) => entry.msg === 'job completed'),
      false,
    );
  });

  it(
    "kills the payload's cgroup and writes a minimal record itself when phase 2 dies: 202 and one line",
    { skip: noCgroup },
    async () => {
      // The epilogue runs under phase 2 (its parent) while the payload's leftovers still live.
      const epilogue = system.installProgram('kill-phase-2.sh', '#!/bin/sh\nkill -KILL $PPID\n');
      system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
      const payload = system.installProgram(
        'leave-sleeper.sh',
        '#!/bin/sh\nsetsid sleep 300 </dev/null >/dev/null 2>&1 &\nexit 0\n',
      );
      const result = system.run([payload], { env: proxyEnv() });
      assertRefused(
        result,
        202,
        'glexec: internal error: the concluding phase ended by signal 9; the payload was killed',
      );
      await waitUntil(() => processesOfAccount(system.target.uid).length === 0, "the payload's leftover to be killed");
      const record = completion();
      assert.equal(record.error, 'monitor.conclusion_failed');
      assert.equal(record.cleanup, 'killed');
      assert.equal(record.exitCode, 202);
      assert.equal(typeof record.glexecPid, 'number');
      assert.equal(typeof record.payloadPid, 'number');
      assert.deepEqual(record.command, [payload]);
      assert.equal((record.caller as { user: string }).user, system.pilot.name);
      assert.equal((record.target as { uid: number }).uid, system.target.uid);
    },
  );

  it('says nothing on stderr under silent_logging when phase 2 dies, and still exits 202 with the record', () => {
    const epilogue = system.installProgram('kill-phase-2.sh', '#!/bin/sh\nkill -KILL $PPID\n');
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`, 'silent_logging = yes']));
    const result = system.run(['/bin/true'], { env: proxyEnv() });
    assert.equal(result.status, 202);
    assert.equal(result.stderr, '');
    assert.equal(completion().error, 'monitor.conclusion_failed');
  });

  it("gives the payload's exit code and one record to a caller whose RLIMIT_SIGPENDING is 0 (phase 2 says it is done on a pipe, not with a queued signal)", () => {
    system.writeConfig(system.standardConfig());
    const result = system.run(['/bin/sh', '-c', 'exit 7'], {
      env: proxyEnv(),
      before: 'prlimit --sigpending=0:0 --pid $$',
    });
    assert.equal(result.status, 7, result.stderr);
    assert.equal(result.stderr, '');
    const records = system.logRecords().filter((entry) => entry.msg === 'job completed');
    assert.equal(records.length, 1);
    assert.equal(records[0]?.exitCode, 7);
  });

  it('cannot be told a false start by a working directory whose name holds a newline: the payload runs and the record names the directory', () => {
    system.writeConfig(system.standardConfig());
    const directory = join(system.scratch, 'd\nexec fake failure');
    spawnSync('rm', ['-rf', directory]);
    spawnSync('mkdir', ['-m', '0755', directory]);
    const marker = join(system.scratch, 'newline-cwd-ran');
    spawnSync('rm', ['-f', marker]);
    const result = system.run(['/bin/sh', '-c', `touch ${marker}`], { env: proxyEnv(), cwd: directory });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(existsSync(marker), true);
    // The log writes control characters as \xHH.
    assert.equal(completion().cwd, directory.replace('\n', '\\x0A'));
  });

  it('refuses, in phase 1, arguments too many for the monitor to take (though few enough for the shim): 201, one line, and no cgroup or target-proxy copy left', () => {
    system.writeConfig(system.standardConfig(['create_target_proxy = yes']));
    const copiesBefore = targetProxyCopies();
    const cgroupsBefore = system.jobCgroups();
    const result = system.run(['/bin/echo', ...Array.from({ length: 65530 }, () => 'a')], { env: proxyEnv() });
    assertRefused(
      result,
      201,
      "glexec: the payload's arguments and environment are too large to hand over: more than 65536 arguments or environment variables",
    );
    assert.deepEqual(targetProxyCopies(), copiesBefore);
    assert.deepEqual(system.jobCgroups(), cgroupsBefore);
  });

  it(
    'starts the payload inside its cgroup where clone3 is refused (as by some container runtimes): start-payload joins it itself',
    { skip: noCgroup },
    () => {
      system.writeConfig(system.standardConfig());
      const { pilot } = system;
      const result = spawnSync(
        join(REPO, 'build/c/no-clone3'),
        [
          '/usr/bin/setpriv',
          `--reuid=${pilot.uid}`,
          `--regid=${pilot.gid}`,
          '--init-groups',
          '--',
          system.shim,
          '/bin/cat',
          '/proc/self/cgroup',
        ],
        { env: system.callerEnv(proxyEnv()), cwd: system.scratch, encoding: 'utf8' },
      );
      assert.equal(result.status, 0, result.stderr);
      assert.match(result.stdout, new RegExp(`^0::/.*${basename(system.cgroupBase ?? '')}/job-[^/\n]+$`, 'm'));
      assert.equal(completion().exitCode, 0);
    },
  );

  it('ends its concluding phase when it is killed itself: no root node outlives the glexec process', async () => {
    const pidFile = join(system.scratch, 'blocking-epilogue.pid');
    const fifo = join(system.scratch, 'blocking-epilogue.fifo');
    for (const path of [pidFile, fifo]) spawnSync('rm', ['-f', path]);
    assert.equal(spawnSync('mkfifo', ['-m', '0600', fifo]).status, 0);
    const epilogue = system.installProgram(
      'blocking-epilogue.sh',
      `#!/bin/sh\necho $$ > ${pidFile}.tmp && mv ${pidFile}.tmp ${pidFile}\nread line < ${fifo}\n`,
    );
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    const glexec = system.start(['/bin/true'], { env: proxyEnv() });
    const ended = exited(glexec);
    await waitUntil(() => existsSync(pidFile), 'the epilogue to start');
    const epiloguePid = Number(readFileSync(pidFile, 'utf8'));
    const phase2 = Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${epiloguePid}/status`, 'utf8'))?.[1]);
    assert.equal(executable(phase2), process.execPath);
    process.kill(glexec.pid ?? 0, 'SIGKILL');
    await ended;
    // Phase 2 would otherwise wait for the epilogue, which waits for the test.
    await waitUntil(() => executable(phase2) === undefined, 'phase 2 to die with the monitor');
    writeFileSync(fifo, 'go\n');
    await waitUntil(() => executable(epiloguePid) === undefined, 'the epilogue to end');
  });

  it('starts the epilogue as it starts the payload: only stdio on /dev/null, oom_score_adj 0, and a file without #! runs under /bin/sh', () => {
    const out = join(system.scratch, 'epilogue-start');
    spawnSync('rm', ['-f', out]);
    // No #! line: execve refuses it (ENOEXEC), and it runs under /bin/sh as execvp would run it.
    const epilogue = system.installProgram(
      'no-shebang-epilogue',
      `for fd in /proc/$$/fd/*; do readlink "$fd"; done > ${out}.tmp\ncat /proc/$$/oom_score_adj >> ${out}.tmp\nmv ${out}.tmp ${out}\n`,
    );
    system.writeConfig(system.standardConfig([`epilogue = ${epilogue}`]));
    const result = system.run(['/bin/true'], { env: proxyEnv() });
    assert.equal(result.status, 0, result.stderr);
    const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
    assert.equal(lines.pop(), '0');
    // Besides its own redirection and the script /bin/sh reads, nothing of glexec's (the caller's stderr, a plan) is open.
    assert.deepEqual(
      lines.filter((target) => ![epilogue, '/dev/null', `${out}.tmp`].includes(target)),
      [],
    );
    assert.ok(lines.filter((target) => target === '/dev/null').length >= 3, lines.join(', '));
  });
});

describe("the monitor's plan parser (shim/monitor.c, through the plan-check fixture)", () => {
  const check = (input: Buffer | string) =>
    spawnSync(join(REPO, 'build/c/plan-check'), [], { input, encoding: 'utf8' });
  const plan: Plan = {
    helperArgs: ['--uid=1001', '--', '/bin/echo', 'two\nlines', 'é'],
    env: ['PATH=/usr/bin:/bin', 'EMPTY='],
    cgroup: '/sys/fs/cgroup/glexec/job-1',
    recordFile: '/var/log/glexec/glexec_log',
    recordFacility: 24,
    recordJson: '"dn":"/CN=x"',
    recordText: 'dn=/CN=x',
    silent: false,
    trivial: undefined,
    epilogue: undefined,
    proxyCopy: undefined,
    state: '{}',
  };
  const refusal = (why: string): string =>
    `glexec: internal error: the plan of the decision phase is not valid (${why}); nothing was run`;

  it('reads what phase 1 writes, value for value', () => {
    const encoded = encodePlan(plan);
    const result = check(encoded);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(
      result.stdout,
      [
        'arg start-payload',
        ...plan.helperArgs.map((arg) => `arg ${arg}`),
        ...plan.env.map((entry) => `env ${entry}`),
        `cgroup ${plan.cgroup}`,
        `record-file ${plan.recordFile}`,
        'record-facility 24',
        'trivial-log-gid -1',
        'epilogue-times -1 0',
        'epilogue-arg start-payload',
        // The part handed back to phase 2: all but the end.
        `body ${encoded.length - 'end 0\n\n'.length}`,
        '',
      ].join('\n'),
    );
  });

  const trivial: Plan = {
    ...plan,
    trivial: {
      logGid: 4,
      signalEndings: Array.from({ length: 64 }, (_, index) => JSON.stringify(endingOfWaitStatus(index + 1))),
      records: [{ cwd: '/home/pilot', template: '{"cwd":"/home/pilot","exitCode":\x01X}\n' }],
    },
  };

  it("reads a trivial conclusion's log group, its 64 signal endings and its records", () => {
    const result = check(encodePlan(trivial));
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.split('\n');
    assert.ok(lines.includes('trivial-log-gid 4'));
    assert.deepEqual(
      lines.filter((line) => line.startsWith('trivial-ending ')),
      trivial.trivial?.signalEndings.map((ending) => `trivial-ending ${ending}`),
    );
    assert.deepEqual(
      lines.filter((line) => line.startsWith('trivial-record ')),
      [`trivial-record ${Buffer.byteLength(`/home/pilot\n${trivial.trivial?.records[0]?.template ?? ''}`)}`],
    );
  });

  it("maps every wait status as phase 2 does (src/exitcode.ts): the record's ending, the payload's return code, glexec's exit code, for exit 0..255 and signal 1..64", () => {
    const result = spawnSync(join(REPO, 'build/c/plan-check'), ['--endings'], {
      input: encodePlan(trivial),
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stderr);
    const endings = [
      ...Array.from({ length: 256 }, (_, code) => endingOfWaitStatus(code << 8)),
      ...Array.from({ length: 64 }, (_, index) => endingOfWaitStatus(index + 1)),
    ];
    assert.deepEqual(
      result.stdout.split('\n').slice(0, -1),
      endings.map((ending) => `${JSON.stringify(ending)} ${rawReturnCode(ending)} ${exitCodeOf(ending)}`),
    );
  });

  const withEpilogue: Plan = {
    ...trivial,
    epilogue: {
      helperArgs: ['--uid=0', '--gid=0', '--groups=0', '--epilogue', '--', '/etc/glexec/epilogue'],
      env: ['PATH=/usr/bin', 'GLEXEC_EPILOG_TARGET_PID=\x01I'],
      timeoutMs: 300,
      graceMs: 200,
      leftoverList: { path: '/run/glexec/leftovers-1.tsv', text: 'pid\tcommand\n', readerGid: 27 },
      watch: [{ dev: 1n, ino: 2n, ctimeNs: 3n, uid: 0n, gid: 0n, mode: 0o100755n, path: '/etc/glexec/epilogue' }],
    },
  };

  it("reads the monitor's epilogue: start-payload's arguments, the environment with its slots, the times, the leftover list and what the trust walk saw", () => {
    const result = check(encodePlan(withEpilogue));
    assert.equal(result.status, 0, result.stderr);
    const lines = result.stdout.split('\n').filter((line) => line.startsWith('epilogue-'));
    assert.deepEqual(lines, [
      'epilogue-times 300 200',
      'epilogue-arg start-payload',
      ...(withEpilogue.epilogue?.helperArgs ?? []).map((arg) => `epilogue-arg ${arg}`),
      ...(withEpilogue.epilogue?.env ?? []).map((entry) => `epilogue-env ${entry}`),
      'epilogue-leftover-list /run/glexec/leftovers-1.tsv 27 12',
      `epilogue-watch 1 2 3 0 0 ${0o100755} /etc/glexec/epilogue`,
    ]);
  });

  it("refuses a monitor's epilogue without a trivial conclusion, arguments or a watched path, with bad times, or a leftover list with a relative path or a bad group", () => {
    const text = encodePlan(withEpilogue).toString('latin1');
    const watched = `1 2 3 0 0 ${0o100755} /etc/glexec/epilogue`;
    const watch = `epilogue-watch ${watched.length}\n${watched}\n`;
    assert.ok(text.includes(watch), text);
    const cases: [string, string][] = [
      [text.replace(/epilogue-arg [^\n]*\n[^\n]*\n/g, ''), 'bad epilogue'],
      [text.replace(watch, ''), 'bad epilogue'],
      [text.replace('epilogue-times 7\n300 200\n', 'epilogue-times 0\n\n'), 'bad epilogue'],
      [text.replace('epilogue-times 7\n300 200\n', 'epilogue-times 7\n300 -20\n'), 'bad epilogue-times'],
      [text.replace('epilogue-times 7\n300 200\n', 'epilogue-times 7\n300x200\n'), 'bad epilogue-times'],
      [
        text.replace(
          'epilogue-leftover-list 43\n/run/glexec/leftovers-1.tsv\n27\n',
          'epilogue-leftover-list 20\nleft\n27\n',
        ),
        'bad epilogue-leftover-list',
      ],
      [
        text.replace(
          'epilogue-leftover-list 43\n/run/glexec/leftovers-1.tsv\n27\n',
          'epilogue-leftover-list 43\n/run/glexec/leftovers-1.tsv\nx7\n',
        ),
        'bad epilogue-leftover-list',
      ],
      [
        text
          .replace('trivial-log-gid 1\n4\n', 'trivial-log-gid 0\n\n')
          .replace(/trivial-(ending|record) [0-9]+\n[^]*?\n(?=trivial|epilogue)/g, ''),
        'bad epilogue',
      ],
    ];
    for (const [input, why] of cases) assertRefused(check(Buffer.from(input, 'latin1')), 202, refusal(why));
  });

  it("reads create_target_proxy's copy as the monitor removes it, and refuses one for root, with a number or a line missing, or without a trivial conclusion", () => {
    const proxyCopy = {
      uid: 1001,
      gid: 1002,
      dev: 2049,
      ino: 77,
      recordPath: '/run/glexec/target-proxies/k-1-ab',
      path: '/tmp/x509up_u1001.glexec.0123456789abcdef',
      recordText: '{"path":"/tmp/x509up_u1001.glexec.0123456789abcdef","dev":2049,"ino":77}',
    };
    const result = check(encodePlan({ ...trivial, proxyCopy }));
    assert.equal(result.status, 0, result.stderr);
    assert.ok(
      result.stdout.includes(
        `proxy-copy 1001 1002 2049 77 ${proxyCopy.recordPath} ${proxyCopy.path} ${proxyCopy.recordText}\n`,
      ),
      result.stdout,
    );
    const text = encodePlan({ ...trivial, proxyCopy }).toString('latin1');
    const field = `1001 1002 2049 77\n${proxyCopy.recordPath}\n${proxyCopy.path}\n${proxyCopy.recordText}`;
    const cases: [string, string][] = [
      [text.replace(`proxy-copy ${field.length}\n1001 `, `proxy-copy ${field.length - 3}\n0 `), 'bad proxy-copy'],
      [
        text.replace(
          `proxy-copy ${field.length}\n1001 1002 2049 77\n`,
          `proxy-copy ${field.length - 3}\n1001 1002 2049\n`,
        ),
        'bad proxy-copy',
      ],
      [
        text.replace(
          `proxy-copy ${field.length}\n${field}`,
          `proxy-copy ${field.length - proxyCopy.recordText.length - 1}\n${field.slice(0, -proxyCopy.recordText.length - 1)}`,
        ),
        'bad proxy-copy',
      ],
      [
        encodePlan({ ...plan, proxyCopy: undefined })
          .toString('latin1')
          .replace('proxy-copy 0\n\n', `proxy-copy ${field.length}\n${field}\n`),
        'bad proxy-copy',
      ],
    ];
    for (const [input, why] of cases) assertRefused(check(Buffer.from(input, 'latin1')), 202, refusal(why));
  });

  it('refuses trivial fields without a log group, a trivial conclusion without every signal ending or a record, and a record without its directory line', () => {
    const text = encodePlan(trivial).toString('latin1');
    const firstEnding = `trivial-ending ${trivial.trivial?.signalEndings[0]?.length}\n${trivial.trivial?.signalEndings[0]}\n`;
    const record = `/home/pilot\n${trivial.trivial?.records[0]?.template ?? ''}`;
    const recordField = `trivial-record ${Buffer.byteLength(record)}\n${record}\n`;
    const cases: [string, string][] = [
      [text.replace('trivial-log-gid 1\n4\n', 'trivial-log-gid 0\n\n'), 'bad trivial conclusion'],
      [text.replace(firstEnding, ''), 'bad trivial conclusion'],
      [text.replace(recordField, ''), 'bad trivial conclusion'],
      [text.replace(recordField, 'trivial-record 2\n{}\n'), 'bad trivial-record'],
      [text.replace('trivial-log-gid 1\n4\n', 'trivial-log-gid 2\n-4\n'), 'bad trivial-log-gid'],
    ];
    for (const [input, why] of cases) assertRefused(check(Buffer.from(input, 'latin1')), 202, refusal(why));
  });

  it('refuses another version, a field out of order, repeated or missing, a bad length, a NUL, and bytes after the end', () => {
    const text = encodePlan(plan).toString('latin1');
    const cases: [string, string][] = [
      [text.replace('glexec-plan 1', 'glexec-plan 2'), 'not a version 1 plan'],
      [text.replace('cgroup 27\n/sys/fs/cgroup/glexec/job-1\n', ''), 'field missing, repeated or out of order'],
      [text.replace('state 2\n{}\n', 'state 2\n{}\nstate 2\n{}\n'), 'field missing, repeated or out of order'],
      [text.replace('record-file ', 'env 3\nA=b\nrecord-file '), 'field missing, repeated or out of order'],
      [text.replace('cgroup 27\n', 'cgroup 28\n'), 'bad field value'],
      [text.replace('cgroup 27\n', 'cgroup 027\n'), 'bad field length'],
      [text.replace('cgroup 27\n', 'cgroup 99999\n'), 'bad field length'],
      [text.replace('EMPTY=', 'EMPTY\0'), 'bad field value'],
      [`${text}x`, 'bad end'],
      [text.slice(0, -'end 0\n\n'.length), 'bad field name'],
      [text.replace('end 0', 'extra 0\n\nend 0'), 'unknown field'],
      [text.replace('record-facility 2\n24', 'record-facility 2\n-1'), 'bad record-facility'],
      [text.replace('silent 1\n0\n', 'silent 1\nx\n'), 'bad silent'],
    ];
    for (const [input, why] of cases) {
      const result = check(Buffer.from(input, 'latin1'));
      assertRefused(result, 202, refusal(why));
      assert.equal(result.stdout, '');
    }
  });

  it("refuses a payload's start with the epilogue's rights (which allow uid 0), whoever wrote the plan", () => {
    const result = check(encodePlan({ ...plan, helperArgs: ['--epilogue', '--uid=0', '--', '/bin/sh'] }));
    assertRefused(result, 202, refusal("the payload's start asks for the epilogue's rights"));
    // After "--" it is only a word of the payload's.
    const asArgument = check(encodePlan({ ...plan, helperArgs: ['--uid=1001', '--', '/bin/echo', '--epilogue'] }));
    assert.equal(asArgument.status, 0, asArgument.stderr);
  });
});
