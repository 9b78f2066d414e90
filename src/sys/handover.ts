/**
 * The descriptors and signal between the TypeScript phases and the C monitor, their parent
 * (shim/monitor.c, docs/architecture.md).
 */
import { closeSync, writeSync } from 'node:fs';
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

/** DONE_SIGNAL of shim/monitor.c: a real-time signal (glibc's SIGRTMIN is 34), which Node sends by number only. */
const DONE_SIGNAL = 40;

/**
 * PRIVILEGE: tells the monitor (the parent) that the completion record is written and the
 * cleanup done; it checks that the signal came from this very pid, so nothing else can say it.
 */
export function tellMonitorDone(): void {
  process.kill(process.ppid, DONE_SIGNAL);
}

/** glexec's process (the monitor, parent of both phases): its pid, process group and session. */
export function glexecProcessIds(): { pid: number; pgid: number; sid: number } {
  const monitor = describeProcess(process.ppid);
  if (monitor === undefined) throw new Error(`cannot read /proc/${process.ppid}`);
  return { pid: process.ppid, pgid: monitor.pgid, sid: monitor.sid };
}

/** The monitor's start time as /proc gives it (the target-proxy registry tells a live glexec by it). */
export function glexecStartTime(): string {
  return describeProcess(process.ppid)?.started ?? '';
}
