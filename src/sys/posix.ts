/**
 * The native `posix` addon, loaded by absolute path. In the installed bundle the addon sits next
 * to glexec.js and nothing else is searched (no node_modules walk from a root process); in the
 * development build it comes from node_modules.
 */
import { installedPath } from '../installed';

/** The raw addon's functions that glexec uses (the package's JS wrapper is not bundled). */
export interface PosixAddon {
  getpwnam(user: string | number): { name: string; uid: number; gid: number; dir: string; shell: string };
  getgrnam(group: string | number): { name: string; gid: number; members: string[] };
  openlog(ident: string, option: number, facility: number): void;
  syslog(priority: number, message: string): void;
  closelog(): void;
  update_syslog_constants(target: Record<string, number>): void;
  getrlimit(resource: string): { soft: number | null; hard: number | null };
  setrlimit(resource: string, limits: { soft: number | null; hard: number | null }): void;
  /** The libc calls of the same names; each throws an errno error on failure (ids are int32 in the addon). */
  geteuid(): number;
  getegid(): number;
  seteuid(uid: number): void;
  setegid(gid: number): void;
  setreuid(ruid: number, euid: number): void;
  setregid(rgid: number, egid: number): void;
}

let addon: PosixAddon | undefined;

export function posix(): PosixAddon {
  if (addon === undefined) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = require(installedPath('posix.node', () => require.resolve('posix/build/Release/posix.node'))) as PosixAddon;
  }
  return addon;
}
