/**
 * Opening files as root without being tricked: no symlink is followed at the last component, a
 * FIFO or device cannot block or be triggered (lstat first, O_NONBLOCK), and the opened file is
 * compared with what was checked, so a rename in between is caught.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';

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
