/**
 * Signals and process groups: the signals glexec forwards (the C monitor forwards them while the
 * payload runs, shim/monitor.c), and ending what is left of a process group: SIGTERM, a grace, SIGKILL.
 */
import { monotonicMs, sleep } from './clock';
import type { ChildProcess } from 'node:child_process';
import type { Ending } from './exitcode';
import { signalProcesses } from './sys/proc';
import { isRunning, type ProcessIdentity, scanProcesses } from './sys/procinfo';

/**
 * Forwarded to the payload's process group (README, "Linger, signals and leftovers"): every signal
 * that Node lets glexec catch and that would otherwise end it without a record. Not here, and
 * documented in the README: SIGKILL and SIGSTOP (cannot be caught); SIGSEGV, SIGBUS, SIGFPE and
 * SIGILL (a handler that returns from a real fault runs the faulting instruction again, forever, so
 * a fault must end glexec); the real-time signals (Node 20 cannot listen to them). SIGPOLL is SIGIO.
 * The shim disarmed the caller's interval timers, so SIGALRM, SIGVTALRM and SIGPROF only come from
 * kill().
 */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGHUP',
  'SIGINT',
  'SIGQUIT',
  'SIGTERM',
  'SIGUSR1',
  'SIGUSR2',
  'SIGXCPU',
  'SIGXFSZ',
  'SIGALRM',
  'SIGCONT',
  'SIGTSTP',
  'SIGTTIN',
  'SIGTTOU',
  'SIGWINCH',
  'SIGPWR',
  'SIGIO',
  'SIGSTKFLT',
  'SIGSYS',
  'SIGTRAP',
  'SIGABRT',
  'SIGPROF',
  'SIGVTALRM',
];

/**
 * Installed first thing in both phases, before anything is loaded that could take time. The batch
 * system signals glexec's pid, the monitor, which forwards to the payload; a signal sent to a
 * phase process itself must not end it half-way, and SIGUSR1 must not find Node's inspector.
 */
export function holdSignals(): void {
  for (const signal of FORWARDED_SIGNALS) process.on(signal, () => undefined);
}

export function waitForExit(child: ChildProcess): Promise<Ending> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve(signal !== null ? { signal } : { code: code ?? 0 }));
  });
}

export interface GroupCleanup {
  /** What was found and done: none left, ended by SIGTERM, or SIGKILL was needed. */
  readonly outcome: 'none' | 'terminated' | 'killed';
  readonly durationMs: number;
}

/** Each poll scans /proc; often enough to end a group quickly, rarely enough to stay cheap. */
const POLL_MS = 25;
const KILL_WAIT_MS = 2000;

/**
 * Ends the processes `find` returns (it is asked again and again, so late forks are found):
 * SIGTERM and SIGCONT, up to `graceSeconds` for them to go, then SIGKILL until two scans in a row
 * find nothing (bounded).
 */
export async function endProcesses(find: () => ProcessIdentity[], graceSeconds: number): Promise<GroupCleanup> {
  const started = monotonicMs();
  const done = (outcome: GroupCleanup['outcome']): GroupCleanup => ({
    outcome,
    durationMs: Math.round(monotonicMs() - started),
  });
  let pids = find();
  if (pids.length === 0) return done('none');
  signalProcesses(pids, 'SIGTERM');
  signalProcesses(pids, 'SIGCONT');
  const deadline = started + graceSeconds * 1000;
  while (monotonicMs() < deadline) {
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - monotonicMs())));
    pids = find();
    if (pids.length === 0 && find().length === 0) return done('terminated');
  }
  const killDeadline = monotonicMs() + KILL_WAIT_MS;
  let emptyScans = 0;
  while (emptyScans < 2 && monotonicMs() < killDeadline) {
    signalProcesses(pids, 'SIGKILL');
    await sleep(POLL_MS);
    pids = find();
    emptyScans = pids.length === 0 ? emptyScans + 1 : 0;
  }
  return done('killed');
}

/** The running processes of `uid` in process group `pgid` (true zombies hold nothing and are left to init). */
export function groupMembersOf(pgid: number, uid: number): ProcessIdentity[] {
  return scanProcesses(uid, (stat) => stat.pgid === pgid && isRunning(stat));
}
