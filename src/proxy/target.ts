/**
 * The target proxy of gLExec: a copy of the caller's proxy that the target account owns, for the
 * payload's X509_USER_PROXY.
 *
 * - Source: GLEXEC_SOURCE_PROXY, else the client proxy (GLEXEC_CLIENT_CERT, else X509_USER_PROXY).
 *   gLExec's documentation does not say what 0.9 copies without GLEXEC_SOURCE_PROXY; gsido, which
 *   sets only GLEXEC_CLIENT_CERT and relies on create_target_proxy = yes for a usable
 *   X509_USER_PROXY, shows that the client proxy was copied. The source is checked like the client
 *   proxy (regular file, owned by the caller, no group/other/special bits) and opened with the
 *   caller's identity, never with root's rights.
 * - Destination: GLEXEC_TARGET_PROXY whenever it is set; otherwise, with create_target_proxy = yes,
 *   a new file `/tmp/x509up_u<target uid>.glexec.<16 random hex digits>`, created with O_EXCL, so it
 *   can be neither guessed nor planted in advance. Unlike gLExec's /tmp copy it is not left behind:
 *   the caller of writeTargetProxy gets its inode and removes it after the run
 *   (removeCreatedProxy), and a renewal finds it again through that inode (renewCreatedProxy).
 *   Everything on the destination is done with the target account's identity: glexec can only
 *   create or replace what that account could itself. A file of someone else, a symbolic link or
 *   anything but a regular file is never written to.
 * - GLEXEC_TARGET_PROXY=/dev/null (HTCondor's way to ask for no copy): when /dev/null is the null
 *   character device (1:3), nothing is read or written and the payload's X509_USER_PROXY is
 *   /dev/null. Only that exact path gets this; any other path to a device is refused as before.
 * - Locks (input_lock_mechanism, target_lock_mechanism):
 *   - `flock`: real flock(2) locks, shared on the source while reading it and exclusive on the target
 *     while writing it in place (util-linux flock(1) takes them on glexec's descriptor, see
 *     sys/lock.ts); a lock held by someone else is waited for, at most `waitSeconds`.
 *   - `fcntl`: POSIX record locks cannot be taken without native code, so none is taken. Instead the
 *     source is re-checked after reading (refused if its size, mtime or ctime changed), and
 *     GLEXEC_TARGET_PROXY is replaced atomically: the copy goes to a new file in the same
 *     directory and is rename()d over the path, so a reader sees the old proxy or the new one,
 *     never half of one.
 *   - `disabled`: no lock, as in gLExec (which calls it unsafe): the target is rewritten in place.
 *
 * Every refusal is a 201 (202 for failures of glexec itself) with a one-line message naming the
 * variable and the path.
 */
import { randomBytes } from 'node:crypto';
import { basename, dirname, resolve } from 'node:path';
import type { LockMechanism } from '../config/schema';
import { GlexecError, clientError, systemError } from '../errors';
import { S_IRWXG, S_IRWXO, SPECIAL_MODE_BITS } from '../mode-bits';
import {
  closeDescriptor,
  lstatPath,
  O_CREAT,
  O_EXCL,
  O_NONBLOCK,
  O_RDONLY,
  O_WRONLY,
  openNoFollow,
  readInto,
  removeFile,
  renamePath,
  replaceContents,
  type Stats,
  statDescriptor,
  statDescriptorExact,
} from '../sys/files';
import { type Identity, withEffectiveIdentity } from '../sys/identity';
import { LockTimeout, flockDescriptor } from '../sys/lock';
import { locateProxy } from './read';

/** Where the copy goes when GLEXEC_TARGET_PROXY is not set (fixed: never the caller's TMPDIR). */
export const DEFAULT_TARGET_DIRECTORY = '/tmp';
export const DEFAULT_LOCK_WAIT_SECONDS = 10;
/** The one GLEXEC_TARGET_PROXY that means "make no copy" (HTCondor's glexec scripts set it). */
export const DISCARD_TARGET = '/dev/null';
/** A file by device and inode, which a rename of its name does not change. */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
}

export const sameFile = (st: { readonly dev: number; readonly ino: number }, file: FileIdentity): boolean =>
  st.dev === file.dev && st.ino === file.ino;

/** Linux's null device: character device major 1, minor 3. */
const NULL_DEVICE = { major: 1, minor: 3 };

const MAX_PROXY_BYTES = 256 * 1024;
const PROXY_MODE = 0o600;
// O_NONBLOCK: a FIFO at the path fails (or opens) at once instead of blocking glexec, and a file
// lease makes the open fail instead of waiting. openNoFollow adds O_NOFOLLOW and O_NOCTTY.
const SOURCE_OPEN_FLAGS = O_RDONLY | O_NONBLOCK;
// No O_TRUNC: an existing file is truncated only after it proved to be the target's own.
const TARGET_OPEN_FLAGS = O_WRONLY | O_CREAT | O_NONBLOCK;

export type SourceVariable = 'GLEXEC_SOURCE_PROXY' | 'GLEXEC_CLIENT_CERT' | 'X509_USER_PROXY';

export interface TargetProxyRequest {
  /** The proxy to copy, and the variable that named it. */
  readonly sourceVariable: SourceVariable;
  readonly sourcePath: string;
  /** GLEXEC_TARGET_PROXY; when undefined, a new file in DEFAULT_TARGET_DIRECTORY. */
  readonly targetPath?: string;
  /** create_target_proxy, as configured. */
  readonly createTargetProxy: boolean;
}

export interface TargetProxyLocks {
  /** input_lock_mechanism: the source proxy is read under it. */
  readonly input: LockMechanism;
  /** target_lock_mechanism (or its deprecated alias lock_mechanism): the target is written under it. */
  readonly target: LockMechanism;
  /** How long a flock lock held by someone else is waited for; DEFAULT_LOCK_WAIT_SECONDS if unset. */
  readonly waitSeconds?: number;
}

/** Paths in messages are JSON-quoted, so a newline in a name cannot split a log line. */
const quoted = (path: string): string => JSON.stringify(path);

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

function checkedPath(variable: string, path: string): string {
  if (path === '') throw clientError('target_proxy.empty_name', `${variable} is set but empty`);
  if (!path.startsWith('/'))
    throw clientError('target_proxy.relative_path', `${variable} must be an absolute path, got ${quoted(path)}`);
  return path;
}

/**
 * What the caller asked for, from its environment; undefined when no target proxy is wanted (no
 * GLEXEC_TARGET_PROXY and create_target_proxy = no). A GLEXEC_SOURCE_PROXY or GLEXEC_TARGET_PROXY
 * that is set but empty, or relative, is a 201 whatever create_target_proxy says.
 */
export function targetProxyRequest(
  env: ReadonlyMap<string, string>,
  config: { readonly create_target_proxy: boolean },
  callerCwd = '/',
): TargetProxyRequest | undefined {
  const explicitSource = env.get('GLEXEC_SOURCE_PROXY');
  const targetPath = env.get('GLEXEC_TARGET_PROXY');
  if (explicitSource !== undefined) checkedPath('GLEXEC_SOURCE_PROXY', explicitSource);
  if (targetPath !== undefined) checkedPath('GLEXEC_TARGET_PROXY', targetPath);
  if (targetPath === undefined && !config.create_target_proxy) return undefined;
  const source =
    explicitSource !== undefined
      ? { variable: 'GLEXEC_SOURCE_PROXY' as const, path: explicitSource }
      : clientProxy(env, callerCwd);
  return {
    sourceVariable: source.variable,
    sourcePath: source.path,
    ...(targetPath === undefined ? {} : { targetPath }),
    createTargetProxy: config.create_target_proxy,
  };
}

/** The client proxy; a relative name is taken in the caller's working directory (and read as the caller). */
function clientProxy(env: ReadonlyMap<string, string>, callerCwd: string): { variable: SourceVariable; path: string } {
  try {
    const { variable, path } = locateProxy(env);
    return { variable, path: resolve(callerCwd, path) };
  } catch (error) {
    if (error instanceof GlexecError && error.code === 'proxy.missing') {
      throw clientError(
        'target_proxy.no_source',
        'no proxy to copy for the target: set GLEXEC_SOURCE_PROXY (or GLEXEC_CLIENT_CERT)',
      );
    }
    throw error;
  }
}

/**
 * What writeTargetProxy did: `path` is the payload's X509_USER_PROXY. `named` is a copy at
 * GLEXEC_TARGET_PROXY (the caller's to keep), `created` the /tmp copy of create_target_proxy with
 * the inode glexec made, `discarded` the /dev/null target (nothing written).
 */
export type WrittenTargetProxy =
  | { readonly kind: 'named'; readonly path: string }
  | { readonly kind: 'created'; readonly path: string; readonly file: FileIdentity }
  | { readonly kind: 'discarded'; readonly path: typeof DISCARD_TARGET };

/**
 * The source proxy's bytes, read as the caller under input_lock_mechanism. glexec reads it before
 * its checks, so that a lock the caller holds on its own file can only delay the start of the run,
 * never open a gap between the checks and the payload's start. The caller zeroes the buffer.
 */
export function readTargetProxySource(request: TargetProxyRequest, caller: Identity, locks: TargetProxyLocks): Buffer {
  return readSourceProxy(request, caller, locks.input, checkedWait(locks));
}

/**
 * Copies the source proxy (`source`, from readTargetProxySource, else read here) to the target
 * proxy (see the file comment). The proxy's bytes are held in one buffer, zeroed before return.
 */
export function writeTargetProxy(
  request: TargetProxyRequest,
  caller: Identity,
  target: Identity,
  locks: TargetProxyLocks,
  source?: Buffer,
): WrittenTargetProxy {
  if (target.uid === 0 || target.gid === 0)
    throw systemError('target_proxy.root_target', 'the target proxy is never written as root');
  if (request.targetPath !== undefined) checkedPath('GLEXEC_TARGET_PROXY', request.targetPath);
  if (request.targetPath === DISCARD_TARGET) {
    source?.fill(0);
    requireNullDevice();
    return { kind: 'discarded', path: DISCARD_TARGET };
  }
  const waitSeconds = checkedWait(locks);
  const proxy = source ?? readSourceProxy(request, caller, locks.input, waitSeconds);
  try {
    if (request.targetPath === undefined)
      return { kind: 'created', ...createDefaultTargetProxy(proxy, target, locks.target, waitSeconds) };
    const destination: Destination = {
      path: request.targetPath,
      label: `GLEXEC_TARGET_PROXY ${quoted(request.targetPath)}`,
    };
    if (locks.target === 'fcntl') replaceAtomically(destination, proxy, target);
    else
      writeInPlace(destination, proxy, target, {
        exclusive: false,
        lockSeconds: locks.target === 'flock' ? waitSeconds : undefined,
      });
    return { kind: 'named', path: request.targetPath };
  } finally {
    proxy.fill(0);
  }
}

function checkedWait(locks: TargetProxyLocks): number {
  const waitSeconds = locks.waitSeconds ?? DEFAULT_LOCK_WAIT_SECONDS;
  if (!(waitSeconds > 0 && waitSeconds <= 3600))
    throw systemError('target_proxy.bad_wait', `the lock wait must be between 0 and 3600 seconds, got ${waitSeconds}`);
  return waitSeconds;
}

/** /dev/null must be the null device itself (lstat: a symlink there is refused too). */
function requireNullDevice(): void {
  let st: Stats | undefined;
  try {
    st = lstatPath(DISCARD_TARGET);
  } catch {
    st = undefined;
  }
  const rdev = st?.rdev ?? 0;
  // glibc's dev_t encoding: major in bits 8-19 (and 32-43), minor in bits 0-7 and 20-31.
  const major = (rdev >>> 8) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  if (st === undefined || !st.isCharacterDevice() || major !== NULL_DEVICE.major || minor !== NULL_DEVICE.minor) {
    throw clientError(
      'target_proxy.not_a_file',
      `GLEXEC_TARGET_PROXY ${quoted(DISCARD_TARGET)} is not the null device on this machine; it is not written to`,
    );
  }
}

/**
 * A renewal of the /tmp copy that an earlier run created (see the file comment): the source is
 * read again and written over `copy.path`, as the target, only while the file there is still the
 * inode that run created. Returns the file's identity afterwards (a new inode with
 * target_lock_mechanism = fcntl, which renames a fresh copy into place), or undefined when the
 * file is gone or was replaced: then nothing is written.
 */
export function renewCreatedProxy(
  request: TargetProxyRequest,
  copy: { readonly path: string; readonly file: FileIdentity },
  caller: Identity,
  target: Identity,
  locks: TargetProxyLocks,
): FileIdentity | undefined {
  if (target.uid === 0 || target.gid === 0)
    throw systemError('target_proxy.root_target', 'the target proxy is never written as root');
  const waitSeconds = checkedWait(locks);
  const destination: Destination = {
    path: copy.path,
    label: `target proxy ${quoted(copy.path)} (create_target_proxy)`,
  };
  const proxy = readSourceProxy(request, caller, locks.input, waitSeconds);
  try {
    if (locks.target === 'fcntl') return replaceAtomically(destination, proxy, target, copy.file);
    const opened = openAs(target, copy.path, O_WRONLY | O_NONBLOCK);
    if (typeof opened !== 'number') return undefined;
    try {
      if (!sameFile(statDescriptor(opened), copy.file)) return undefined;
      if (locks.target === 'flock') lockOrRefuse(opened, 'exclusive', waitSeconds, destination.label);
      as(target, () => fillFile(opened, proxy, destination));
      return copy.file;
    } finally {
      closeDescriptor(opened);
    }
  } finally {
    proxy.fill(0);
  }
}

/**
 * Removes the /tmp copy a run created, as the target (only it and root may unlink it in the sticky
 * /tmp), if the name still holds the inode glexec made. Anything else there is left alone.
 */
export function removeCreatedProxy(
  copy: { readonly path: string; readonly file: FileIdentity },
  target: Identity,
): 'removed' | 'gone' | 'replaced' {
  return as(target, () => {
    let st: Stats;
    try {
      st = lstatPath(copy.path);
    } catch {
      return 'gone';
    }
    if (!sameFile(st, copy.file)) return 'replaced';
    try {
      removeFile(copy.path);
      return 'removed';
    } catch {
      return 'gone';
    }
  });
}

// --- acting as an account ------------------------------------------------------------------

/**
 * Runs `fn` as `who`. `fn` turns its own file errors into GlexecErrors (or returns them), so
 * anything else that escapes is a failure to switch identity: glexec's fault, a 202.
 */
function as<T>(who: Identity, fn: () => T): T {
  try {
    return withEffectiveIdentity(who, fn);
  } catch (error) {
    if (error instanceof GlexecError) throw error;
    throw systemError(
      'target_proxy.identity',
      `cannot act as uid ${who.uid} gid ${who.gid}: ${String(error).replace(/\s+/g, ' ')}`,
      error,
    );
  }
}

function errnoOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? 'EIO';
}

/** open(2) with the identity of `who`, never following a link; the errno code instead of an exception. */
function openAs(who: Identity, path: string, flags: number, mode?: number): number | { readonly errno: string } {
  return as(who, () => openNoFollow(path, flags, mode));
}

function lockOrRefuse(fd: number, mode: 'shared' | 'exclusive', waitSeconds: number, label: string): void {
  try {
    flockDescriptor(fd, mode, waitSeconds);
  } catch (error) {
    if (error instanceof LockTimeout)
      throw clientError(
        'target_proxy.locked',
        `${label} is locked by another process (flock, waited ${waitSeconds} s)`,
      );
    throw systemError('target_proxy.lock_failed', `${label} cannot be locked: ${(error as Error).message}`, error);
  }
}

// --- the source ----------------------------------------------------------------------------

function readSourceProxy(
  request: TargetProxyRequest,
  caller: Identity,
  mechanism: LockMechanism,
  waitSeconds: number,
): Buffer {
  const label = `${request.sourceVariable} ${quoted(request.sourcePath)}`;
  const refuse = (code: string, why: string): never => {
    throw clientError(`target_proxy.${code}`, `${label} ${why}`);
  };
  // The caller's identity decides whether the file can be opened at all: root's rights never do.
  const opened = openAs(caller, checkedPath(request.sourceVariable, request.sourcePath), SOURCE_OPEN_FLAGS);
  if (typeof opened !== 'number') {
    if (opened.errno === 'ENOENT') return refuse('source_missing', 'does not exist');
    if (opened.errno === 'ELOOP') return refuse('source_symlink', 'is a symbolic link; give the file itself');
    return refuse('source_unreadable', `cannot be opened by the caller (uid ${caller.uid}): ${opened.errno}`);
  }
  const fd = opened;
  try {
    const before = statDescriptorExact(fd);
    const mode = Number(before.mode);
    if (!before.isFile()) refuse('source_not_a_file', 'is not a regular file');
    if (before.uid !== BigInt(caller.uid))
      refuse('source_wrong_owner', `is owned by uid ${before.uid}, not by the caller (uid ${caller.uid})`);
    if (mode & (S_IRWXG | S_IRWXO | SPECIAL_MODE_BITS)) {
      refuse(
        'source_bad_mode',
        `has mode ${octal(mode)}: group, other and special bits are not allowed (use chmod 600)`,
      );
    }
    if (before.size === 0n) refuse('source_empty', 'is empty');
    if (before.size > BigInt(MAX_PROXY_BYTES)) refuse('source_too_large', `is larger than ${MAX_PROXY_BYTES} bytes`);
    if (mechanism === 'flock') lockOrRefuse(fd, 'shared', waitSeconds, label);
    const contents = readAll(fd, label);
    if (mechanism === 'fcntl') {
      // No fcntl read lock can be taken (see the file comment): refuse a copy that may be torn.
      const after = statDescriptorExact(fd);
      if (
        after.size !== before.size ||
        after.mtimeNs !== before.mtimeNs ||
        after.ctimeNs !== before.ctimeNs ||
        BigInt(contents.length) !== after.size
      ) {
        contents.fill(0);
        refuse('source_changed', 'changed while it was being read; try again');
      }
    }
    return contents;
  } finally {
    closeDescriptor(fd); // also releases the shared flock lock
  }
}

/** The whole file in one zero-initialised buffer, so that zeroing it later erases every copy. */
function readAll(fd: number, label: string): Buffer {
  const buffer = Buffer.alloc(MAX_PROXY_BYTES + 1);
  let total: number;
  try {
    total = readInto(fd, buffer);
  } catch (error) {
    buffer.fill(0);
    throw clientError('target_proxy.source_unreadable', `${label} cannot be read: ${errnoOf(error)}`);
  }
  if (total > MAX_PROXY_BYTES) {
    buffer.fill(0);
    throw clientError('target_proxy.source_too_large', `${label} is larger than ${MAX_PROXY_BYTES} bytes`);
  }
  if (total === 0) throw clientError('target_proxy.source_empty', `${label} is empty`);
  return buffer.subarray(0, total);
}

// --- the target ----------------------------------------------------------------------------

interface Destination {
  readonly path: string;
  readonly label: string;
}

function refuseDestination(destination: Destination, code: string, why: string): never {
  throw clientError(`target_proxy.${code}`, `${destination.label} ${why}`);
}

/** Turns the errno of opening or creating the destination (as the target) into a 201. */
function refuseOpen(destination: Destination, errno: string, target: Identity): never {
  switch (errno) {
    case 'ENOENT':
      return refuseDestination(
        destination,
        'no_directory',
        `cannot be created: directory ${quoted(dirname(destination.path))} does not exist`,
      );
    case 'ENOTDIR':
      return refuseDestination(
        destination,
        'no_directory',
        'cannot be created: a component of its directory is not a directory',
      );
    case 'ELOOP':
      return refuseDestination(destination, 'symlink', 'is a symbolic link; glexec neither follows nor replaces it');
    case 'EISDIR':
      return refuseDestination(destination, 'not_a_file', 'is a directory');
    case 'ENXIO':
      return refuseDestination(destination, 'not_a_file', 'is not a regular file');
    case 'EAGAIN':
    case 'EWOULDBLOCK':
      return refuseDestination(destination, 'busy', 'is in use (a lease is held on it)');
    default:
      return refuseDestination(
        destination,
        'not_writable',
        `cannot be written by the target account (uid ${target.uid}): ${errno}`,
      );
  }
}

/** Refuses anything at the destination that is not a regular file of the target account. */
function checkExisting(destination: Destination, st: Stats, target: Identity): void {
  if (st.isSymbolicLink())
    refuseDestination(destination, 'symlink', 'is a symbolic link; glexec neither follows nor replaces it');
  if (!st.isFile())
    refuseDestination(destination, 'not_a_file', 'exists and is not a regular file; it is not overwritten');
  if (st.uid !== target.uid) {
    refuseDestination(
      destination,
      'wrong_owner',
      `exists and is owned by uid ${st.uid}, not by the target account (uid ${target.uid}); it is never overwritten`,
    );
  }
}

/** Mode 0600 (the umask may have taken more), then the bytes from offset 0, then to disk. Runs as the target. */
function fillFile(fd: number, proxy: Buffer, destination: Destination): void {
  try {
    replaceContents(fd, proxy, PROXY_MODE);
  } catch (error) {
    refuseDestination(destination, 'write_failed', `cannot be written: ${errnoOf(error)}`);
  }
}

/**
 * Opens (creating if needed, or only creating with `exclusive`) as the target, checks the opened
 * file, optionally takes the exclusive flock lock, and rewrites it. With `exclusive`, false means
 * the name already existed.
 */
function writeInPlace(
  destination: Destination,
  proxy: Buffer,
  target: Identity,
  options: { exclusive: boolean; lockSeconds: number | undefined },
): FileIdentity | undefined {
  const opened = openAs(target, destination.path, TARGET_OPEN_FLAGS | (options.exclusive ? O_EXCL : 0), PROXY_MODE);
  if (typeof opened !== 'number') {
    if (options.exclusive && opened.errno === 'EEXIST') return undefined;
    return refuseOpen(destination, opened.errno, target);
  }
  const fd = opened;
  let written = false;
  try {
    const st = statDescriptor(fd);
    checkExisting(destination, st, target);
    if (options.lockSeconds !== undefined) lockOrRefuse(fd, 'exclusive', options.lockSeconds, destination.label);
    as(target, () => fillFile(fd, proxy, destination));
    written = true;
    return { dev: st.dev, ino: st.ino };
  } finally {
    closeDescriptor(fd); // also releases the exclusive flock lock
    // A file this call created must not stay behind empty or half written.
    if (options.exclusive && !written) removeAs(target, destination.path);
  }
}

/** Removes a file this module created, as the target (in a sticky directory only it and root may). */
function removeAs(target: Identity, path: string): void {
  as(target, () => {
    try {
      removeFile(path);
    } catch {
      // Already gone: nothing to clean up.
    }
  });
}

/** The file for create_target_proxy: a fresh, unguessable name, created with O_EXCL. */
function createDefaultTargetProxy(
  proxy: Buffer,
  target: Identity,
  mechanism: LockMechanism,
  waitSeconds: number,
): { path: string; file: FileIdentity } {
  // Three tries: a clash of 64 random bits means something planted names on purpose.
  for (let attempt = 0; attempt < 3; attempt++) {
    const path = `${DEFAULT_TARGET_DIRECTORY}/x509up_u${target.uid}.glexec.${randomBytes(8).toString('hex')}`;
    const destination = { path, label: `target proxy ${quoted(path)} (create_target_proxy)` };
    // Nobody else can have a file open that did not exist a moment ago, so fcntl needs no rename here.
    const file = writeInPlace(destination, proxy, target, {
      exclusive: true,
      lockSeconds: mechanism === 'flock' ? waitSeconds : undefined,
    });
    if (file !== undefined) return { path, file };
  }
  throw systemError(
    'target_proxy.no_free_name',
    `no unused file name for the target proxy in ${DEFAULT_TARGET_DIRECTORY}`,
  );
}

/**
 * For target_lock_mechanism = fcntl: the copy is written to a new file next to the destination
 * and renamed over it, after checking that what is there now is the target's own regular file.
 * Both run as the target, so even if the name is swapped between the check and the rename, the
 * rename only replaces what the target account could delete itself (a sticky /tmp protects the
 * files of others); and rename() replaces a symbolic link, never the file it points to.
 * With `expected` (a renewal of glexec's own /tmp copy), nothing is written unless the name still
 * holds that inode; the identity of the file renamed into place is returned.
 */
function replaceAtomically(
  destination: Destination,
  proxy: Buffer,
  target: Identity,
  expected?: FileIdentity,
): FileIdentity | undefined {
  const existing = as(target, () => {
    try {
      return lstatPath(destination.path);
    } catch (error) {
      return { errno: errnoOf(error) };
    }
  });
  if ('errno' in existing) {
    if (expected !== undefined) return undefined;
    if (existing.errno !== 'ENOENT') refuseOpen(destination, existing.errno, target);
  } else if (expected !== undefined) {
    if (!sameFile(existing, expected)) return undefined;
  } else {
    checkExisting(destination, existing, target);
  }
  const temporary = `${dirname(destination.path)}/.${basename(destination.path)}.glexec-${randomBytes(8).toString('hex')}`;
  const opened = openAs(target, temporary, TARGET_OPEN_FLAGS | O_EXCL, PROXY_MODE);
  if (typeof opened !== 'number') refuseOpen(destination, opened.errno, target);
  const fd = opened;
  let renamed = false;
  try {
    const st = statDescriptor(fd);
    as(target, () => {
      fillFile(fd, proxy, destination);
      try {
        renamePath(temporary, destination.path);
        renamed = true;
      } catch (error) {
        refuseDestination(
          destination,
          'not_writable',
          `cannot be replaced by the target account (uid ${target.uid}): ${errnoOf(error)}`,
        );
      }
    });
    return { dev: st.dev, ino: st.ino };
  } finally {
    closeDescriptor(fd);
    if (!renamed) removeAs(target, temporary);
  }
}
