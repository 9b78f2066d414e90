/**
 * A real, throwaway glexec installation for end-to-end tests: its own users and groups (unique
 * prefix, removed afterwards), a root-owned test root under /var/lib, the setuid shim installed
 * there by `npm run install-system`, a config file, a grid-mapfile, and a way to run glexec as the
 * non-root pilot account.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { cgroupMounts } from '../../src/sys/cgroup';
import { requireTools } from './tools';

export const REPO = join(__dirname, '../../..');
export const isRoot = process.getuid?.() === 0;
/** For `{ skip }`: the reason end-to-end tests cannot run here. */
export const needsRoot: string | false = isRoot
  ? false
  : 'needs root: creates users and groups and installs a setuid shim';

export interface Account {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function lookup(name: string): Account {
  return { name, uid: Number(sh('id', ['-u', name]).trim()), gid: Number(sh('id', ['-g', name]).trim()) };
}

export interface GlexecResult {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** The caller's environment; GLEXEC_CLIENT_CERT defaults to the pilot's proxy. */
  readonly env?: Record<string, string | undefined>;
  /** Run as this account instead of the pilot. */
  readonly as?: Account;
  readonly cwd?: string;
  readonly input?: string;
  /** Shell commands the pilot runs before exec'ing glexec, e.g. `ulimit -f 1`. */
  readonly before?: string;
}

/** A run and its completion record (TestSystem.completedRun). */
export interface CompletedRun {
  readonly status: number | null;
  readonly stderr: string;
  readonly line: string;
  readonly record: Record<string, unknown>;
  readonly log: string;
  readonly byMonitor: boolean;
}

export class TestSystem {
  readonly prefix: string;
  readonly root: string;
  readonly shim: string;
  readonly configPath: string;
  readonly gridmapPath: string;
  readonly certdir: string;
  readonly logFile: string;
  /** A directory everyone may write (mode 1777), for payload output. */
  readonly scratch: string;
  /** Root-owned directory (0755) for fixture programs. */
  readonly bin: string;
  /** This install's runtime_directory (leftover lists), not the host's /run/glexec. */
  readonly runtimeDirectory: string;
  /** This install's cgroup_base, beside any other install's; undefined without cgroup v2. */
  readonly cgroupBase: string | undefined;
  pilot!: Account;
  target!: Account;
  /** A second pilot that is not white-listed. */
  stranger!: Account;
  /** Name of the target's supplementary group. */
  supplementaryGroup!: string;
  private readonly accounts: string[] = [];
  private readonly groups: string[] = [];

  /**
   * The standard config's log_level: 5 (every record) by default; 3 lets the monitor conclude a run
   * itself (docs/architecture.md), since phase 2 then has no record below notice to write.
   */
  logLevel = 5;

  constructor() {
    this.prefix = `gx${randomBytes(3).toString('hex')}`;
    this.root = mkdtempSync('/var/lib/glexec-test-');
    chmodSync(this.root, 0o755);
    this.shim = join(this.root, 'prefix/sbin/glexec');
    this.configPath = join(this.root, 'etc/glexec.conf');
    this.gridmapPath = join(this.root, 'etc/grid-mapfile');
    this.certdir = join(this.root, 'etc/certificates');
    this.logFile = join(this.root, 'log/glexec_log');
    this.scratch = join(this.root, 'scratch');
    this.bin = join(this.root, 'bin');
    this.runtimeDirectory = join(this.root, 'run');
    const cgroup2 = cgroupMounts().v2;
    this.cgroupBase = cgroup2 === undefined ? undefined : join(cgroup2, `glexec-test-${this.prefix}`);
  }

  /** Creates users, groups and directories, and installs glexec. */
  static create(): TestSystem {
    const system = new TestSystem();
    try {
      system.setUp();
    } catch (error) {
      system.tearDown();
      throw error;
    }
    return system;
  }

  private setUp(): void {
    requireTools('setpriv', 'useradd');
    for (const dir of ['etc', 'log', 'bin', 'home', 'etc/certificates'])
      mkdirSync(join(this.root, dir), { mode: 0o755, recursive: true });
    mkdirSync(this.scratch, { mode: 0o1777 });
    chmodSync(this.scratch, 0o1777);
    this.supplementaryGroup = this.addGroup('supp');
    this.pilot = this.addUser('pilot', []);
    this.target = this.addUser('payload', [this.supplementaryGroup]);
    this.stranger = this.addUser('stranger', []);
    const home = join(this.root, 'home', this.target.name);
    mkdirSync(home, { mode: 0o700 });
    chownSync(home, this.target.uid, this.target.gid);
    execFileSync(
      process.execPath,
      [
        join(REPO, 'scripts/install-system.mjs'),
        `--prefix=${join(this.root, 'prefix')}`,
        `--config=${this.configPath}`,
      ],
      {
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
  }

  addGroup(suffix: string): string {
    const name = `${this.prefix}${suffix}`;
    sh('groupadd', [name]);
    this.groups.push(name);
    return name;
  }

  /** A user with its own primary group of the same name. */
  addUser(suffix: string, supplementary: string[]): Account {
    const name = `${this.prefix}${suffix}`;
    const group = this.addGroup(`${suffix}g`);
    const args = ['-M', '-N', '-g', group, '-s', '/bin/sh', '-d', join(this.root, 'home', name)];
    if (supplementary.length > 0) args.push('-G', supplementary.join(','));
    sh('useradd', [...args, name]);
    this.accounts.push(name);
    return lookup(name);
  }

  /** `count` pool accounts `<prefix><base>001`… sharing one new group; returns their names. */
  addPoolAccounts(base: string, count: number): string[] {
    const group = this.addGroup(`${base}grp`);
    const names: string[] = [];
    for (let index = 1; index <= count; index++) {
      const name = `${this.prefix}${base}${String(index).padStart(3, '0')}`;
      sh('useradd', ['-M', '-N', '-g', group, '-s', '/bin/sh', '-d', '/nonexistent', name]);
      this.accounts.push(name);
      names.push(name);
    }
    return names;
  }

  /** Writes glexec.conf (root-owned, 0600) with `[glexec]` and the given lines. */
  writeConfig(lines: string[], options: { raw?: boolean } = {}): void {
    const text = options.raw ? lines.join('\n') : ['[glexec]', ...lines].join('\n');
    // A fresh file each time: tests change the owner and mode of the old one.
    rmSync(this.configPath, { force: true });
    writeFileSync(this.configPath, `${text}\n`, { mode: 0o600 });
    chmodSync(this.configPath, 0o600);
  }

  /** The usual config: the pilot white-listed, file log, test certdir and grid-mapfile. */
  standardConfig(extra: string[] = []): string[] {
    const overridden = new Set(extra.map((line) => line.split('=')[0]?.trim()));
    const base = [
      `user_white_list = ${this.pilot.name}`,
      'log_destination = file',
      `log_file = ${this.logFile}`,
      `log_level = ${this.logLevel}`,
      `certdir = ${this.certdir}`,
      `gridmapfile = ${this.gridmapPath}`,
      'kill_grace = 1',
      // Tests that want a target proxy ask for it; the default would leave a copy in /tmp per run.
      'create_target_proxy = no',
      // Its own runtime directory and cgroups: other installs may run on this host at the same time.
      `runtime_directory = ${this.runtimeDirectory}`,
      ...(this.cgroupBase === undefined ? [] : [`cgroup_base = ${this.cgroupBase}`]),
    ].filter((line) => !overridden.has(line.split('=')[0]?.trim()));
    return [...base, ...extra];
  }

  writeGridMap(lines: string[]): void {
    rmSync(this.gridmapPath, { force: true });
    writeFileSync(this.gridmapPath, `${lines.join('\n')}\n`, { mode: 0o644 });
  }

  /** Installs a fixture program (root-owned, 0755) into the test's bin directory. */
  installProgram(name: string, text: string, mode = 0o755): string {
    const path = join(this.bin, name);
    writeFileSync(path, text, { mode });
    chmodSync(path, mode);
    return path;
  }

  copyProgram(from: string, name: string): string {
    const path = join(this.bin, name);
    copyFileSync(from, path);
    chmodSync(path, 0o755);
    return path;
  }

  /** The caller's environment: a minimal login-like one plus `env`; undefined values are removed. */
  callerEnv(env: Record<string, string | undefined> = {}): Record<string, string> {
    const merged: Record<string, string | undefined> = { PATH: '/usr/bin:/bin', ...env };
    return Object.fromEntries(
      Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined),
    );
  }

  private callerCommand(args: readonly string[], as: Account, before?: string): [string, string[]] {
    const command =
      before === undefined ? [this.shim, ...args] : ['/bin/sh', '-c', `${before}; exec "$0" "$@"`, this.shim, ...args];
    return [
      '/usr/bin/setpriv',
      ['--reuid', String(as.uid), '--regid', String(as.gid), '--init-groups', '--', ...command],
    ];
  }

  /** The payload cgroups (`job-*`) now under this install's cgroup_base. */
  jobCgroups(): string[] {
    const base = this.cgroupBase;
    return base && existsSync(base) ? readdirSync(base).filter((name) => name.startsWith('job-')) : [];
  }

  /** Runs glexec as the pilot (or `as`), waits, and returns what it printed. */
  run(args: readonly string[], options: RunOptions = {}): GlexecResult {
    const [command, argv] = this.callerCommand(args, options.as ?? this.pilot, options.before);
    const result: SpawnSyncReturns<string> = spawnSync(command, argv, {
      env: this.callerEnv(options.env),
      cwd: options.cwd ?? this.scratch,
      encoding: 'utf8',
      input: options.input ?? '',
      timeout: 120_000,
    });
    if (result.error) throw result.error;
    return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
  }

  /**
   * Runs glexec as the pilot (or `as`) inside a private mount namespace whose /dev/log is a socat
   * listener (or, with `listening: false`, absent), and returns what reached syslog (the raw
   * datagrams, each starting with `<priority>`).
   */
  runWithSyslog(
    args: readonly string[],
    env: Record<string, string>,
    options: { as?: Account; listening?: boolean } = {},
  ): { status: number | null; stdout: string; stderr: string; datagrams: string[] } {
    requireTools('unshare', 'mount', ...(options.listening === false ? [] : (['socat'] as const)));
    const as = options.as ?? this.pilot;
    const listening = options.listening ?? true;
    const capture = join(this.root, `syslog-${randomBytes(4).toString('hex')}.txt`);
    const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
    const exports = Object.entries(this.callerEnv(env))
      .map(([name, value]) => `${name}=${quote(value)}`)
      .join(' ');
    const script = [
      'set -e',
      `aside=$(mktemp -d ${this.root}/dev-aside.XXXXXX)`,
      'mount --bind /dev "$aside"',
      'mount -t tmpfs -o mode=755 tmpfs /dev',
      'for node in null zero urandom random; do touch /dev/$node; mount --bind "$aside/$node" /dev/$node; done',
      ...(listening
        ? [
            `socat -u UNIX-RECV:/dev/log,mode=666 OPEN:${capture},creat,append </dev/null >/dev/null 2>&1 & listener=$!`,
            "trap 'kill $listener' EXIT",
            'for i in $(seq 100); do [ -S /dev/log ] && break; sleep 0.02; done',
          ]
        : []),
      'set +e',
      // The arguments come in as "$@", so that each may be as large as exec allows.
      `env -i ${exports} /usr/bin/setpriv --reuid ${as.uid} --regid ${as.gid} --init-groups -- ${quote(this.shim)} "$@"`,
      'status=$?',
      // Handshake instead of a sleep: datagrams on one socket arrive in order, so once the
      // sentinel is in the capture, everything glexec sent is there too.
      ...(listening
        ? [
            `printf '%s' ${SYSLOG_SENTINEL} | socat -u - UNIX-SENDTO:/dev/log`,
            `until grep -q ${SYSLOG_SENTINEL} ${capture} 2>/dev/null; do sleep 0.01; done`,
          ]
        : []),
      'exit $status',
    ].join('\n');
    const result = spawnSync('unshare', ['-m', '--propagation', 'private', '/bin/sh', '-c', script, 'sh', ...args], {
      encoding: 'utf8',
      cwd: this.scratch,
      timeout: 120_000,
    });
    let text = '';
    try {
      text = readFileSync(capture, 'utf8');
    } catch {
      // Nothing was logged.
    }
    rmSync(capture, { force: true });
    return {
      status: result.status,
      stdout: result.stdout,
      stderr: result.stderr,
      datagrams: text
        .replace(SYSLOG_SENTINEL, '')
        .split(/(?=<\d+>)/)
        .filter(Boolean),
    };
  }

  /** Starts glexec as the pilot in the background (for signal tests). */
  start(args: readonly string[], options: RunOptions = {}): ChildProcess {
    const [command, argv] = this.callerCommand(args, options.as ?? this.pilot);
    return spawn(command, argv, {
      env: this.callerEnv(options.env),
      cwd: options.cwd ?? this.scratch,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /**
   * One run at `logLevel` with `extra` config lines: its exit, stderr, the log, and its one
   * completion record, which the monitor wrote (`byMonitor`: its pid is glexec's own) or phase 2.
   */
  completedRun(
    args: readonly string[],
    logLevel: number,
    extra: readonly string[],
    options: RunOptions = {},
  ): CompletedRun {
    this.writeConfig(this.standardConfig([`log_level = ${logLevel}`, ...extra]));
    this.clearLog();
    const result = this.run(args, options);
    const log = readFileSync(this.logFile, 'utf8');
    const lines = log.split('\n').filter((line) => line.includes('"msg":"job completed"'));
    if (lines.length !== 1) throw new Error(`${lines.length} completion records: ${result.stderr}\n${log}`);
    const line = lines[0] ?? '';
    const record = JSON.parse(line) as Record<string, unknown>;
    return {
      status: result.status,
      stderr: result.stderr,
      line,
      record,
      log,
      byMonitor: record.pid === record.glexecPid,
    };
  }

  /** The JSON records of the file log, parsed. */
  logRecords(): Record<string, unknown>[] {
    let text = '';
    try {
      text = readFileSync(this.logFile, 'utf8');
    } catch {
      return [];
    }
    return text
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  }

  clearLog(): void {
    rmSync(this.logFile, { force: true });
  }

  tearDown(): void {
    this.removeCgroups();
    // By account: these accounts are this install's own.
    for (const name of this.accounts) spawnSync('pkill', ['-KILL', '-u', name]);
    for (const name of this.accounts) spawnSync('userdel', [name]);
    for (const name of this.groups) spawnSync('groupdel', [name]);
    rmSync(this.root, { recursive: true, force: true });
  }

  /** Ends whatever is left in this install's cgroups (a test that kept one), then removes them. */
  private removeCgroups(): void {
    const base = this.cgroupBase;
    if (base === undefined || !existsSync(base)) return;
    for (const name of readdirSync(base, { withFileTypes: true })) {
      if (!name.isDirectory()) continue;
      const job = join(base, name.name);
      if (existsSync(join(job, 'cgroup.kill'))) writeFileSync(join(job, 'cgroup.kill'), '1');
      removeCgroupDirectory(job);
    }
    removeCgroupDirectory(base);
  }
}

/** The last datagram runWithSyslog sends itself, to know that the capture holds all of glexec's. */
const SYSLOG_SENTINEL = 'glexec-test-syslog-sentinel';

/** rmdir of a cgroup succeeds once its killed processes are reaped: retried for a while. */
function removeCgroupDirectory(path: string): void {
  for (let attempt = 0; attempt < 2000; attempt++) {
    try {
      rmdirSync(path);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
      spawnSync('/bin/sleep', ['0.005']);
    }
  }
}
