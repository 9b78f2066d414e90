/**
 * The files root reads and creates, opened so that it cannot be tricked (docs/security.md,
 * "Reading files as root" and "Files root creates").
 */
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  readdirSync,
  rmSync,
  type Stats,
  writeSync,
} from 'node:fs';
import { systemError } from '../errors';
import { requireTrustedPath, type TrustPolicy } from '../trust';

// Node opens every file with O_CLOEXEC already.
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

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

/** Closes a descriptor the shim passed, once what needed it is done. */
export function closeDescriptor(fd: number): void {
  closeSync(fd);
}

/** The names in a directory root reads (the vomsdir's host certificates), at most `max` of them. */
export function listDirectory(directory: string, max: number): string[] {
  const names = readdirSync(directory);
  if (names.length > max) throw new FileTooLarge(`${directory} holds more than ${max} entries`);
  return names;
}
