/** What /proc says about a process: for the leftover list and the fallback scans. */
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { isoTimestamp } from '../clock';
import { escapeControl } from '../log/sanitize';

export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  /** Effective uid (the owner of /proc/PID). */
  readonly uid: number;
  readonly pgid: number;
  readonly sid: number;
  /** Of the thread group: a leader that exited (Z) while another thread runs on has that thread's state. */
  readonly state: string;
  /** Start time in clock ticks since boot: with pid and uid, what tells a process from a later one that reuses its pid. */
  readonly startTicks: number;
  /** When it started (ISO 8601). */
  readonly started: string;
  /** argv joined by spaces, at most COMMAND_BYTES of it, control characters escaped (\xHH). */
  readonly command: string;
}

/** USER_HZ: the unit of /proc/PID/stat's start time; 100 on every Linux architecture glexec runs on. */
const CLOCK_TICKS = 100;
/** How much of a command line is read: a payload can make its own megabytes long. */
const COMMAND_BYTES = 4096;
let bootTimeMs: number | undefined;

function bootTime(): number {
  bootTimeMs ??= Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? 0) * 1000;
  return bootTimeMs;
}

/** The first COMMAND_BYTES of /proc/PID/cmdline, read into a fixed buffer. */
function readCommandLine(pid: number): string {
  const fd = openSync(`/proc/${pid}/cmdline`, 'r');
  try {
    const buffer = Buffer.alloc(COMMAND_BYTES);
    const length = readSync(fd, buffer, 0, COMMAND_BYTES, 0);
    return buffer.subarray(0, length).toString('utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
  } finally {
    closeSync(fd);
  }
}

interface StatFields {
  readonly pid: number;
  readonly ppid: number;
  readonly pgid: number;
  readonly sid: number;
  readonly state: string;
  readonly startTicks: number;
  readonly name: string;
}

function readStat(pid: number): StatFields {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may itself contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    pid,
    ppid: Number(fields[1]),
    pgid: Number(fields[2]),
    sid: Number(fields[3]),
    state: fields[0] ?? '?',
    startTicks: Number(fields[19]),
    name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
  };
}

function describe(stat: StatFields, uid: number): ProcessInfo {
  const commandLine = readCommandLine(stat.pid);
  // The process chooses both its command line and its name (prctl): neither may forge a line
  // or a field of the tab-separated leftover list, nor a log line.
  const command = escapeControl(commandLine === '' ? `[${stat.name}]` : commandLine);
  return {
    pid: stat.pid,
    ppid: stat.ppid,
    uid,
    pgid: stat.pgid,
    sid: stat.sid,
    state: threadGroupState(stat),
    startTicks: stat.startTicks,
    started: isoTimestamp(bootTime() + (stat.startTicks / CLOCK_TICKS) * 1000),
    command,
  };
}

/**
 * The state of a thread group: its leader's, unless the leader has exited (pthread_exit) while
 * other threads run on. /proc then shows the leader as Z, but the process is alive, holds its
 * resources and must be counted and killed; the state is that of its first live thread.
 */
function threadGroupState(stat: Pick<StatFields, 'pid' | 'state'>): string {
  if (stat.state !== 'Z') return stat.state;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${stat.pid}/task`);
  } catch {
    return stat.state;
  }
  for (const task of tasks) {
    try {
      const text = readFileSync(`/proc/${stat.pid}/task/${task}/stat`, 'utf8');
      const state = text.slice(text.lastIndexOf(')') + 2).split(' ')[0] ?? 'Z';
      if (state !== 'Z' && state !== 'X') return state;
    } catch {
      // That thread is gone.
    }
  }
  return stat.state;
}

/** Whether a process still runs: some thread of its thread group is neither a zombie nor dead. */
export function isRunning(stat: Pick<StatFields, 'pid' | 'state'>): boolean {
  const state = threadGroupState(stat);
  return state !== 'Z' && state !== 'X';
}

/** What identifies one process over time: a pid alone may be reused once it is gone. */
export interface ProcessIdentity {
  readonly pid: number;
  readonly uid: number;
  readonly startTicks: number;
}

/** Whether `pid` is still the process `identity` names (same owner, same start time). */
export function isSameProcess(identity: ProcessIdentity): boolean {
  try {
    return (
      statSync(`/proc/${identity.pid}`).uid === identity.uid &&
      readStat(identity.pid).startTicks === identity.startTicks
    );
  } catch {
    return false;
  }
}

/** Undefined when the process is gone. */
export function describeProcess(pid: number): ProcessInfo | undefined {
  try {
    return describe(readStat(pid), statSync(`/proc/${pid}`).uid);
  } catch {
    return undefined;
  }
}

/**
 * Every process of `uid` on the machine that `keep` selects from its /proc/PID/stat fields
 * (zombies included; the caller decides). Other accounts' processes are skipped before anything
 * but their owner is read.
 */
export function scanProcesses(uid: number, keep: (stat: StatFields) => boolean): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (statSync(`/proc/${entry}`).uid !== uid) continue;
      const stat = readStat(Number(entry));
      if (keep(stat)) found.push(describe(stat, uid));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}
