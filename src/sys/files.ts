/**
 * The file gateway: every file glexec reads, creates or changes goes through here, and no other
 * module of src/ may import node:fs (a lint rule). Sections: looking without following, trusted
 * reads, root's own files, files written with another account's identity, gridmapdir links
 * (docs/security.md, "Reading files as root" and "Files root creates").
 */
import {
  type BigIntStats,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  type Stats,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { systemError } from '../errors';
import { requireTrustedPath, type TrustPolicy } from '../trust';

// Node opens every file with O_CLOEXEC already. O_NONBLOCK: a FIFO fails or opens at once instead
// of blocking glexec, and a file lease makes the open fail instead of waiting.
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

export type { BigIntStats, Stats };
/** open(2) flags and mode bits, for the callers of openNoFollow. */
export const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NONBLOCK } = constants;

// --- looking, without following the last component --------------------------------------------

/** lstat(2) as the current identity: the entry itself; the trust walks (src/trust.ts) look with it. */
export const lstatPath = (path: string): Stats => lstatSync(path);
/** lstat(2) with exact numbers: device, inode and ctime in nanoseconds, as C's struct stat has them. */
export const lstatPathExact = (path: string): BigIntStats => lstatSync(path, { bigint: true });
/** stat(2) as the current identity, following symlinks: what the path finally names. */
export const statFollowing = (path: string): Stats => statSync(path);
export const readLink = (path: string): string => readlinkSync(path);
export const realPath = (path: string): string => realpathSync(path);
/** The names in a directory, refused (FileTooLarge) when there are more than `max`. */
export function listDirectory(directory: string, max = Number.POSITIVE_INFINITY): string[] {
  const names = readdirSync(directory);
  if (names.length > max) throw new FileTooLarge(`${directory} holds more than ${max} entries`);
  return names;
}
/** Whether `path` names something, following links (for --check's "is it installed" questions). */
export const pathExists = (path: string): boolean => existsSync(path);
/** The file behind a descriptor already open (checks on what was opened, not on a name). */
export const statDescriptor = (fd: number): Stats => fstatSync(fd);

// --- trusted reads: open without following, check the descriptor, read with a cap ----------

export class FileChanged extends Error {}
export class FileTooLarge extends Error {}

/**
 * PRIVILEGE: opens as root, but only after the caller checked `checked` (from lstat), and the
 * descriptor is refused unless it is that very inode.
 */
export function openChecked(path: string, checked: Stats): number {
  const fd = openSync(path, READ_FLAGS);
  const opened = fstatSync(fd);
  if (opened.dev !== checked.dev || opened.ino !== checked.ino || !opened.isFile()) {
    closeSync(fd);
    throw new FileChanged(`${path} changed while it was being checked`);
  }
  return fd;
}

/**
 * The trusted read: opens `path` without following it, refuses any file but the one `checked`
 * describes (from lstat, after the caller's trust checks), and reads at most maxBytes.
 */
export function readCheckedFile(path: string, checked: Stats, maxBytes: number): Buffer {
  return readAllAndClose(openChecked(path, checked), maxBytes);
}

/** A file only root (and `policy`'s owners) can change: its name in messages, its cap, its refusals' codes. */
export interface TrustedFile {
  readonly what: string;
  readonly policy: TrustPolicy;
  readonly maxBytes: number;
  readonly untrustedCode: string;
  readonly unreadableCode: string;
}

/** The trusted-path walk (src/trust.ts), then the trusted read; a failed read is a 202. */
export function readTrustedFile(path: string, file: TrustedFile): Buffer {
  const checked = requireTrustedPath(file.what, path, file.policy, lstatSync, file.untrustedCode);
  try {
    return readCheckedFile(path, checked, file.maxBytes);
  } catch (error) {
    throw systemError(file.unreadableCode, `cannot read ${file.what} ${path}: ${(error as Error).message}`);
  }
}

/** The first `bytes` bytes of the file `checked` describes (a #! line, an ELF magic). */
export function readCheckedHead(path: string, checked: Stats, bytes: number): Buffer {
  const fd = openChecked(path, checked);
  try {
    const head = Buffer.alloc(bytes);
    return head.subarray(0, readSync(fd, head, 0, bytes, 0));
  } finally {
    closeSync(fd);
  }
}

/** A file that was only lstat()ed (its directories were checked by the caller), read with a cap. */
export function readUnfollowedFile(path: string, maxBytes: number): Buffer {
  return readCheckedFile(path, lstatSync(path), maxBytes);
}

/** Reads a whole descriptor (and closes it), refusing more than maxBytes. */
export function readAllAndClose(fd: number, maxBytes: number): Buffer {
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(65536);
      const count = readSync(fd, chunk, 0, chunk.length, null);
      if (count === 0) break;
      total += count;
      if (total > maxBytes) throw new FileTooLarge(`larger than ${maxBytes} bytes`);
      chunks.push(chunk.subarray(0, count));
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

// --- root's own files (runtime directory, leftover lists, the log) ---------------------------

/**
 * Makes root's directory when it is missing (concurrent runs may race to make it after a boot,
 * /run being a tmpfs) and says whether it is a directory that only root can write.
 */
export function makeRootDirectory(directory: string): boolean {
  mkdirSync(directory, { recursive: true, mode: 0o755 });
  const st = lstatSync(directory);
  return st.isDirectory() && st.uid === 0 && (st.mode & 0o022) === 0;
}

/**
 * Creates a new file of root's (never an existing one, never through a symlink) with `text`:
 * mode 0600, or 0640 with group `readerGid` for a reader that is not root.
 */
export function createRootFile(path: string, text: string, readerGid?: number): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, text);
    if (readerGid !== undefined) {
      fchownSync(fd, 0, readerGid);
      fchmodSync(fd, 0o640);
    }
  } finally {
    closeSync(fd);
  }
}

/** Removes a file of root's; one that is already gone is fine. */
export function removeRootFile(path: string): void {
  rmSync(path, { force: true });
}

/** Makes one directory of root's (not its parents: they must already be trusted). */
export function makeDirectory(directory: string, mode: number): void {
  mkdirSync(directory, { mode });
}

/**
 * PRIVILEGE: root's private directory `directory` (0700) under its runtime directory (0755),
 * made when missing; refused unless only root can write either.
 */
export function makePrivateRootDirectory(directory: string): void {
  const parent = directory.slice(0, directory.lastIndexOf('/')) || '/';
  try {
    mkdirSync(parent, { recursive: true, mode: 0o755 });
    mkdirSync(directory, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const above = lstatSync(parent);
  if (!above.isDirectory() || above.uid !== 0 || above.mode & 0o022)
    throw new UntrustedFile(`${parent} must be a root-owned directory that only root can write`);
  const st = lstatSync(directory);
  if (!st.isDirectory() || st.uid !== 0 || st.mode & 0o077)
    throw new UntrustedFile(`${directory} must be a directory of root's with mode 0700`);
}

/** A file or directory of root's that someone else could change. */
export class UntrustedFile extends Error {}

/**
 * PRIVILEGE: root's append-only log file, created 0600 when missing, never through a symlink.
 * Refused (UntrustedFile) unless it is a regular root-owned file with one link that neither group
 * nor others may write; then given to group `readerGid` (0640, or 0600 for group root).
 */
export function openRootLogFile(path: string, readerGid: number): number {
  const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  const st = fstatSync(fd);
  if (!st.isFile() || st.uid !== 0 || st.nlink !== 1 || st.mode & 0o022) {
    closeSync(fd);
    throw new UntrustedFile(
      `log file ${path} must be a regular root-owned file with one link, not writable by group or others`,
    );
  }
  if (st.gid !== readerGid) fchownSync(fd, 0, readerGid);
  fchmodSync(fd, readerGid === 0 ? 0o600 : 0o640);
  return fd;
}

/** Writes all of `bytes` (a short write, as on a full disk, goes on or throws: never drops the rest). */
export function writeAll(fd: number, bytes: Buffer): void {
  for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done);
}

// --- root's record files (a small text each, rewritten in place under a lock) ----------------

/** PRIVILEGE: a new record of root's, 0600, never an existing file or a symlink. */
export function createRecordFile(path: string, text: string): void {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, text, 0);
  } finally {
    closeSync(fd);
  }
}

/** A record opened for update (the caller closes it); undefined when it is gone. */
export function openRecordFile(path: string): number | undefined {
  try {
    return openSync(path, constants.O_RDWR | constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** A whole record, read from offset 0 (positional reads: the write position stays untouched). */
export function readRecord(fd: number, maxBytes: number): string {
  const buffer = Buffer.alloc(maxBytes);
  let total = 0;
  for (;;) {
    const count = readSync(fd, buffer, total, buffer.length - total, total);
    total += count;
    if (count === 0 || total >= buffer.length) return buffer.subarray(0, total).toString('utf8');
  }
}

export function rewriteRecord(fd: number, text: string): void {
  ftruncateSync(fd, 0);
  writeSync(fd, text, 0);
}

/** Whether the file behind `fd` was unlinked meanwhile (by the run that owned it). */
export const isUnlinked = (fd: number): boolean => fstatSync(fd).nlink === 0;

/** unlink(2); throws when it fails (ENOENT included). */
export const removeFile = (path: string): void => unlinkSync(path);

/** unlink(2); a name that is already gone, or cannot be removed, is left as it is. */
export function removeFileQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

// --- files of another account (the callers switch identity first, src/sys/identity.ts) -------

/** open(2) that gives the errno code instead of throwing; the flags always include O_NOFOLLOW. */
export function openNoFollow(path: string, flags: number, mode?: number): number | { readonly errno: string } {
  try {
    return openSync(path, flags | constants.O_NOFOLLOW | constants.O_NOCTTY, mode);
  } catch (error) {
    return { errno: (error as NodeJS.ErrnoException).code ?? 'EIO' };
  }
}

export const statDescriptorExact = (fd: number): BigIntStats => fstatSync(fd, { bigint: true });

/** Closes a descriptor the shim passed, once what needed it is done. */
export function closeDescriptor(fd: number): void {
  closeSync(fd);
}

/** Reads `fd` from its position into `buffer` until end of file or the buffer is full; the count. */
export function readInto(fd: number, buffer: Buffer): number {
  let total = 0;
  for (;;) {
    const count = readSync(fd, buffer, total, buffer.length - total, null);
    if (count === 0) return total;
    total += count;
    if (total === buffer.length) return total;
  }
}

/** Mode `mode` (the umask may have taken more), then `bytes` from offset 0, then to disk. */
export function replaceContents(fd: number, bytes: Buffer, mode: number): void {
  fchmodSync(fd, mode);
  ftruncateSync(fd, 0);
  for (let offset = 0; offset < bytes.length;) offset += writeSync(fd, bytes, offset, bytes.length - offset, offset);
  fsyncSync(fd);
}

/** rename(2): atomic; replaces a symbolic link at `to`, never the file it points to. */
export const renamePath = (from: string, to: string): void => renameSync(from, to);

// --- gridmapdir links ----------------------------------------------------------------------

/** What glexec needs to know of a gridmapdir entry. */
export interface EntryStatus {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly nlink: number;
  readonly isFile: boolean;
}

/** The file operations a pool lease uses; an interface so that tests can interleave a competitor. */
export interface GridmapdirFs {
  readdir(dir: string): string[];
  /** Throws an error with code ENOENT if the name does not exist. */
  lstat(path: string): EntryStatus;
  link(existingPath: string, newPath: string): void;
  unlink(path: string): void;
  /** rename(2): atomic; throws an error with code ENOENT if `from` does not exist. */
  rename(from: string, to: string): void;
}

/** PRIVILEGE: root's hard links in the gridmapdir (leases), as LCMAPS makes them. */
export const gridmapdirLinks: GridmapdirFs = {
  readdir: (dir) => readdirSync(dir),
  lstat: (path) => {
    // bigint: inode numbers above 2^53 (XFS, NFS) must not compare equal by rounding.
    const st = lstatSync(path, { bigint: true });
    return { dev: st.dev, ino: st.ino, nlink: Number(st.nlink), isFile: st.isFile() };
  },
  link: (existingPath, newPath) => linkSync(existingPath, newPath),
  unlink: (path) => unlinkSync(path),
  rename: (from, to) => renameSync(from, to),
};
