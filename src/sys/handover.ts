/**
 * The descriptors and signal between the TypeScript phases and the C monitor, their parent
 * (shim/monitor.c, docs/architecture.md).
 */
import { closeSync, writeSync } from 'node:fs';
import { systemError } from '../errors';
import { readAllAndClose } from './files';
import { describeProcess } from './procinfo';

/** A plan is at most this large (the monitor refuses more too). */
const MAX_PLAN_BYTES = 64 << 20;

/** Phase 1: writes the plan into the monitor's memory file, whole, and closes it. */
export function writePlan(fd: number, plan: Buffer): void {
  try {
    let written = 0;
    while (written < plan.length) written += writeSync(fd, plan, written, plan.length - written, written);
  } finally {
    closeSync(fd);
  }
}

/** Phase 2: the record the monitor handed back (and closes it, so nothing phase 2 starts inherits it). */
export function readRecord(fd: number): Buffer {
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
    writeSync(doneFd, 'd');
  } finally {
    closeSync(doneFd);
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
