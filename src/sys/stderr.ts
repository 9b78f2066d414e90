/**
 * The caller's stderr. The shim moved it off descriptor 2 (Node prints its own C++ messages there,
 * such as a failed inspector start, and those must never reach the caller), so glexec writes its
 * one-line messages to the descriptor the shim named, and gives that to the payload as its stderr.
 */
import { writeSync } from 'node:fs';
import { Writable } from 'node:stream';

let callerStderr = 2;

/** Makes `fd` the caller's stderr, for `writeToCaller` and for everything that uses process.stderr. */
export function useCallerStderr(fd: number): void {
  callerStderr = fd;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done): void {
      writeToCaller(chunk);
      done();
    },
  });
  Object.defineProperty(process, 'stderr', { configurable: true, enumerable: true, get: () => stream });
}

export function callerStderrFd(): number {
  return callerStderr;
}

/** Best effort: a caller that closed its end gets nothing, and glexec goes on. */
export function writeToCaller(text: string | Buffer): void {
  try {
    writeSync(callerStderr, typeof text === 'string' ? Buffer.from(text) : text);
  } catch {
    // Nothing more can be done.
  }
}
