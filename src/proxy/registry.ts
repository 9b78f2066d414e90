/**
 * Where the /tmp copies of create_target_proxy are, for as long as their runs last. A renewal
 * (glexec without a payload, DIRAC's way) has no GLEXEC_TARGET_PROXY either, and the copy's name
 * is random on purpose, so each run records its copy in root's runtime directory under a key of
 * caller uid, target uid and source proxy path: a renewal by the same caller, with the same
 * source, mapped to the same account, finds exactly the copies of its running payloads.
 *
 * A record is root's own file (0600, in a 0700 root directory) holding the copy's path and inode
 * and the pid and start time of the glexec that made it. Renewal and removal take an exclusive flock lock on the
 * record, so a renewal never writes a copy that its run is removing. A record whose glexec is gone
 * (killed by root with SIGKILL) is dropped when a renewal comes across it; its file is left alone.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { systemError } from '../errors';
import { readAllAndClose } from '../sys/files';
import { flockDescriptor } from '../sys/lock';
import { describeProcess } from '../sys/procinfo';
import type { FileIdentity } from './target';

export interface CreatedProxy {
  readonly path: string;
  readonly file: FileIdentity;
  /** The glexec whose payload uses the copy, and when it started (/proc), against pid reuse. */
  readonly glexecPid: number;
  readonly glexecStarted: string;
}

/** A record on disk, and where it is. */
export interface Registration {
  readonly recordPath: string;
  readonly copy: CreatedProxy;
}

const MAX_RECORD_BYTES = 4096;
const LOCK_WAIT_SECONDS = 30;
const { O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;

/** The key of a copy: who asked, for whom, from which source file (the path as the caller gave it). */
export function registryKey(callerUid: number, targetUid: number, sourcePath: string): string {
  return createHash('sha256').update(`${callerUid}\0${targetUid}\0${sourcePath}`).digest('hex').slice(0, 32);
}

/**
 * PRIVILEGE: creates the registry directory as root (its parent, root's runtime directory, 0755 as
 * the leftover lists need it), and refuses either if anybody but root could write it.
 */
function registryDirectory(directory: string): string {
  const parent = dirname(directory);
  try {
    mkdirSync(parent, { recursive: true, mode: 0o755 });
    mkdirSync(directory, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw systemError(
        'target_proxy.registry',
        `cannot create ${directory}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
        error,
      );
    }
  }
  const above = lstatSync(parent);
  if (!above.isDirectory() || above.uid !== 0 || above.mode & 0o022)
    throw systemError('target_proxy.registry', `${parent} must be a root-owned directory that only root can write`);
  const st = lstatSync(directory);
  if (!st.isDirectory() || st.uid !== 0 || st.mode & 0o077)
    throw systemError('target_proxy.registry', `${directory} must be a directory of root's with mode 0700`);
  return directory;
}

function encode(copy: CreatedProxy): string {
  return JSON.stringify({
    path: copy.path,
    dev: copy.file.dev,
    ino: copy.file.ino,
    glexecPid: copy.glexecPid,
    glexecStarted: copy.glexecStarted,
  });
}

function decode(text: string): CreatedProxy | undefined {
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const { path, dev, ino, glexecPid, glexecStarted } = value;
    if (typeof path !== 'string' || !path.startsWith('/') || typeof dev !== 'number' || typeof ino !== 'number')
      return undefined;
    if (typeof glexecPid !== 'number' || typeof glexecStarted !== 'string') return undefined;
    return { path, file: { dev, ino }, glexecPid, glexecStarted };
  } catch {
    return undefined;
  }
}

function rewrite(fd: number, copy: CreatedProxy): void {
  ftruncateSync(fd, 0);
  writeSync(fd, encode(copy), 0);
}

/** Records this run's copy; returns the record for renewLocked/removeLocked. */
export function registerCreatedProxy(directory: string, key: string, copy: CreatedProxy): Registration {
  const recordPath = join(registryDirectory(directory), `${key}-${copy.glexecPid}-${randomBytes(4).toString('hex')}`);
  const fd = openSync(recordPath, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
  try {
    rewrite(fd, copy);
  } finally {
    closeSync(fd);
  }
  return { recordPath, copy };
}

/** The glexec of a record still runs: its pid exists and started when the record says (no reuse). */
function stillRunning(copy: CreatedProxy): boolean {
  return describeProcess(copy.glexecPid)?.started === copy.glexecStarted;
}

/** When this glexec started, as /proc tells it, for records of copies it makes. */
export function ownStartTime(): string {
  return describeProcess(process.pid)?.started ?? '';
}

/** The records under `key` whose glexec still runs; records of dead runs are removed on the way. */
export function findCreatedProxies(directory: string, key: string): Registration[] {
  const names = readdirSync(registryDirectory(directory));
  const found: Registration[] = [];
  for (const name of names.filter((entry) => entry.startsWith(`${key}-`)).sort()) {
    const recordPath = join(directory, name);
    let copy: CreatedProxy | undefined;
    try {
      copy = decode(
        readAllAndClose(openSync(recordPath, constants.O_RDONLY | O_NOFOLLOW), MAX_RECORD_BYTES).toString('utf8'),
      );
    } catch {
      continue; // Removed meanwhile by its run.
    }
    if (copy !== undefined && stillRunning(copy)) found.push({ recordPath, copy });
    else unlinkQuietly(recordPath);
  }
  return found;
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

/**
 * Runs `fn` on the record's copy under the record's exclusive lock, unless the record was removed
 * meanwhile (then `fn` does not run: its run is over). `fn` returns the copy's identity
 * afterwards, which is written back, or undefined when the copy is no longer there.
 */
export function renewLocked(
  registration: Registration,
  fn: (copy: CreatedProxy) => FileIdentity | undefined,
): FileIdentity | undefined {
  let fd: number;
  try {
    fd = openSync(registration.recordPath, O_RDWR | O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    flockDescriptor(fd, 'exclusive', LOCK_WAIT_SECONDS);
    if (fstatSync(fd).nlink === 0) return undefined;
    const copy = decode(readRecord(fd));
    if (copy === undefined) return undefined;
    const file = fn(copy);
    if (file !== undefined && (file.dev !== copy.file.dev || file.ino !== copy.file.ino))
      rewrite(fd, { ...copy, file });
    return file;
  } finally {
    closeSync(fd);
  }
}

/**
 * Runs `fn` (the removal of the copy) under the record's lock with its latest identity, then drops
 * the record. A record already gone (dropped by a renewal that took this run for dead) still gets
 * `fn`, with the identity the run registered.
 */
export function removeLocked<T>(registration: Registration, fn: (copy: CreatedProxy) => T): T {
  let fd: number;
  try {
    fd = openSync(registration.recordPath, O_RDWR | O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return fn(registration.copy);
    throw error;
  }
  try {
    flockDescriptor(fd, 'exclusive', LOCK_WAIT_SECONDS);
    const result = fn(decode(readRecord(fd)) ?? registration.copy);
    unlinkSync(registration.recordPath);
    return result;
  } finally {
    closeSync(fd);
  }
}

/** The whole record, read from offset 0 (positional reads: the write position stays untouched). */
function readRecord(fd: number): string {
  const buffer = Buffer.alloc(MAX_RECORD_BYTES);
  let total = 0;
  for (;;) {
    const count = readSync(fd, buffer, total, buffer.length - total, total);
    total += count;
    if (count === 0 || total >= buffer.length) return buffer.subarray(0, total).toString('utf8');
  }
}
