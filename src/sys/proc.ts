/**
 * Starting and signalling processes: the only place that spawns or kills.
 */
import type { ChildProcess } from 'node:child_process';
import type { Identity } from './identity';
import { isSameProcess, type ProcessIdentity } from './procinfo';
import { join } from 'node:path';
import { installedPath } from '../installed';

/**
 * node:child_process, loaded at the first spawn: with node:net and node:stream, which it loads, it
 * cost every run's first phase about 3 ms, and that phase spawns nothing (docs/performance.md).
 */
export function childProcess(): typeof import('node:child_process') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('node:child_process') as typeof import('node:child_process');
}

/** The root-only helper that starts phase 2's epilogue (shim/start-payload.c; the monitor links the same code into the shim). */
export function startPayloadHelper(): string {
  return installedPath('start-payload', () => join(__dirname, '../../../build/start-payload'));
}

export interface TargetIdentity extends Identity {
  /** PR_SET_NO_NEW_PRIVS: setuid and file-capability programs give it nothing. */
  readonly noNewPrivs?: boolean;
}

export interface PayloadStart {
  /** The cgroup.procs files the payload joins before anything else. */
  readonly cgroupProcs: readonly string[];
  /** The caller's limits, as `name=soft:hard`. */
  readonly limits: readonly string[];
  /** The caller's working directory, opened by the shim; entered as the target. */
  readonly cwdFd: number | undefined;
  /** Where the payload starts when it may not enter the caller's directory. */
  readonly home: string;
  /** prohibit_exec_via_symlink: the exec itself refuses a symlink. */
  readonly noSymlink: boolean;
}

/** start-payload's arguments (see shim/start-payload.c). */
export function startPayloadArgs(
  who: TargetIdentity,
  program: string,
  args: readonly string[],
  start: PayloadStart,
): string[] {
  return [
    ...start.cgroupProcs.map((procs) => `--cgroup-procs=${procs}`),
    ...start.limits.map((limit) => `--rlimit=${limit}`),
    `--uid=${who.uid}`,
    `--gid=${who.gid}`,
    `--groups=${who.groups.join(',')}`,
    ...(who.noNewPrivs ? ['--no-new-privs'] : []),
    ...(start.cwdFd === undefined ? [] : [`--cwd-fd=${CWD_FD}`]),
    `--home=${start.home}`,
    ...(start.noSymlink ? ['--no-symlink'] : []),
    '--',
    program,
    ...args,
  ];
}

/** The slot of the caller's working directory in start-payload (after the status pipe); the monitor puts it there. */
const CWD_FD = 4;

/** What start-payload reported: the directory it entered, and its failure if it had one. */
export interface HelperStatus {
  readonly cwd: string | undefined;
  readonly failure: { readonly kind: 'join' | 'system' | 'exec' | 'symlink'; readonly message: string } | undefined;
}

/** start-payload writes control bytes and backslashes as \xHH, so that each report is one line. */
function unescapeStatus(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const hex = bytes[i] === 0x5c && bytes[i + 1] === 0x78 ? bytes.subarray(i + 2, i + 4).toString('latin1') : '';
    if (/^[0-9a-f]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 3;
    } else out.push(bytes[i] ?? 0);
  }
  return Buffer.from(out).toString('utf8');
}

export function parseHelperStatus(text: string): HelperStatus {
  let cwd: string | undefined;
  let failure: HelperStatus['failure'];
  for (const escaped of text.split('\n')) {
    const line = unescapeStatus(escaped);
    const space = line.indexOf(' ');
    const kind = space < 0 ? line : line.slice(0, space);
    const rest = space < 0 ? '' : line.slice(space + 1);
    if (kind === 'cwd') cwd = rest;
    else if (kind === 'join' || kind === 'system' || kind === 'exec' || kind === 'symlink')
      failure = { kind, message: rest };
    else if (line !== '') failure = { kind: 'system', message: line };
  }
  return { cwd, failure };
}

/**
 * PRIVILEGE: signals a whole process group that glexec created; root may signal anything, so
 * only pgids that glexec got from its own spawn are ever passed here. False when the group is gone.
 */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  if (!(pgid > 1)) throw new Error(`refusing to signal process group ${pgid}`);
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

/**
 * PRIVILEGE: signals processes that a scan found in a group (or session) glexec created and that
 * belong to the account glexec ran there. Right before each signal the pid must still have the
 * owner and start time the scan saw, so a pid freed and reused meanwhile (even by the same
 * account) is never hit. Those already gone are skipped.
 */
export function signalProcesses(processes: readonly ProcessIdentity[], signal: NodeJS.Signals): void {
  for (const identity of processes) {
    if (!isSameProcess(identity)) continue;
    try {
      process.kill(identity.pid, signal);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
    }
  }
}

/** start-payload's arguments for the epilogue: its identity, the epilogue's rights, its path. */
export function epilogueStartArgs(who: TargetIdentity, path: string): string[] {
  return [`--uid=${who.uid}`, `--gid=${who.gid}`, `--groups=${who.groups.join(',')}`, '--epilogue', '--', path];
}

/**
 * PRIVILEGE: runs the epilogue as `who` through start-payload, the payload's own starter (a new
 * session and process group, oom_score_adj 0, default signals, identity, `/`, no descriptor of
 * glexec's but its status pipe), by its configured path (argv[0] and a script's $0 are that path,
 * as under gLExec), with stdio on /dev/null. Only a path that was trust-walked just before, with
 * its interpreters, is passed here: no account but root and the trusted epilogue account and
 * group can change what it names.
 */
export function spawnEpilogueProgram(who: TargetIdentity, path: string, env: Record<string, string>): ChildProcess {
  const args = epilogueStartArgs(who, path);
  return childProcess().spawn(startPayloadHelper(), args, {
    detached: true,
    env,
    cwd: '/',
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    argv0: 'start-payload',
  });
}

/** What start-payload wrote on its status pipe, once it closed (at the exec, or its own exit). */
export function helperStatus(child: ChildProcess): Promise<HelperStatus> {
  const pipe = child.stdio[3];
  if (!pipe || !('on' in pipe)) return Promise.resolve({ cwd: undefined, failure: undefined });
  let text = '';
  pipe.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return new Promise((resolve) => pipe.once('close', () => resolve(parseHelperStatus(text))));
}

/** How long one message to the caller's stdout or stderr may take before glexec gives it up. */
export const CALLER_WRITE_DEADLINE_MS = 2000;
const CAT = '/usr/bin/cat';

/**
 * PRIVILEGE: writes `text` to the caller's stdout or stderr through a short-lived `cat`, killed
 * after CALLER_WRITE_DEADLINE_MS (docs/security.md, "Writing to the caller"). False when the text
 * was not written in full.
 */
export function writeWithDeadline(fd: number, text: string | Buffer): boolean {
  if (text.length === 0) return true;
  const result = childProcess().spawnSync(CAT, [], {
    input: text,
    stdio: ['pipe', fd, 'ignore'],
    env: {},
    cwd: '/',
    timeout: CALLER_WRITE_DEADLINE_MS,
    killSignal: 'SIGKILL',
  });
  return result.error === undefined && result.status === 0;
}
