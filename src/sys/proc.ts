/**
 * Starting and signalling processes: the only place that spawns or kills.
 */
import { type ChildProcess, spawn, spawnSync, type StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describeProcess, isSameProcess, type ProcessIdentity } from './procinfo';
import { basename, join } from 'node:path';

export const SETPRIV = '/usr/bin/setpriv';
export const PRLIMIT = '/usr/bin/prlimit';

declare const GLEXEC_BUNDLED: boolean | undefined;

/** The root-only helper that joins the payload's cgroup and execs the rest (shim/into-cgroup.c). */
export function intoCgroupHelper(): string {
  const bundled = typeof GLEXEC_BUNDLED !== 'undefined' && GLEXEC_BUNDLED;
  return bundled ? join(__dirname, 'into-cgroup') : join(__dirname, '../../../build/into-cgroup');
}

export interface TargetIdentity {
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
  /** PR_SET_NO_NEW_PRIVS: setuid and file-capability programs give it nothing. */
  readonly noNewPrivs?: boolean;
}

/** setpriv's arguments that switch to `who` and exec `program` with `args`. */
export function setprivArgs(who: TargetIdentity, program: string, args: readonly string[]): string[] {
  const groups = who.groups.length > 0 ? ['--groups', who.groups.join(',')] : ['--clear-groups'];
  return ['--reuid', String(who.uid), '--regid', String(who.gid), ...groups, ...(who.noNewPrivs ? ['--no-new-privs'] : []), '--', program, ...args];
}

export function setprivAvailable(): boolean {
  return existsSync(SETPRIV);
}

/**
 * PRIVILEGE: setpriv (util-linux) runs as root only long enough to set groups, then gid, then
 * uid (real, effective and saved), and execs the payload; the environment it gets was built from
 * nothing (payload/env.ts), so no caller variable can steer it while it is root. `detached` gives
 * the payload a new session and process group, so pid = pgid = sid = the pid returned here.
 */
export function spawnAsTarget(who: TargetIdentity, program: string, args: readonly string[], env: Record<string, string>, cwd: string, limitOptions: readonly string[], cgroupProcs: readonly string[]): ChildProcess {
  // Each step execs the next, keeping the pid: into-cgroup joins the payload's cgroup (so the
  // payload is born there), prlimit sets the caller's limits, setpriv switches identity.
  const chain = [
    ...(cgroupProcs.length > 0 ? [intoCgroupHelper(), ...cgroupProcs, '--'] : []),
    ...(limitOptions.length > 0 ? [PRLIMIT, ...limitOptions, '--'] : []),
    SETPRIV,
    ...setprivArgs(who, program, args),
  ];
  const [command = SETPRIV, ...rest] = chain;
  // into-cgroup reports its own failure on descriptor 3 (closed on exec when all is well).
  const stdio: StdioOptions = cgroupProcs.length > 0 ? ['inherit', 'inherit', 'inherit', 'pipe'] : 'inherit';
  return spawn(command, rest, { detached: true, env, cwd, stdio, argv0: basename(command) });
}

/** What into-cgroup wrote on its status pipe: empty when it started the payload. */
export function helperStatus(child: ChildProcess): Promise<string> {
  const pipe = child.stdio[3];
  if (!pipe || !('on' in pipe)) return Promise.resolve('');
  let text = '';
  pipe.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return new Promise((resolve) => pipe.once('close', () => resolve(text.trim())));
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

/**
 * PRIVILEGE: runs the epilogue as `who`, through setpriv, by its configured path (argv[0] and a
 * script's $0 are that path, as under gLExec), with stdio on /dev/null, in its own session and
 * process group. Only a path that was trust-walked just before, with its interpreters, is passed
 * here: no account but root and the trusted epilogue account and group can change what it names.
 */
export function spawnEpilogueProgram(who: TargetIdentity, path: string, env: Record<string, string>): ChildProcess {
  return spawn(SETPRIV, setprivArgs(who, path, []), { detached: true, env, cwd: '/', stdio: 'ignore', argv0: 'setpriv' });
}

/** This process's pid, process group and session (posix has no getsid). */
export function ownProcessIds(): { pid: number; pgid: number; sid: number } {
  const self = describeProcess(process.pid);
  if (self === undefined) throw new Error('cannot read /proc/self');
  return { pid: process.pid, pgid: self.pgid, sid: self.sid };
}

/** How long one message to the caller's stdout or stderr may take before glexec gives it up. */
export const CALLER_WRITE_DEADLINE_MS = 2000;
const CAT = '/usr/bin/cat';

/**
 * PRIVILEGE: writes `text` to the caller's stdout (1) or stderr (2) and never blocks glexec for
 * longer than CALLER_WRITE_DEADLINE_MS. The caller owns the other end: a pipe it never drains
 * would block a write forever, and O_NONBLOCK cannot help, because the flag lives in the file
 * description the caller shares and may clear at any moment. So a short-lived child (cat, with
 * an empty environment) does the write, and is killed at the deadline. False when the text was
 * not written in full.
 */
export function writeToCaller(fd: 1 | 2, text: string): boolean {
  if (text === '') return true;
  const result = spawnSync(CAT, [], { input: text, stdio: ['pipe', fd, 'ignore'], env: {}, cwd: '/', timeout: CALLER_WRITE_DEADLINE_MS, killSignal: 'SIGKILL' });
  return result.error === undefined && result.status === 0;
}
