/**
 * Looking at files without reading them: the stat calls and mode-bit constants of modules that
 * only decide, so that node:fs stays inside src/sys/ (issue 12).
 */
import { constants, existsSync, fstatSync, lstatSync, readlinkSync, type Stats, statSync } from 'node:fs';

export { constants as fileConstants, type Stats };

/** PRIVILEGE: stat as the current identity, following symlinks; what the path finally names. */
export function statFollowing(path: string): Stats {
  return statSync(path);
}

/** PRIVILEGE: lstat as the current identity; the entry itself, a symlink not followed. */
export function statEntry(path: string): Stats {
  return lstatSync(path);
}

/** The file behind a descriptor already open (checks on what was opened, not on a name). */
export function statDescriptor(fd: number): Stats {
  return fstatSync(fd);
}

/** PRIVILEGE: whether `path` names anything root can see (following symlinks). */
export function pathExists(path: string): boolean {
  return existsSync(path);
}

/** PRIVILEGE: the target of the symlink `path`, read as the current identity. */
export function readLink(path: string): string {
  return readlinkSync(path);
}
