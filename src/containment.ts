/**
 * Containment of the payload and of everything it starts: a cgroup v2 of its own, else its process
 * group and session (docs/containment.md).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Config } from './config/schema';
import { monotonicMs } from './clock';
import { systemError } from './errors';
import { endProcesses, type GroupCleanup } from './linger';
import {
  cgroupMounts,
  cgroupPids,
  cgroupPopulated,
  createJobCgroup,
  isCgroup2Directory,
  type JobCgroup,
  killCgroup,
  removeJobCgroup,
  removeJobCgroupWhenEmpty,
} from './sys/cgroup';
import { createRootFile, makeRootDirectory, removeRootFile } from './sys/files';
import type { Identity, Pid, Uid } from './sys/identity';
import { describeProcess, isRunning, type ProcessInfo, scanProcesses } from './sys/procinfo';

/** The payload's process and account: what its leftovers are found by. */
export interface PayloadProcess {
  readonly pid: Pid;
  readonly uid: Uid;
}

export type PayloadContainment =
  | { readonly mode: 'cgroup'; readonly job: JobCgroup }
  | { readonly mode: 'pgid'; readonly reason: string }
  | { readonly mode: 'off' };

/** How long glexec waits for a killed cgroup to empty before it reports survivors. */
const CGROUP_KILL_WAIT_MS = 5000;

/**
 * Makes the payload's cgroup, or says why glexec falls back to the process group. A
 * max_processes that cannot be enforced is a 202: ignoring it would let a fork bomb through.
 */
export function prepareContainment(config: Config): PayloadContainment {
  if (config.containment === 'off') return { mode: 'off' };
  if (config.containment === 'pgid') {
    if (config.max_processes > 0)
      throw systemError('containment.max_processes', 'max_processes needs containment = cgroup');
    return { mode: 'pgid', reason: 'containment = pgid' };
  }
  const mounts = cgroupMounts();
  const base =
    config.cgroup_base !== '' ? config.cgroup_base : mounts.v2 !== undefined ? join(mounts.v2, 'glexec') : undefined;
  const fallback = (reason: string): PayloadContainment => {
    if (config.max_processes > 0)
      throw systemError('containment.max_processes', `max_processes cannot be enforced: ${reason}`);
    return { mode: 'pgid', reason };
  };
  if (base === undefined || mounts.v2 === undefined) return fallback('no cgroup v2 is mounted');
  if (!isCgroup2Directory(base)) return fallback(`${base} is not a cgroup v2 directory glexec can use`);
  const name = `job-${process.pid}-${randomBytes(4).toString('hex')}`;
  const pidsV1Base = mounts.pidsV1 === undefined ? undefined : join(mounts.pidsV1, 'glexec');
  let job: JobCgroup;
  try {
    job = createJobCgroup(base, name, config.max_processes, pidsV1Base);
  } catch (error) {
    return fallback(`cannot make a cgroup under ${base}: ${(error as Error).message}`);
  }
  return { mode: 'cgroup', job };
}

/**
 * The cgroup.procs files start-payload joins before anything else: the v1 pids cgroup of a hybrid
 * host. The monitor starts it inside the v2 cgroup itself (CLONE_INTO_CGROUP, the plan's cgroup).
 */
export function cgroupProcsFiles(containment: PayloadContainment): string[] {
  if (containment.mode !== 'cgroup' || containment.job.pidsPath === undefined) return [];
  return [join(containment.job.pidsPath, 'cgroup.procs')];
}

/** Removes the payload's cgroup when the payload never started. */
export function abandonContainment(containment: PayloadContainment): void {
  if (containment.mode === 'cgroup') removeJobCgroup(containment.job);
}

/** How many leftovers are described (listed, logged) at most; the count stays exact. */
export const MAX_DESCRIBED = 1000;

export interface Leftovers {
  readonly count: number;
  /** At most MAX_DESCRIBED of them. */
  readonly described: readonly ProcessInfo[];
}

/** What the payload left running: its cgroup's members, or the target's processes in its group or session. */
export function findLeftovers(containment: PayloadContainment, payload: PayloadProcess): Leftovers {
  // A process whose main thread exited while another runs on shows as Z in /proc, but is alive.
  const running = (info: ProcessInfo | undefined): info is ProcessInfo =>
    info !== undefined && info.state !== 'Z' && info.state !== 'X';
  switch (containment.mode) {
    case 'cgroup': {
      const pids = cgroupPids(containment.job.path);
      const described = pids.slice(0, MAX_DESCRIBED).map(describeProcess).filter(running);
      return { count: pids.length > MAX_DESCRIBED ? pids.length : described.length, described };
    }
    case 'pgid': {
      const found = pgidMembers(payload);
      return { count: found.length, described: found.slice(0, MAX_DESCRIBED) };
    }
    case 'off':
      return { count: 0, described: [] };
  }
}

/** The target's running processes (thread groups with a live thread) in the payload's process group or session. */
function pgidMembers(payload: PayloadProcess): ProcessInfo[] {
  return scanProcesses(
    payload.uid,
    (stat) => (stat.pgid === payload.pid || stat.sid === payload.pid) && isRunning(stat),
  );
}

/** Where a leftover list goes, and what it holds; the file itself is made by writeLeftoverFile or the monitor. */
export interface LeftoverList {
  readonly path: string;
  readonly text: string;
  /** Its group, for an epilogue that runs as another account than root (mode 0640); undefined: 0600. */
  readonly readerGid: number | undefined;
}

/**
 * The leftover list for the epilogue, in runtime_directory (glexec.conf), root's own: a header
 * line and one tab-separated line per process, readable by the epilogue's account. Not written:
 * see writeLeftoverFile.
 */
export function leftoverList(
  leftovers: readonly ProcessInfo[],
  reader: Pick<Identity, 'uid' | 'gid'>,
  directory: string,
): LeftoverList {
  if (!makeRootDirectory(directory)) {
    throw systemError(
      'containment.leftover_dir',
      `${directory} must be a root-owned directory that only root can write`,
    );
  }
  const path = join(directory, `leftovers-${process.pid}-${randomBytes(6).toString('hex')}.tsv`);
  const rows = leftovers.map((p) => [p.pid, p.ppid, p.uid, p.pgid, p.sid, p.started, p.command].join('\t'));
  const lines = ['pid\tppid\tuid\tpgid\tsid\tstarted\tcommand', ...rows];
  // An epilogue that runs as another account reads it through its group.
  return { path, text: `${lines.join('\n')}\n`, readerGid: reader.uid === 0 ? undefined : reader.gid };
}

/** Writes the leftover list for the epilogue (leftoverList); returns its path. */
export function writeLeftoverFile(
  leftovers: readonly ProcessInfo[],
  reader: Pick<Identity, 'uid' | 'gid'>,
  directory: string,
): string {
  const list = leftoverList(leftovers, reader, directory);
  createRootFile(list.path, list.text, list.readerGid);
  return list.path;
}

export function removeLeftoverFile(path: string | undefined): void {
  if (path !== undefined) removeRootFile(path);
}

export interface LeftoverCleanup extends GroupCleanup {
  readonly mode: PayloadContainment['mode'];
  /** Processes still running when glexec gave up (0 unless kill_leftovers = no). */
  readonly survivors: number;
  /** The payload's cgroup, when it could not be removed because processes remain in it. */
  readonly keptCgroup?: string;
}

/**
 * After the epilogue: end what is left (kill_leftovers = yes) and remove the payload's cgroup.
 * cgroup: freeze, cgroup.kill, wait until empty. pgid: SIGTERM, kill_grace, SIGKILL, until two
 * scans in a row find nothing.
 */
export async function endLeftovers(
  containment: PayloadContainment,
  payload: PayloadProcess,
  kill: boolean,
  graceSeconds: number,
): Promise<LeftoverCleanup> {
  const started = monotonicMs();
  switch (containment.mode) {
    case 'off':
      return { mode: 'off', outcome: 'none', durationMs: 0, survivors: 0 };
    case 'pgid': {
      if (!kill)
        return { mode: 'pgid', outcome: 'none', durationMs: 0, survivors: findLeftovers(containment, payload).count };
      const cleanup = await endProcesses(() => pgidMembers(payload), graceSeconds);
      return { mode: 'pgid', ...cleanup, survivors: pgidMembers(payload).length };
    }
    case 'cgroup': {
      const { job } = containment;
      let outcome: GroupCleanup['outcome'] = 'none';
      if (kill && cgroupPopulated(job.path)) {
        outcome = 'killed';
        await killCgroup(job.path, CGROUP_KILL_WAIT_MS);
      }
      const survivors = cgroupPopulated(job.path) ? cgroupPids(job.path).length : 0;
      const removed = survivors === 0 && (await removeJobCgroupWhenEmpty(job, CGROUP_KILL_WAIT_MS));
      return {
        mode: 'cgroup',
        outcome,
        durationMs: Math.round(monotonicMs() - started),
        survivors,
        ...(removed ? {} : { keptCgroup: job.path }),
      };
    }
  }
}
