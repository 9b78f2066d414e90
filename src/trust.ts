/**
 * The trusted-path walk: every component from `/` to a file must be such that only root (or the
 * few trusted accounts and groups given) can change it. Used for glexec.conf, the grid-mapfile,
 * the log directory and the epilogue. The stat function is injected so the rules can be tested
 * over a fake file system.
 */
import { type Problem, systemError } from './errors';
import { S_IWGRP, S_IWOTH } from './mode-bits';
import type { Stats } from './sys/files';

/** The sticky bit (not in Node's fs.constants). */
const STICKY = 0o1000;

export interface TrustPolicy {
  /** Owners allowed besides root. */
  readonly trustedUids: readonly number[] | TrustedUidsLookup;
  /** Groups whose members may write. Root's group 0 is not trusted unless listed. */
  readonly trustedGids: readonly number[];
  /** What the final component must be. */
  readonly finalType: 'file' | 'directory';
}

export type Lstat = (path: string) => Stats;

/** Why a path is refused: the component, and the rule it broke. One line, for a sysadmin. */
export class UntrustedPath extends Error {
  constructor(
    readonly component: string,
    readonly rule: string,
    /** Which rule, for the fix `glexec --check` suggests. */
    readonly problem: Problem,
  ) {
    super(`${component} ${rule}`);
  }
}

/** Absolute and canonical: no `.`, `..`, empty components (`//`) or trailing slash. */
export function canonicalComponents(path: string): string[] {
  if (!path.startsWith('/')) throw new UntrustedPath(path, 'is not an absolute path', { kind: 'not-canonical', path });
  if (path === '/') return ['/'];
  const names = path.slice(1).split('/');
  const prefixes: string[] = ['/'];
  let prefix = '';
  for (const name of names) {
    if (name === '' || name === '.' || name === '..') {
      throw new UntrustedPath(
        path,
        `is not canonical (it has a ${name === '' ? 'double or trailing /' : `"${name}" component`})`,
        { kind: 'not-canonical', path },
      );
    }
    prefix += `/${name}`;
    prefixes.push(prefix);
  }
  return prefixes;
}

function describeMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/**
 * Owners besides root, looked up only when a component is not root's: the look-up (an account
 * that usually does not exist, through NSS) costs more than the whole walk of a root-owned path.
 */
export type TrustedUidsLookup = () => readonly number[];

/** Checks one component against the policy; throws UntrustedPath naming the rule. */
export function checkComponent(component: string, st: Stats, policy: TrustPolicy): void {
  if (st.isSymbolicLink())
    throw new UntrustedPath(component, 'is a symbolic link (the path must be canonical)', {
      kind: 'symlink',
      path: component,
    });
  if (st.uid !== 0) {
    const trustedUids = typeof policy.trustedUids === 'function' ? policy.trustedUids() : policy.trustedUids;
    if (!trustedUids.includes(st.uid))
      throw new UntrustedPath(
        component,
        `is owned by uid ${st.uid}, not by root${trustedUids.length ? ' or a trusted account' : ''}`,
        { kind: 'owner', path: component },
      );
  }
  if (st.mode & S_IWOTH) {
    const sticky = st.mode & STICKY ? ' (sticky or not)' : '';
    throw new UntrustedPath(component, `is world-writable${sticky} (mode ${describeMode(st.mode)})`, {
      kind: 'writable',
      path: component,
    });
  }
  if (st.mode & S_IWGRP && !policy.trustedGids.includes(st.gid)) {
    throw new UntrustedPath(
      component,
      `is writable by group gid ${st.gid}, which is not trusted (mode ${describeMode(st.mode)})`,
      { kind: 'writable', path: component },
    );
  }
}

/**
 * Walks the path from `/` with lstat and returns the final component's Stats.
 * Throws UntrustedPath (the caller turns it into its own error) or the lstat error.
 */
export function walkTrustedPath(path: string, policy: TrustPolicy, lstat: Lstat): Stats {
  const components = canonicalComponents(path);
  let last: Stats | undefined;
  components.forEach((component, index) => {
    const st = lstat(component);
    checkComponent(component, st, policy);
    const isFinal = index === components.length - 1;
    if (!isFinal && !st.isDirectory())
      throw new UntrustedPath(component, 'is not a directory', {
        kind: 'wrong-type',
        path: component,
        expected: 'directory',
      });
    if (isFinal) {
      if (policy.finalType === 'file' && !st.isFile())
        throw new UntrustedPath(component, 'is not a regular file', {
          kind: 'wrong-type',
          path: component,
          expected: 'file',
        });
      if (policy.finalType === 'directory' && !st.isDirectory())
        throw new UntrustedPath(component, 'is not a directory', {
          kind: 'wrong-type',
          path: component,
          expected: 'directory',
        });
    }
    last = st;
  });
  if (last === undefined) throw new UntrustedPath(path, 'has no components', { kind: 'not-canonical', path });
  return last;
}

/** walkTrustedPath for files the site configures: any refusal is a 202 naming `what`. */
export function requireTrustedPath(what: string, path: string, policy: TrustPolicy, lstat: Lstat, code: string): Stats {
  try {
    return walkTrustedPath(path, policy, lstat);
  } catch (error) {
    if (error instanceof UntrustedPath) {
      throw systemError(code, `${what} ${path} is not trusted: ${error.message}`, undefined, error.problem);
    }
    const reason = error instanceof Error && 'code' in error ? String(error.code) : String(error);
    // lstat's ENOENT names the first component that is missing.
    const missing =
      reason === 'ENOENT'
        ? { kind: 'missing' as const, path: (error as NodeJS.ErrnoException).path ?? path }
        : undefined;
    throw systemError(code, `${what} ${path} cannot be checked: ${reason}`, undefined, missing);
  }
}

export type Readlink = (path: string) => string;

/** Linux's limit on symbolic links followed while resolving one path (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/**
 * The trusted-path walk for a path that the kernel itself resolves, following symbolic links
 * (an interpreter named on a `#!` line, which is often /bin/sh → /usr/bin/dash on merged /usr).
 * Each directory entry on the way is checked as in walkTrustedPath; a symbolic link is allowed,
 * because nobody can change a link, only replace it in its directory, and that directory has
 * passed; its target is then walked the same way. `..` in a link goes back to the parent of a
 * directory that has already passed. Returns the resolved path and its Stats.
 */
export function walkTrustedPathFollowingLinks(
  path: string,
  policy: TrustPolicy,
  lstat: Lstat,
  readlink: Readlink,
): { resolved: string; stats: Stats } {
  if (!path.startsWith('/')) throw new UntrustedPath(path, 'is not an absolute path', { kind: 'not-canonical', path });
  let current = '/';
  let stats = lstat('/');
  checkComponent('/', stats, policy);
  const pending = path.split('/');
  let links = 0;
  while (pending.length > 0) {
    const name = pending.shift() ?? '';
    if (name === '' || name === '.') continue;
    if (!stats.isDirectory())
      throw new UntrustedPath(current, 'is not a directory', {
        kind: 'wrong-type',
        path: current,
        expected: 'directory',
      });
    if (name === '..') {
      current = current === '/' ? '/' : current.slice(0, current.lastIndexOf('/')) || '/';
      stats = lstat(current);
      continue;
    }
    const candidate = current === '/' ? `/${name}` : `${current}/${name}`;
    const st = lstat(candidate);
    if (st.isSymbolicLink()) {
      // /proc/self, /proc/<pid>/root, fd/N: the kernel resolves these by process, not by their text.
      if (candidate.startsWith('/proc/'))
        throw new UntrustedPath(
          candidate,
          'is a link in /proc, which the kernel resolves by process, not by what readlink says',
          { kind: 'symlink', path: candidate },
        );
      links += 1;
      if (links > MAX_SYMLINKS)
        throw new UntrustedPath(path, `has more than ${MAX_SYMLINKS} symbolic links to follow`, {
          kind: 'symlink',
          path,
        });
      const target = readlink(candidate);
      pending.unshift(...target.split('/'));
      if (target.startsWith('/')) {
        current = '/';
        stats = lstat('/');
      }
      continue;
    }
    checkComponent(candidate, st, policy);
    current = candidate;
    stats = st;
  }
  if (policy.finalType === 'file' && !stats.isFile())
    throw new UntrustedPath(current, 'is not a regular file', { kind: 'wrong-type', path: current, expected: 'file' });
  if (policy.finalType === 'directory' && !stats.isDirectory())
    throw new UntrustedPath(current, 'is not a directory', {
      kind: 'wrong-type',
      path: current,
      expected: 'directory',
    });
  return { resolved: current, stats };
}
