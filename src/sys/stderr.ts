/**
 * The caller's stderr. The shim moved it off descriptor 2 (Node prints its own C++ messages there,
 * such as a failed inspector start, and those must never reach the caller), so glexec writes its
 * one-line messages to the descriptor the shim named, and gives that to the payload as its stderr.
 */
import { fstatSync, readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { childProcess, writeWithDeadline } from './proc';

let callerStderr = 2;

/** Makes `fd` the caller's stderr, for `writeToCaller` and for everything that uses process.stderr. */
export function useCallerStderr(fd: number): void {
  callerStderr = fd;
  // Made at the first use: a run that never writes to process.stderr does not load node:stream (~1.5 ms).
  let stream: Writable | undefined;
  Object.defineProperty(process, 'stderr', {
    configurable: true,
    enumerable: true,
    get: () => (stream ??= callerStderrStream()),
  });
}

function callerStderrStream(): Writable {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Writable } = require('node:stream') as typeof import('node:stream');
  return new Writable({
    write(chunk: Buffer, _encoding, done): void {
      writeToCaller(chunk);
      done();
    },
  });
}

/**
 * Whether a write to the caller's stderr would raise SIGTTOU (a background group on a `tostop`
 * terminal); such a write is skipped (docs/security.md, "Writing to the caller").
 */
function writeWouldStop(): boolean {
  try {
    const terminal = fstatSync(callerStderr);
    if (!terminal.isCharacterDevice()) return false;
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // After the command name: state ppid pgrp session tty_nr tpgid …
    const [, , pgrp, , ttyNr, foreground] = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    if (ttyNr !== terminal.rdev || foreground === pgrp) return false;
    // tcgetattr is allowed from the background; stty reads the terminal on its stdin.
    const settings = childProcess().spawnSync('/usr/bin/stty', ['-a'], {
      stdio: [callerStderr, 'pipe', 'ignore'],
      encoding: 'utf8',
      env: {},
      timeout: 5000,
    });
    return settings.status !== 0 || !/(^|\s)-tostop(\s|$)/.test(settings.stdout);
  } catch {
    return false;
  }
}

/**
 * Best effort, within a deadline (writeWithDeadline): a caller that closed its end, or never
 * drains it, gets nothing, and glexec goes on.
 */
export function writeToCaller(text: string | Buffer): void {
  try {
    if (writeWouldStop()) return;
    writeWithDeadline(callerStderr, text);
  } catch {
    // Nothing more can be done.
  }
}
