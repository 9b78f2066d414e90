/**
 * Who called glexec. The shim recorded the caller's ids, groups and working directory before it
 * became root, and copied the caller's environment into a memory file; here that becomes data.
 * The shim's own arguments (before `--`) are trusted; everything after `--` is the caller's.
 */
import { readAllAndClose } from './sys/files';
import { asGid, asUid, findAccount, findGroup, type Gid, type Identity, type Uid } from './sys/identity';
import { systemError } from './errors';
import { parseCallerLimits } from './caller-limits';
import type { LiftedResource, Limit } from './sys/rlimit';

export interface ShimArgs {
  readonly configPath: string;
  readonly callerUid: Uid;
  readonly callerGid: Gid;
  readonly callerGroups: readonly Gid[];
  readonly callerCwd: string;
  /** The caller's working directory, opened by the shim with the caller's ids (O_PATH). */
  readonly cwdFd: number | undefined;
  /** The caller's stderr: the shim moved it off descriptor 2, where Node's own messages go. */
  readonly stderrFd: number | undefined;
  readonly envFd: number | undefined;
  /** The caller's proxy, opened by the shim with the caller's ids: a descriptor, or the errno of the open. */
  readonly proxy: { readonly fd: number } | { readonly errno: number } | undefined;
  /** The caller's resource limits that the shim lifted for glexec itself. */
  readonly callerLimits: ReadonlyMap<LiftedResource, Limit>;
  /** The caller's own arguments, unchanged. */
  readonly argv: readonly string[];
  /** Which of the monitor's two phases this process is (docs/architecture.md), and its plan's descriptor. */
  readonly phase: 'decide' | 'conclude' | undefined;
  readonly planFd: number | undefined;
  /** Phase 2's write end of the monitor's "done" pipe. */
  readonly doneFd: number | undefined;
}

export interface Caller extends Identity {
  readonly name: string;
  readonly groupName: string;
  readonly cwd: string;
  /** The working directory itself (the shim's descriptor): the payload enters it, not `cwd`. */
  readonly cwdFd: number | undefined;
  readonly stderrFd: number | undefined;
  readonly env: ReadonlyMap<string, string>;
  readonly limits: ReadonlyMap<LiftedResource, Limit>;
  readonly proxy: ShimArgs['proxy'];
}

const MAX_ENV_BYTES = 16 * 1024 * 1024;

function idArg(value: string | undefined, name: string): number {
  if (value === undefined || !/^\d{1,10}$/.test(value))
    throw systemError('shim.bad_args', `glexec was not started by its shim (bad ${name})`);
  return Number(value);
}

/** A descriptor the shim passed; -1 (it could not open it) or none is undefined. */
function fdArg(value: string | undefined, name: string): number | undefined {
  return value === undefined || value === '-1' ? undefined : idArg(value, name);
}

function proxyArg(named: ReadonlyMap<string, string>): ShimArgs['proxy'] {
  const fd = named.get('caller-proxy-fd');
  if (fd !== undefined) return { fd: idArg(fd, 'proxy descriptor') };
  const errno = named.get('caller-proxy-errno');
  return errno === undefined ? undefined : { errno: idArg(errno, 'proxy errno') };
}

function phaseArg(value: string | undefined): ShimArgs['phase'] {
  if (value === undefined || value === 'decide' || value === 'conclude') return value;
  throw systemError('shim.bad_args', 'glexec was not started by its shim (bad phase)');
}

/** Parses what the setuid shim passed; anything unexpected means glexec.js was not run by it. */
export function parseShimArgs(args: readonly string[]): ShimArgs {
  const separator = args.indexOf('--');
  if (separator < 0) throw systemError('shim.bad_args', 'glexec was not started by its shim (no -- in its arguments)');
  const named = new Map<string, string>();
  for (const arg of args.slice(0, separator)) {
    const match = /^--([a-z-]+)=(.*)$/s.exec(arg);
    if (!match) throw systemError('shim.bad_args', 'glexec was not started by its shim (unexpected argument)');
    named.set(match[1] ?? '', match[2] ?? '');
  }
  const groups = named.get('caller-groups') ?? '';
  const envFd = named.get('caller-env-fd');
  return {
    configPath: named.get('config') ?? '',
    callerUid: asUid(idArg(named.get('caller-uid'), 'caller uid')),
    callerGid: asGid(idArg(named.get('caller-gid'), 'caller gid')),
    callerGroups: groups === '' ? [] : groups.split(',').map((gid) => asGid(idArg(gid, 'caller groups'))),
    callerCwd: named.get('caller-cwd') ?? '',
    cwdFd: fdArg(named.get('caller-cwd-fd'), 'working directory descriptor'),
    stderrFd: fdArg(named.get('caller-stderr-fd'), 'stderr descriptor'),
    envFd: envFd === undefined ? undefined : idArg(envFd, 'environment descriptor'),
    callerLimits: parseCallerLimits(named.get('caller-rlimits') ?? ''),
    proxy: proxyArg(named),
    argv: args.slice(separator + 1),
    phase: phaseArg(named.get('phase')),
    planFd: fdArg(named.get('plan-fd'), 'plan descriptor'),
    // "none" in phase 1, which has no "done" pipe.
    doneFd: named.get('done-fd') === 'none' ? undefined : fdArg(named.get('done-fd'), 'done descriptor'),
  };
}

/** NUL-separated `NAME=value` entries; the first of a repeated name wins, as getenv(3) does. */
export function parseEnvironmentBlock(block: Buffer): Map<string, string> {
  const env = new Map<string, string>();
  for (const entry of block.toString('utf8').split('\0')) {
    const equals = entry.indexOf('=');
    if (equals <= 0) continue;
    const name = entry.slice(0, equals);
    if (!env.has(name)) env.set(name, entry.slice(equals + 1));
  }
  return env;
}

/** Who the caller is, from the ids the shim recorded: all the white lists need, and nothing the caller wrote. */
export type CallerAccount = Pick<Caller, 'uid' | 'gid' | 'groups' | 'name' | 'groupName'>;

export function callerAccount(shim: ShimArgs): CallerAccount {
  return {
    uid: shim.callerUid,
    gid: shim.callerGid,
    groups: shim.callerGroups,
    name: findAccount(shim.callerUid)?.name ?? String(shim.callerUid),
    groupName: findGroup(shim.callerGid)?.name ?? String(shim.callerGid),
  };
}

/** The whole caller, its environment included: read only once the white lists let it in. */
export function identifyCaller(shim: ShimArgs, account: CallerAccount = callerAccount(shim)): Caller {
  const env =
    shim.envFd === undefined
      ? new Map<string, string>()
      : parseEnvironmentBlock(readAllAndClose(shim.envFd, MAX_ENV_BYTES));
  return {
    ...account,
    cwd: shim.callerCwd,
    cwdFd: shim.cwdFd,
    stderrFd: shim.stderrFd,
    env,
    limits: shim.callerLimits,
    proxy: shim.proxy,
  };
}
