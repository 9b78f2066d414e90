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
import { join } from 'node:path';
import { systemError } from '../errors';
import {
  closeDescriptor,
  createRecordFile,
  isUnlinked,
  listDirectory,
  lstatPath,
  makePrivateRootDirectory,
  openRecordFile,
  readCheckedFile,
  readRecord,
  removeFile,
  removeFileQuietly,
  rewriteRecord,
} from '../sys/files';
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

/** The key of a copy: who asked, for whom, from which source file (the path as the caller gave it). */
export function registryKey(callerUid: number, targetUid: number, sourcePath: string): string {
  return createHash('sha256').update(`${callerUid}\0${targetUid}\0${sourcePath}`).digest('hex').slice(0, 32);
}

/**
 * PRIVILEGE: creates the registry directory as root (its parent, root's runtime directory, 0755 as
 * the leftover lists need it), and refuses either if anybody but root could write it.
 */
function registryDirectory(directory: string): string {
  try {
    makePrivateRootDirectory(directory);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === undefined ? (error as Error).message : `cannot create ${directory}: ${code}`;
    throw systemError('target_proxy.registry', why, error);
  }
  return directory;
}

/** A record's text (the C monitor compares it byte for byte before it removes a copy itself). */
export function recordText(copy: CreatedProxy): string {
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

/** Records this run's copy; returns the record for renewLocked/removeLocked. */
export function registerCreatedProxy(directory: string, key: string, copy: CreatedProxy): Registration {
  const recordPath = join(registryDirectory(directory), `${key}-${copy.glexecPid}-${randomBytes(4).toString('hex')}`);
  createRecordFile(recordPath, recordText(copy));
  return { recordPath, copy };
}

/** The glexec of a record still runs: its pid exists and started when the record says (no reuse). */
function stillRunning(copy: CreatedProxy): boolean {
  return describeProcess(copy.glexecPid)?.started === copy.glexecStarted;
}

/** The records under `key` whose glexec still runs; records of dead runs are removed on the way. */
export function findCreatedProxies(directory: string, key: string): Registration[] {
  const names = listDirectory(registryDirectory(directory));
  const found: Registration[] = [];
  for (const name of names.filter((entry) => entry.startsWith(`${key}-`)).sort()) {
    const recordPath = join(directory, name);
    let copy: CreatedProxy | undefined;
    try {
      copy = decode(readCheckedFile(recordPath, lstatPath(recordPath), MAX_RECORD_BYTES).toString('utf8'));
    } catch {
      continue; // Removed meanwhile by its run.
    }
    if (copy !== undefined && stillRunning(copy)) found.push({ recordPath, copy });
    else removeFileQuietly(recordPath);
  }
  return found;
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
  let fd: number | undefined;
  try {
    fd = openRecordFile(registration.recordPath);
  } catch {
    return undefined;
  }
  if (fd === undefined) return undefined;
  try {
    flockDescriptor(fd, 'exclusive', LOCK_WAIT_SECONDS);
    if (isUnlinked(fd)) return undefined;
    const copy = decode(readRecord(fd, MAX_RECORD_BYTES));
    if (copy === undefined) return undefined;
    const file = fn(copy);
    if (file !== undefined && (file.dev !== copy.file.dev || file.ino !== copy.file.ino))
      rewriteRecord(fd, recordText({ ...copy, file }));
    return file;
  } finally {
    closeDescriptor(fd);
  }
}

/**
 * Runs `fn` (the removal of the copy) under the record's lock with its latest identity, then drops
 * the record. A record already gone (dropped by a renewal that took this run for dead) still gets
 * `fn`, with the identity the run registered.
 */
export function removeLocked<T>(registration: Registration, fn: (copy: CreatedProxy) => T): T {
  const fd = openRecordFile(registration.recordPath);
  if (fd === undefined) return fn(registration.copy);
  try {
    flockDescriptor(fd, 'exclusive', LOCK_WAIT_SECONDS);
    const result = fn(decode(readRecord(fd, MAX_RECORD_BYTES)) ?? registration.copy);
    removeFile(registration.recordPath);
    return result;
  } finally {
    closeDescriptor(fd);
  }
}
