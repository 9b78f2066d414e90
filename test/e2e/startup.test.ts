/**
 * Start-up hardening, end to end through the installed setuid shim as the real pilot: no root
 * inspector through SIGUSR1, none of the pilot's process state (timers, timer slack,
 * oom_score_adj, stack limit) reaches root glexec, every catchable root signal ends in a record,
 * the payload enters the very directory the pilot was in (as the target), a relative proxy name,
 * exec failures as 126, prohibit_exec_via_symlink at the exec itself, empty capability sets.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestPki } from '../helpers/pki-fixtures';
import { type Account, needsRoot, REPO, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;
let callerState: string;

const withProxy = (extra: Record<string, string> = {}) => ({ GLEXEC_CLIENT_CERT: pki.pilotProxy, ...extra });

function completion(): Record<string, unknown> {
  const record = system.logRecords().find((entry) => entry.msg === 'job completed');
  assert.ok(record, 'no completion record');
  return record;
}

/** `command` run as `who` (setpriv execs it: the pid stays the one returned). */
function asAccount(who: Account, command: readonly string[]): [string, string[]] {
  return [
    '/usr/bin/setpriv',
    ['--reuid', String(who.uid), '--regid', String(who.gid), '--init-groups', '--', ...command],
  ];
}

interface Background {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | null>;
}

/** glexec started as the pilot, with pipes; the pid is glexec's (setpriv and the shim exec). */
function startGlexec(
  args: readonly string[],
  env: Record<string, string>,
  options: { cwd?: string; prefix?: readonly string[] } = {},
): Background {
  const [command, argv] = asAccount(system.pilot, [...(options.prefix ?? []), system.shim, ...args]);
  const child = spawn(command, argv, {
    env: system.callerEnv(env),
    cwd: options.cwd ?? system.scratch,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const run: Background = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.once('close', (code) => resolve(code))),
  };
  child.stdout?.on('data', (chunk: Buffer) => (run.stdout += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (run.stderr += chunk.toString('utf8')));
  return run;
}

/** Waits (by handshake) until the payload printed `line`; fails if glexec's stdout closed first. */
async function waitForLine(run: Background, line: string): Promise<void> {
  const stream = run.child.stdout;
  assert.ok(stream);
  while (!run.stdout.split('\n').includes(line)) {
    if (stream.closed || stream.readableEnded)
      throw new Error(`glexec ended before the payload printed ${line}: ${run.stderr}`);
    await new Promise<void>((resolve) => {
      const done = (): void => {
        stream.off('data', done);
        stream.off('close', done);
        resolve();
      };
      stream.on('data', done);
      stream.on('close', done);
    });
  }
}

/** The payload: prints `ready`, then waits for a line on its stdin (glexec's, the test's pipe). */
let waitingPayload: string;

/** Listening TCP sockets (IPv4 and IPv6) held by process `pid`. */
function listeningSockets(pid: number): string[] {
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const inodes = new Set<string>();
  for (const fd of fds) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match?.[1]) inodes.add(match[1]);
    } catch {
      // Closed meanwhile.
    }
  }
  const listening: string[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[3] === '0A' && inodes.has(fields[9] ?? '')) listening.push(`${table} ${fields[1] ?? ''}`);
    }
  }
  return listening;
}

describe('start-up hardening', { skip: needsRoot }, () => {
  before(() => {
    system = TestSystem.create();
    pki = TestPki.create(system);
    callerState = system.copyProgram(join(REPO, 'build/c/caller-state'), 'caller-state');
    waitingPayload = system.installProgram(
      'ready-then-wait.sh',
      '#!/bin/sh\ntrap "" USR1\necho ready\nread line\necho "done $line"\n',
    );
  });
  after(() => system?.tearDown());
  beforeEach(() => {
    system.writeConfig(system.standardConfig());
    pki.writeStandardGridMap();
    system.clearLog();
  });

  describe('the inspector', () => {
    it("a SIGUSR1 from root at any moment of start-up never opens an inspector, and nothing reaches the caller's stderr", async () => {
      const tries = 30;
      let payloadsRun = 0;
      for (let attempt = 0; attempt < tries; attempt++) {
        system.clearLog();
        const run = startGlexec([waitingPayload], withProxy());
        const pid = run.child.pid ?? 0;
        // Not a wait for anything: the signal is sent at a different moment of the start each
        // time, from at once to after the payload started.
        await sleep(attempt * 12);
        process.kill(pid, 'SIGUSR1');
        let killed = false;
        try {
          await waitForLine(run, 'ready');
        } catch (error) {
          // Only before the shim's first instruction (the test's setpriv, the dynamic loader) does
          // SIGUSR1 still have its default action: nothing of glexec ran then. Or glexec forwarded
          // it to a payload that had not yet reached its `trap`: the payload died of it (128+10).
          const code = await run.exited;
          if (run.child.signalCode !== 'SIGUSR1') assert.equal(code, 128 + 10, `${String(error)} (exit ${code})`);
          killed = true;
        }
        if (!killed) {
          assert.deepEqual(listeningSockets(pid), [], `try ${attempt}: glexec listens`);
          run.child.stdin?.end('go\n');
          assert.equal(await run.exited, 0, `try ${attempt}: ${run.stderr}`);
          assert.match(run.stdout, /done go/);
          payloadsRun++;
        }
        assert.equal(run.stderr, '', `try ${attempt}`);
      }
      assert.ok(payloadsRun >= tries - 3, `only ${payloadsRun} of ${tries} tries got past the shim`);
    });
  });

  describe("the pilot's process state", () => {
    it('interval timers the pilot armed (real, virtual, profiling) do not end glexec: the payload runs and the record is written', () => {
      const [command, argv] = asAccount(system.pilot, [
        callerState,
        '--itimers',
        '--',
        system.shim,
        '/bin/sh',
        '-c',
        'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo payload ran',
      ]);
      const result = spawnSync(command, argv, {
        env: system.callerEnv(withProxy()),
        cwd: system.scratch,
        encoding: 'utf8',
      });
      assert.equal(result.signal, null);
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, 'payload ran\n');
      assert.equal(completion().exitCode, 0);
    });

    it("the pilot's timer slack, oom_score_adj and stack limit stay with the pilot: glexec has the kernel's default slack, an oom_score_adj no higher than the payload's 0, its own stack; the payload gets the caller's stack limit back", async () => {
      const probe = system.installProgram(
        'state-probe.sh',
        '#!/bin/sh\necho "slack $(cat /proc/self/timerslack_ns) oom $(cat /proc/self/oom_score_adj) stack $(ulimit -s)"\necho ready\nread line\n',
      );
      const run = startGlexec([probe], withProxy(), {
        prefix: [
          '/bin/sh',
          '-c',
          'ulimit -S -s 512; exec "$@"',
          'sh',
          callerState,
          '--slack=500000000',
          '--oom=700',
          '--',
        ],
      });
      await waitForLine(run, 'ready');
      const pid = run.child.pid ?? 0;
      const glexecSlack = readFileSync(`/proc/${pid}/timerslack_ns`, 'utf8').trim();
      const glexecOom = Number(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8').trim());
      const glexecStack = /^Max stack size\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
      // The shim blocks every signal while it works; Node must have unblocked them again.
      const glexecBlocked = /^SigBlk:\s+(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      run.child.stdin?.end('\n');
      assert.equal(await run.exited, 0, run.stderr);
      assert.equal(glexecSlack, '50000');
      assert.equal(glexecBlocked, '0000000000000000');
      assert.ok(glexecOom <= 0, `glexec's oom_score_adj is ${glexecOom}`);
      // Below the payload's where glexec may lower it (CAP_SYS_RESOURCE), else equal.
      const mayLower = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
      if (mayLower?.[1] && (BigInt(`0x${mayLower[1]}`) >> 24n) & 1n) assert.equal(glexecOom, -500);
      assert.equal(glexecStack?.[1], String(8 * 1024 * 1024));
      assert.equal(run.stdout.split('\n')[0], 'slack 50000 oom 0 stack 512');
    });

    it('a pilot that execs glexec with an empty argv gets the usage line (201), not "too many arguments"', () => {
      // Linux (5.18 and later) turns an empty argv into one empty argument, so the shim's own
      // argc 0 message is for older kernels; here the shim passes no arguments on, and glexec says how to run it.
      const [command, argv] = asAccount(system.pilot, [callerState, '--empty-argv', '--', system.shim]);
      const result = spawnSync(command, argv, {
        env: system.callerEnv(withProxy()),
        cwd: system.scratch,
        encoding: 'utf8',
      });
      assertRefused(result, 201, 'glexec: usage: glexec /absolute/path/to/payload [arguments...]');
    });
  });

  describe("the caller's terminal", () => {
    it('a refused glexec in a background process group of a terminal with tostop exits (203) instead of spinning on SIGTTOU, and writes nothing there', () => {
      const [command, argv] = asAccount(system.stranger, [
        callerState,
        '--background-tty',
        '--',
        system.shim,
        '/bin/true',
      ]);
      const result = spawnSync(command, argv, {
        env: system.callerEnv(withProxy()),
        cwd: system.scratch,
        encoding: 'utf8',
      });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, 'exited 203\n');
      assert.ok(
        system.logRecords().some((entry) => String(entry.msg).includes('is not in user_white_list')),
        'the refusal is logged',
      );
    });
  });

  describe("root's signals", () => {
    const forwarded: [NodeJS.Signals, number][] = [
      ['SIGPWR', 30],
      ['SIGIO', 29],
      ['SIGSYS', 31],
      ['SIGTRAP', 5],
      ['SIGABRT', 6],
      ['SIGPROF', 27],
      ['SIGVTALRM', 26],
      ['SIGSTKFLT', 16],
    ];
    for (const [signal, number] of forwarded) {
      it(`a ${signal} from root reaches the payload, and glexec still writes its record and exits ${128 + number}`, async () => {
        const payload = system.installProgram('signal-target.sh', '#!/bin/sh\necho ready\nexec sleep 60\n');
        const run = startGlexec([payload], withProxy());
        await waitForLine(run, 'ready');
        process.kill(run.child.pid ?? 0, signal);
        assert.equal(await run.exited, 128 + number, run.stderr);
        const record = completion();
        assert.deepEqual(record.ending, { signal });
        assert.equal(record.exitCode, 128 + number);
      });
    }
  });

  describe('the working directory', () => {
    it("the payload starts in the directory the pilot was in, even when the pilot swaps a component of its path for a symlink to another user's home while glexec waits", async () => {
      // Another user's 0700 home with a readable file: neither the pilot nor the target may reach it.
      const otherHome = join(system.root, 'home', system.stranger.name);
      mkdirSync(join(otherHome, 'work'), { recursive: true });
      writeFileSync(join(otherHome, 'work', 'secret'), 'secret of another user\n', { mode: 0o644 });
      chownSync(otherHome, system.stranger.uid, system.stranger.gid);
      chmodSync(otherHome, 0o700);
      const base = join(system.scratch, 'swap');
      rmSync(base, { recursive: true, force: true });
      rmSync(`${base}.old`, { recursive: true, force: true });
      mkdirSync(join(base, 'work'), { recursive: true });
      chownSync(base, system.pilot.uid, system.pilot.gid);
      chownSync(join(base, 'work'), system.pilot.uid, system.pilot.gid);
      chmodSync(base, 0o755);
      chmodSync(join(base, 'work'), 0o777);
      const source = pki.copyProxy('locked-source.pem', system.pilot.uid, 0o600);
      const targetProxy = join(system.scratch, 'swap-target.pem');
      rmSync(targetProxy, { force: true });
      // The pilot holds a lock on its own source proxy: glexec waits for it.
      const holder = spawn('flock', ['-x', source, '/bin/sh', '-c', 'echo locked; cat >/dev/null'], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      await new Promise((resolve) => holder.stdout?.once('data', resolve));
      const probe = system.installProgram(
        'where-and-read.sh',
        '#!/bin/sh\npwd\ncat secret 2>/dev/null || echo no-secret\n',
      );
      const run = startGlexec([probe], withProxy({ GLEXEC_SOURCE_PROXY: source, GLEXEC_TARGET_PROXY: targetProxy }), {
        cwd: join(base, 'work'),
      });
      try {
        await waitForBlockedLock(source);
        renameSync(base, `${base}.old`);
        symlinkSync(otherHome, base);
      } finally {
        holder.stdin?.end();
      }
      assert.equal(await run.exited, 0, run.stderr);
      assert.equal(run.stdout, `${base}.old/work\nno-secret\n`);
      assert.equal(completion().cwd, `${base}.old/work`);
      rmSync(base, { force: true });
    });

    it("a directory the target may not enter is not entered for it: the payload starts in the target's home", () => {
      const privateDir = join(system.scratch, 'pilot-only');
      mkdirSync(privateDir, { recursive: true });
      chownSync(privateDir, system.pilot.uid, system.pilot.gid);
      chmodSync(privateDir, 0o700);
      const result = system.run(['/bin/pwd'], { env: withProxy(), cwd: privateDir });
      assert.equal(result.status, 0, result.stderr);
      const home = join(system.root, 'home', system.target.name);
      assert.equal(result.stdout, `${home}\n`);
      assert.equal(completion().cwd, home);
    });
  });

  describe('the proxy', () => {
    it("a relative GLEXEC_CLIENT_CERT is the pilot's file in its working directory, as the gLite certification test names it", () => {
      const dir = join(system.scratch, 'glite');
      mkdirSync(dir, { recursive: true });
      chownSync(dir, system.pilot.uid, system.pilot.gid);
      const name = `x509up_u${system.pilot.uid}_1`;
      copyFileSync(pki.pilotProxy, join(dir, name));
      chownSync(join(dir, name), system.pilot.uid, system.pilot.gid);
      chmodSync(join(dir, name), 0o600);
      const result = system.run(['/usr/bin/id', '-un'], { env: { GLEXEC_CLIENT_CERT: name }, cwd: dir });
      assert.equal(result.stderr, '');
      assert.equal(result.status, 0);
      assert.equal(result.stdout, `${system.target.name}\n`);
    });

    it("a relative GLEXEC_CLIENT_CERT that is not in the pilot's working directory gives 201", () => {
      const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: 'x509up_u0_9' }, cwd: system.scratch });
      assertRefused(result, 201, 'glexec: GLEXEC_CLIENT_CERT x509up_u0_9 does not exist');
    });

    it('a relative GLEXEC_CLIENT_CERT is also the source of the target proxy, read as the pilot', () => {
      const dir = join(system.scratch, 'glite-copy');
      mkdirSync(dir, { recursive: true });
      chownSync(dir, system.pilot.uid, system.pilot.gid);
      copyFileSync(pki.pilotProxy, join(dir, 'proxy'));
      chownSync(join(dir, 'proxy'), system.pilot.uid, system.pilot.gid);
      chmodSync(join(dir, 'proxy'), 0o600);
      const targetProxy = join(system.scratch, 'relative-copy.pem');
      rmSync(targetProxy, { force: true });
      const result = system.run(['/bin/sh', '-c', 'echo "$X509_USER_PROXY"; cat "$X509_USER_PROXY"'], {
        env: { GLEXEC_CLIENT_CERT: 'proxy', GLEXEC_TARGET_PROXY: targetProxy },
        cwd: dir,
      });
      assert.equal(result.status, 0, result.stderr);
      assert.equal(result.stdout, `${targetProxy}\n${readFileSync(pki.pilotProxy, 'latin1')}`);
    });
  });

  describe("the payload's start", () => {
    it('a payload in a directory the target cannot enter exits 126 with one line', () => {
      const hidden = join(system.root, 'root-only');
      mkdirSync(hidden, { recursive: true, mode: 0o700 });
      chmodSync(hidden, 0o700);
      const payload = join(hidden, 'payload.sh');
      writeFileSync(payload, '#!/bin/sh\necho ran\n', { mode: 0o755 });
      const result = system.run([payload], { env: withProxy() });
      assertRefused(
        result,
        126,
        `glexec: payload ${payload} cannot be executed by ${system.target.name}: Permission denied`,
      );
      assert.equal(result.stdout, '');
    });

    for (const noNewPrivs of [true, false]) {
      it(`the payload's capability sets are empty, no signal is blocked or ignored (not even those the pilot ignored), and NoNewPrivs is ${noNewPrivs ? 1 : 0} with no_new_privs = ${noNewPrivs ? 'yes' : 'no'}`, () => {
        system.writeConfig(system.standardConfig([`no_new_privs = ${noNewPrivs ? 'yes' : 'no'}`]));
        const result = system.run(
          ['/bin/grep', '-E', '^(SigBlk|SigIgn|CapInh|CapPrm|CapEff|CapAmb|NoNewPrivs):', '/proc/self/status'],
          { env: withProxy(), before: 'trap "" HUP INT QUIT TERM USR1 PIPE' },
        );
        assert.equal(result.status, 0, result.stderr);
        const zero = '0000000000000000';
        assert.equal(
          result.stdout,
          `SigBlk:\t${zero}\nSigIgn:\t${zero}\nCapInh:\t${zero}\nCapPrm:\t${zero}\nCapEff:\t${zero}\nCapAmb:\t${zero}\nNoNewPrivs:\t${noNewPrivs ? 1 : 0}\n`,
        );
      });
    }

    it('start-payload refuses a symlink at the exec itself with --no-symlink, and runs a script by its own path ($0)', () => {
      const helper = join(system.root, 'prefix/lib/glexec/start-payload');
      const script = system.installProgram('show-zero.sh', '#!/bin/sh\necho "$0"\n');
      const link = join(system.bin, 'show-zero-link');
      rmSync(link, { force: true });
      symlinkSync(script, link);
      const identity = [`--uid=${system.target.uid}`, `--gid=${system.target.gid}`, '--groups=', '--no-symlink', '--'];
      const refused = spawnSync(helper, [...identity, link], {
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        encoding: 'utf8',
      });
      assert.equal(refused.status, 126);
      assert.equal(String(refused.output[3]), `cwd /\nsymlink ${link}\n`);
      assert.equal(refused.stdout, '');
      const ran = spawnSync(helper, [...identity, script], {
        stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
        encoding: 'utf8',
      });
      assert.equal(ran.status, 0, ran.stderr);
      assert.equal(ran.stdout, `${script}\n`);
    });

    it('with prohibit_exec_via_symlink = yes, a payload swapped for a symlink after glexec checked it is refused (201) and never runs', async () => {
      system.writeConfig(system.standardConfig(['prohibit_exec_via_symlink = yes']));
      const marker = join(system.scratch, 'swapped-ran');
      rmSync(marker, { force: true });
      const other = system.installProgram('swapped-in.sh', `#!/bin/sh\ntouch ${marker}\n`);
      const dir = join(system.scratch, 'swap-payload');
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      chownSync(dir, system.pilot.uid, system.pilot.gid);
      const payload = join(dir, 'payload.sh');
      writeFileSync(payload, '#!/bin/sh\necho original\n', { mode: 0o755 });
      chownSync(payload, system.pilot.uid, system.pilot.gid);
      const source = pki.copyProxy('payload-lock.pem', system.pilot.uid, 0o600);
      const targetProxy = join(system.scratch, 'payload-swap-target.pem');
      rmSync(targetProxy, { force: true });
      const holder = spawn('flock', ['-x', source, '/bin/sh', '-c', 'echo locked; cat >/dev/null'], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      await new Promise((resolve) => holder.stdout?.once('data', resolve));
      const run = startGlexec([payload], withProxy({ GLEXEC_SOURCE_PROXY: source, GLEXEC_TARGET_PROXY: targetProxy }));
      try {
        await waitForBlockedLock(source);
        rmSync(payload);
        symlinkSync(other, payload);
      } finally {
        holder.stdin?.end();
      }
      const status = await run.exited;
      assert.equal(run.stderr, `glexec: payload ${payload} is a symbolic link and prohibit_exec_via_symlink is set\n`);
      assert.equal(status, 201);
      assert.equal(existsSync(marker), false);
    });
  });
});

/** Waits until someone is blocked on a flock of `path` (/proc/locks shows waiters with `->`). */
async function waitForBlockedLock(path: string): Promise<void> {
  const inode = execFileSync('stat', ['-c', '%i', path], { encoding: 'utf8' }).trim();
  for (;;) {
    const locks = readFileSync('/proc/locks', 'utf8').split('\n');
    if (locks.some((line) => line.includes('->') && line.includes(`:${inode} `))) return;
    await sleep(20);
  }
}
