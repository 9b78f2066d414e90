/**
 * Waiting by handshake and looking at processes the tests own: by pid or by the test's own
 * account, never by a name pattern across the machine.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `condition` until it holds. The bound only turns a hang into a clear failure; it is no
 * measure of speed.
 */
export async function waitUntil(condition: () => boolean, what: string, boundMs = 60_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > boundMs) throw new Error(`gave up waiting: ${what}`);
    await sleep(10);
  }
}

/** Whether `pid` runs `program` by now (its exec is done), read from /proc. */
export function isRunning(pid: number | undefined, program: string): boolean {
  if (pid === undefined) return false;
  try {
    return readlinkSync(`/proc/${pid}/exe`) === program;
  } catch {
    return false;
  }
}

/** Waits until a just-spawned `pid` has exec'd `program`. */
export function waitUntilRunning(pid: number | undefined, program: string): Promise<void> {
  return waitUntil(() => isRunning(pid, program), `pid ${pid} to run ${program}`);
}

/** The live (not zombie) processes of `uid` whose command line contains `text`: their pids. */
export function processesOfAccount(uid: number, text = ''): number[] {
  const pids: number[] = [];
  for (const entry of readProcDirectory()) {
    const pid = Number(entry);
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      if (!new RegExp(`^Uid:\\s+${uid}\\s`, 'm').test(status) || /^State:\s+Z/m.test(status)) continue;
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (command.includes(text)) pids.push(pid);
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/** SIGKILLs every process of the test's own account `uid`. */
export function killAccountProcesses(uid: number): void {
  for (const pid of processesOfAccount(uid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

function readProcDirectory(): string[] {
  return readdirSync('/proc').filter((name) => /^\d+$/.test(name));
}

/**
 * Whether `pid` has ended: gone from /proc, or a zombie with no thread left (init may not have
 * reaped it yet). A leader that exited while other threads run on is not gone.
 */
export function hasEnded(pid: number): boolean {
  try {
    const state = /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return state === 'Z' && readdirSync(`/proc/${pid}/task`).length <= 1;
  } catch {
    return true;
  }
}

/**
 * A process of `account` started outside glexec (setpriv, no supplementary groups), in a session
 * of its own unless `detached` is false: e.g. an unrelated process that cleanup must spare.
 */
export function startAsAccount(
  account: { readonly uid: number; readonly gid: number },
  command: readonly string[],
  { detached = true }: { detached?: boolean } = {},
): ChildProcess {
  const ids = ['--reuid', String(account.uid), '--regid', String(account.gid), '--clear-groups'];
  return spawn('/usr/bin/setpriv', [...ids, '--', ...command], { stdio: 'ignore', detached });
}
