/**
 * cgroup v2 (and, for the pids controller on hybrid hosts, cgroup v1) for payload containment.
 * Every path written here is one glexec made itself under the configured base.
 */
import {
  existsSync,
  type FSWatcher,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { monotonicMs, sleep } from '../clock';

/** Mount points from /proc/self/mountinfo: the cgroup2 one, and the cgroup v1 one with `pids`. */
export function cgroupMounts(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): {
  v2?: string;
  pidsV1?: string;
} {
  const mounts: { v2?: string; pidsV1?: string } = {};
  for (const line of mountinfo.split('\n')) {
    // "id parent major:minor root mountpoint options [optional…] - fstype source superoptions"
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const mountPoint = (left.split(' ')[4] ?? '').replace(/\\040/g, ' ');
    const [fstype, , superOptions] = right.split(' ');
    if (fstype === 'cgroup2' && mounts.v2 === undefined) mounts.v2 = mountPoint;
    if (fstype === 'cgroup' && (superOptions ?? '').split(',').includes('pids') && mounts.pidsV1 === undefined)
      mounts.pidsV1 = mountPoint;
  }
  return mounts;
}

export interface JobCgroup {
  /** The payload's cgroup v2 directory. */
  readonly path: string;
  /** The payload's cgroup in the v1 pids hierarchy, when max_processes needs it there. */
  readonly pidsPath?: string;
}

/**
 * PRIVILEGE: makes the payload's cgroup (root-owned 0755, so the payload can neither create
 * sub-cgroups nor move itself out) under `base`, and sets pids.max when asked: in v2 if the
 * pids controller can be enabled there, else in the v1 pids hierarchy of a hybrid host.
 */
export function createJobCgroup(
  base: string,
  name: string,
  maxProcesses: number,
  pidsV1Base: string | undefined,
): JobCgroup {
  makeRootDirectory(base);
  const path = join(base, name);
  mkdirSync(path, { mode: 0o755 });
  let pidsPath: string | undefined;
  try {
    // cgroup.kill (Linux 5.14) is what makes the cleanup race-free; without it, no cgroup.
    if (!existsSync(join(path, 'cgroup.kill')))
      throw new Error('this kernel has no cgroup.kill (Linux 5.14 or later is needed)');
    if (maxProcesses === 0) return { path };
    const available = readFileSync(join(base, 'cgroup.controllers'), 'utf8').split(/\s+/);
    if (available.includes('pids')) {
      writeFileSync(join(base, 'cgroup.subtree_control'), '+pids');
      writeFileSync(join(path, 'pids.max'), String(maxProcesses));
      return { path };
    }
    if (pidsV1Base === undefined)
      throw new Error(
        'max_processes needs the pids controller, which is neither in cgroup v2 here nor mounted as cgroup v1',
      );
    makeRootDirectory(pidsV1Base);
    pidsPath = join(pidsV1Base, name);
    mkdirSync(pidsPath, { mode: 0o755 });
    writeFileSync(join(pidsPath, 'pids.max'), String(maxProcesses));
    return { path, pidsPath };
  } catch (error) {
    removeJobCgroup({ path, ...(pidsPath ? { pidsPath } : {}) });
    throw error;
  }
}

/**
 * A directory glexec keeps its cgroups in: made if missing (concurrent runs may race to make it,
 * hence recursive), and refused unless it is a root-owned directory.
 */
function makeRootDirectory(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o755 });
  const st = lstatSync(path);
  if (!st.isDirectory() || st.uid !== 0) throw new Error(`${path} is not a root-owned directory`);
}

/** The pids in a cgroup and in any cgroup below it (or, from cgroup.threads, the thread ids). */
export function cgroupPids(directory: string, list: 'cgroup.procs' | 'cgroup.threads' = 'cgroup.procs'): number[] {
  const pids = readFileSync(join(directory, list), 'utf8').split('\n').filter(Boolean).map(Number);
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    if (entry.isDirectory()) pids.push(...cgroupPids(join(directory, entry.name), list));
  }
  return pids;
}

export function cgroupPopulated(directory: string): boolean {
  return /^populated 1$/m.test(readFileSync(join(directory, 'cgroup.events'), 'utf8'));
}

const POLL_MS = 5;
/** How often a killed cgroup's members are looked at while it empties. */
const LOOK_MS = 10;

/**
 * PRIVILEGE: ends everything in the payload's cgroup: freeze, cgroup.kill, thaw, then wait until
 * empty, at most `waitMs`, with a SIGKILL of its own for each member cgroup.kill cannot reach
 * (docs/containment.md, "Ending a cgroup").
 */
export async function killCgroup(directory: string, waitMs: number): Promise<void> {
  const freezer = join(directory, 'cgroup.freeze');
  const canFreeze = existsSync(freezer);
  if (canFreeze) writeFileSync(freezer, '1');
  writeFileSync(join(directory, 'cgroup.kill'), '1');
  if (canFreeze) writeFileSync(freezer, '0');
  const deadline = monotonicMs() + waitMs;
  const killed = new Set<number>();
  let listed = Infinity;
  const changes = watchEvents(directory);
  try {
    while (cgroupPopulated(directory) && monotonicMs() <= deadline) {
      await changes.next(LOOK_MS);
      if (!cgroupPopulated(directory)) break;
      // Per-pid work competes for the CPU with the kernel's teardown of the killed members, so
      // it goes only to the members cgroup.kill misses: a process whose main thread has exited
      // (listed as a process, not as a thread). Any other member that stays gets one too, once
      // the cgroup stops shrinking.
      const members = cgroupMembers(directory);
      if (members === undefined) continue;
      killMembers(directory, members.leaderless, killed);
      if (members.pids.length >= listed) killMembers(directory, members.pids, killed);
      listed = members.pids.length;
    }
  } finally {
    changes.stop();
  }
}

/**
 * Changes of the cgroup's cgroup.events (the kernel notifies inotify watchers of it), so that a
 * cgroup that empties is seen at once rather than at the next look. `next(ms)` settles at the next
 * change or after `ms`; where no watch can be set (inotify limits), after `ms` only.
 */
function watchEvents(directory: string): { next: (ms: number) => Promise<void>; stop: () => void } {
  let changed = (): void => undefined;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(join(directory, 'cgroup.events'), { persistent: false }, () => changed());
    watcher.on('error', () => undefined);
  } catch {
    watcher = undefined;
  }
  const next = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => changed(), ms);
      changed = () => {
        clearTimeout(timer);
        changed = () => undefined;
        resolve();
      };
    });
  return { next, stop: () => watcher?.close() };
}

/**
 * The processes listed in the cgroup (and below it), and those of them whose main thread is not
 * listed as a thread: it has exited while another thread runs on. undefined if they cannot be read.
 */
export function cgroupMembers(directory: string): { pids: number[]; leaderless: number[] } | undefined {
  try {
    // Threads first: a process whose last thread exits between the two reads is then not taken
    // for one whose main thread has exited.
    const threads = new Set(cgroupPids(directory, 'cgroup.threads'));
    const pids = cgroupPids(directory);
    return { pids, leaderless: pids.filter((pid) => !threads.has(pid)) };
  } catch {
    return undefined;
  }
}

/**
 * PRIVILEGE: SIGKILL, one by one, to the listed members of the cgroup that have not had one yet.
 * Each pid is checked to be in this cgroup right before its signal, so a member that died and
 * whose pid was reused outside the cgroup is not hit.
 */
function killMembers(directory: string, pids: readonly number[], killed: Set<number>): void {
  for (const pid of pids) {
    if (killed.has(pid) || !inCgroup(pid, directory)) continue;
    killed.add(pid);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone meanwhile.
    }
  }
}

/** Whether the process is in the cgroup v2 `directory` (or below it), by its /proc/PID/cgroup. */
function inCgroup(pid: number, directory: string): boolean {
  let path: string | undefined;
  try {
    path = /^0::(\/.*)$/m.exec(readFileSync(`/proc/${pid}/cgroup`, 'utf8'))?.[1];
  } catch {
    return false;
  }
  // The path is relative to the cgroup2 mount; `directory` is that mount plus a unique job name.
  const parts = (path ?? '').split('/');
  const job = parts.indexOf(basename(directory));
  return job > 0 && directory.endsWith(parts.slice(0, job + 1).join('/'));
}

/**
 * PRIVILEGE: removes the payload's cgroups once they are empty. A killed process keeps its cgroup
 * busy until it is reaped, so removal is retried for a while; false if one is still there.
 */
export async function removeJobCgroupWhenEmpty(job: JobCgroup, waitMs: number): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  while (!removeJobCgroup(job)) {
    if (Date.now() > deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}

/** PRIVILEGE: removes the (empty) cgroups glexec made for the payload; false if one is still busy. */
export function removeJobCgroup(job: JobCgroup): boolean {
  let removed = true;
  for (const path of [job.path, job.pidsPath]) {
    if (path === undefined || !existsSync(path)) continue;
    try {
      rmdirSync(path);
    } catch {
      removed = false;
    }
  }
  return removed;
}

/** Whether `base` (or, when it does not exist yet, its parent) is a cgroup v2 directory. */
export function isCgroup2Directory(base: string): boolean {
  const probe = existsSync(base) ? base : join(base, '..');
  try {
    return lstatSync(probe).isDirectory() && existsSync(join(probe, 'cgroup.controllers'));
  } catch {
    return false;
  }
}
