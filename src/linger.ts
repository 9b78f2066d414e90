/**
 * Lingering: glexec stays, root-only, while the payload runs; it forwards the signals a batch
 * system sends to the payload's process group, and turns the payload's ending into data.
 * Then it ends what is left of the payload's process group: SIGTERM, a grace, SIGKILL.
 */
import { monotonicMs } from './clock';
import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Ending } from './exitcode';
import { liveGroupMembers, signalGroup, signalProcesses } from './sys/proc';

/** Forwarded to the payload's process group (design.md §3). SIGKILL and SIGSTOP cannot be caught. */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = [
  'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2', 'SIGXCPU', 'SIGXFSZ', 'SIGALRM',
  'SIGCONT', 'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGWINCH',
];

/**
 * Installed first thing, before anything is loaded that could take time, so that no signal
 * (SIGUSR1 above all: Node would open its inspector) finds a default handler. Signals that arrive
 * before the payload exists are kept and delivered to it as soon as it is spawned.
 */
export class SignalRelay {
  private pgid: number | undefined;
  private readonly pending: NodeJS.Signals[] = [];
  readonly received: NodeJS.Signals[] = [];

  install(): void {
    for (const signal of FORWARDED_SIGNALS) process.on(signal, () => this.deliver(signal));
  }

  attach(pgid: number): void {
    this.pgid = pgid;
    for (const signal of this.pending.splice(0)) signalGroup(pgid, signal);
  }

  detach(): void {
    this.pgid = undefined;
  }

  /** Backstop for an internal error while the payload runs: it must not outlive glexec unseen. */
  killPayload(): void {
    if (this.pgid !== undefined) signalGroup(this.pgid, 'SIGKILL');
  }

  private deliver(signal: NodeJS.Signals): void {
    this.received.push(signal);
    if (this.pgid === undefined) this.pending.push(signal);
    else signalGroup(this.pgid, signal);
  }
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

/** SIGTERM to `uid`'s processes in the group, wait up to `graceSeconds` for them to end, then SIGKILL. */
export async function endProcessGroup(pgid: number, uid: number, graceSeconds: number): Promise<GroupCleanup> {
  const started = monotonicMs();
  const done = (outcome: GroupCleanup['outcome']): GroupCleanup => ({ outcome, durationMs: Math.round(monotonicMs() - started) });
  let members = liveGroupMembers(pgid, uid);
  if (members.length === 0) return done('none');
  signalProcesses(members, 'SIGTERM');
  signalProcesses(members, 'SIGCONT');
  const deadline = started + graceSeconds * 1000;
  while (monotonicMs() < deadline) {
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - monotonicMs())));
    members = liveGroupMembers(pgid, uid);
    if (members.length === 0) return done('terminated');
  }
  // SIGKILL cannot be refused, but delivery is not instant; repeat for late forks, bounded.
  const killDeadline = monotonicMs() + KILL_WAIT_MS;
  while (members.length > 0 && monotonicMs() < killDeadline) {
    signalProcesses(members, 'SIGKILL');
    await sleep(POLL_MS);
    members = liveGroupMembers(pgid, uid);
  }
  return done('killed');
}
