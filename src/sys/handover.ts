/**
 * The descriptors between the TypeScript phases and the C monitor, their parent
 * (shim/monitor.c, docs/architecture.md).
 */
import { systemError } from '../errors';
import { MAX_PLAN_BYTES } from '../plan';
import { closeDescriptor, readAllAndClose, writeAll } from './files';
import { describeProcess } from './procinfo';

/** Phase 1: writes the plan into the monitor's memory file, whole, and closes it. */
export function writePlan(fd: number, plan: Buffer): void {
  try {
    writeAll(fd, plan);
  } finally {
    closeDescriptor(fd);
  }
}

/** Phase 2: the record the monitor handed back (and closes it, so nothing phase 2 starts inherits it). */
export function readHandedBack(fd: number): Buffer {
  return readAllAndClose(fd, MAX_PLAN_BYTES);
}

/**
 * Tells the monitor that the completion record is written and the cleanup done: one byte on the
 * pipe only the monitor and phase 2 hold (shim/monitor.c reads it once phase 2 has exited), then
 * closed, so nothing phase 2 starts afterwards holds it.
 */
export function tellMonitorDone(doneFd: number | undefined): void {
  if (doneFd === undefined) throw systemError('shim.bad_args', 'the concluding phase has no "done" descriptor');
  try {
    writeAll(doneFd, Buffer.from('d'));
  } finally {
    closeDescriptor(doneFd);
  }
}

/** glexec's process (the monitor, `pid`, the parent of both phases): its pid, process group and session. */
export function glexecProcessIds(pid: number): { pid: number; pgid: number; sid: number } {
  const monitor = describeProcess(pid);
  if (monitor === undefined) throw new Error(`cannot read /proc/${pid}`);
  return { pid, pgid: monitor.pgid, sid: monitor.sid };
}

/** The monitor's start time as /proc gives it (the target-proxy registry tells a live glexec by it). */
export function glexecStartTime(pid: number): string {
  return describeProcess(pid)?.started ?? '';
}
