/** What /proc says about a process: for the leftover list and the fallback scans. */
import { readdirSync, readFileSync, statSync } from 'node:fs';

export interface ProcessInfo {
  readonly pid: number;
  readonly ppid: number;
  /** Effective uid (the owner of /proc/PID). */
  readonly uid: number;
  readonly pgid: number;
  readonly sid: number;
  readonly state: string;
  /** When it started (ISO 8601). */
  readonly started: string;
  /** argv joined by spaces (control characters are escaped by the log, tabs and newlines here). */
  readonly command: string;
}

/** USER_HZ: the unit of /proc/PID/stat's start time; 100 on every Linux architecture glexec runs on. */
const CLOCK_TICKS = 100;
let bootTimeMs: number | undefined;

function bootTime(): number {
  bootTimeMs ??= Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1] ?? 0) * 1000;
  return bootTimeMs;
}

/** Undefined when the process is gone. */
export function describeProcess(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ').replace(/[\t\n]/g, ' ');
    return {
      pid,
      ppid: Number(fields[1]),
      uid: statSync(`/proc/${pid}`).uid,
      pgid: Number(fields[2]),
      sid: Number(fields[3]),
      state: fields[0] ?? '?',
      started: new Date(bootTime() + (Number(fields[19]) / CLOCK_TICKS) * 1000).toISOString(),
      command: command === '' ? `[${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}]` : command,
    };
  } catch {
    return undefined;
  }
}

/** Every process on the machine that `keep` selects (zombies included; the caller decides). */
export function scanProcesses(keep: (info: ProcessInfo) => boolean): ProcessInfo[] {
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = describeProcess(Number(entry));
    if (info && keep(info)) found.push(info);
  }
  return found;
}
