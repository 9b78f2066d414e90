/**
 * The epilogue: a trusted-root program the site runs after every payload, as root or as
 * epilogue_user:epilogue_group, with stdio on /dev/null, the payload's cleaned environment plus
 * GLEXEC_EPILOG_* variables, and a timeout (SIGTERM to its process group, SIGKILL after kill_grace).
 *
 * Its path, and every interpreter that runs it (interpreters.ts), is trust-walked twice: before
 * the payload starts (a broken setting is a 202 before anything runs) and again just before it
 * runs. It is then run by its configured path, as gLExec ran it, so that a script's $0 is that
 * path. The walk is what closes the time between the check and the exec: it proves that only
 * root (or epilogue_user and epilogue_group, who may rewrite the epilogue anyway) can change the
 * file, its interpreters, or any directory above them, so nobody else can swap one in between;
 * an interpreter that opens the script by its path gets the same file for the same reason.
 *
 * When the payload left nothing, the C monitor runs the epilogue itself (docs/architecture.md,
 * "The epilogue in the monitor"): phase 1 walks it twice and hands over what the walks saw of
 * every component (monitorEpilogueWatch); the monitor runs it only if none of them changed since,
 * so the second walk is still true at the exec; any change leaves the epilogue to phase 2's walk.
 */
import { basename } from 'node:path';
import type { Caller } from './caller';
import { monotonicMs, sleep } from './clock';
import type { Config } from './config/schema';
import { systemError } from './errors';
import { SLOT_BYTE } from './log/logger';
import { type Ending, endingOfWaitStatus, rawReturnCode } from './exitcode';
import { endProcesses, groupMembersOf, waitForExit } from './linger';
import { mayRun, UntrustedProgram, walkInterpreters } from './interpreters';
import { lstatPath, lstatPathExact, type Stats } from './sys/files';
import { findAccount, findGroup, type Gid, ROOT_GID, type Uid } from './sys/identity';
import { glexecProcessIds } from './sys/handover';
import { helperStatus, parseHelperStatus, signalGroup, spawnEpilogueProgram } from './sys/proc';
import { type MonitorEpilogueRun, type WatchedPath, watchedPathLine } from './plan';
import type { Target } from './target';
import { type Lstat, requireTrustedPath, type TrustPolicy } from './trust';

export interface EpilogueRunner {
  readonly path: string;
  readonly uid: Uid;
  readonly gid: Gid;
  readonly user: string;
  readonly group: string;
  readonly home: string;
  readonly policy: TrustPolicy;
}

export type EpilogueOutcome =
  | { readonly result: 'ok'; readonly exitCode: 0 }
  | { readonly result: 'failed'; readonly exitCode?: number; readonly signal?: string; readonly reason: string }
  | { readonly result: 'timed_out'; readonly forcefullyKilled: boolean; readonly reason: string };

export interface EpilogueReport {
  readonly outcome: EpilogueOutcome;
  readonly durationMs: number;
  /** What the epilogue left in its process group after it exited. */
  readonly leftovers: 'none' | 'terminated' | 'killed';
}

/** Who runs the epilogue, and whom its trust walk trusts besides root. Undefined: no epilogue. */
export function resolveEpilogueRunner(config: Config): EpilogueRunner | undefined {
  const customIdentity = config.epilogue_user !== 'root' || config.epilogue_group !== '';
  if (customIdentity && config.user_identity_switch_by !== 'glexec') {
    throw systemError(
      'epilogue.needs_glexec_switch',
      'epilogue_user and epilogue_group can only be used with user_identity_switch_by = glexec',
    );
  }
  if (config.epilogue === '') return undefined;
  const account = findAccount(config.epilogue_user);
  if (account === undefined)
    throw systemError('epilogue.bad_user', `epilogue_user '${config.epilogue_user}' does not exist`);
  let gid = ROOT_GID;
  if (config.epilogue_group !== '') {
    const group = findGroup(config.epilogue_group);
    if (group === undefined)
      throw systemError('epilogue.bad_group', `epilogue_group '${config.epilogue_group}' does not exist`);
    gid = group.gid;
  }
  return {
    path: config.epilogue,
    uid: account.uid,
    gid,
    user: account.name,
    group: findGroup(gid)?.name ?? String(gid),
    home: account.home,
    policy: {
      trustedUids: account.uid === 0 ? [] : [account.uid],
      trustedGids: config.epilogue_group === '' ? [] : [gid],
      finalType: 'file',
    },
  };
}

export interface EpilogueCheck {
  readonly stats: Stats;
  /** The interpreters that run it, resolved, in the order they run (empty for a binary). */
  readonly interpreters: readonly string[];
}

/**
 * The trust walk and the execute check of the epilogue and of every interpreter that runs it; a
 * refusal is a 202 naming the program, the component and the rule.
 */
export function checkEpilogue(runner: EpilogueRunner, lstat: Lstat = lstatPath): EpilogueCheck {
  const stats = requireTrustedPath('epilogue', runner.path, runner.policy, lstat, 'epilogue.untrusted');
  if (!mayRun(stats, runner))
    throw systemError('epilogue.not_executable', `epilogue ${runner.path} is not executable by ${runner.user}`);
  try {
    return {
      stats,
      interpreters: walkInterpreters(runner.path, stats, {
        policy: runner.policy,
        runner,
        searchPath: EPILOGUE_PATH,
        lstat,
      }),
    };
  } catch (error) {
    if (error instanceof UntrustedProgram)
      throw systemError('epilogue.untrusted', `epilogue ${runner.path} is not trusted: ${error.message}`);
    const reason = error instanceof Error && 'code' in error ? String(error.code) : String(error);
    throw systemError('epilogue.untrusted', `epilogue ${runner.path} cannot be checked: ${reason}`);
  }
}

/**
 * A payload account that could change the epilogue, or signal it, is refused before the payload
 * starts: epilogue_user itself (it may own the epilogue, its HOME is the epilogue's, and its
 * leftovers could kill the epilogue), or a member of epilogue_group (who may write it).
 */
export function refuseTargetThatControlsEpilogue(
  runner: EpilogueRunner,
  target: Pick<Target, 'name' | 'uid' | 'gid' | 'groups'>,
): void {
  if (target.uid === runner.uid) {
    throw systemError(
      'epilogue.target_is_epilogue_user',
      `the payload account ${target.name} is epilogue_user, whom the epilogue trusts; map the job to another account or set another epilogue_user`,
    );
  }
  if (runner.policy.trustedGids.some((gid) => gid === target.gid || target.groups.some((group) => group === gid))) {
    throw systemError(
      'epilogue.target_in_epilogue_group',
      `the payload account ${target.name} is in epilogue_group ${runner.group}, whose members may change the epilogue; map the job to another account or set another epilogue_group`,
    );
  }
}

export interface EpilogueContext {
  /** GLEXEC_EPILOG_* variables of the containment (cgroup, leftover count and list). */
  readonly containmentVariables: Readonly<Record<string, string>>;
  readonly caller: Caller;
  readonly target: Target;
  readonly payloadPath: string;
  readonly payloadArgs: readonly string[];
  readonly payloadPid: number;
  readonly ending: Ending;
  /** The glexec process (the monitor): given, never read from our own ppid, which changes if it dies. */
  readonly glexecPid: number;
}

/**
 * The trust walk (checkEpilogue), recording what it looked at, for the monitor to see later that
 * nothing of it changed: every path the walk of the epilogue and of its interpreters lstat'ed
 * (symbolic links included), lstat'ed again exactly (shim/epilogue.c compares device, inode,
 * owner, group and mode, and for all but directories the ctime, which any write changes). Throws
 * as checkEpilogue does; undefined for an epilogue that env runs (a program added to its PATH
 * later would come first: phase 2 walks it again).
 */
export function walkEpilogueWatched(runner: EpilogueRunner): WatchedPath[] | undefined {
  const seen = new Map<string, WatchedPath>();
  const { interpreters } = checkEpilogue(runner, (path) => {
    const stats = lstatPath(path);
    const { dev, ino, ctimeNs, uid, gid, mode } = lstatPathExact(path);
    seen.set(path, { dev, ino, ctimeNs, uid, gid, mode, path });
    return stats;
  });
  return interpreters.some((path) => basename(path) === 'env') ? undefined : [...seen.values()];
}

/**
 * What the monitor watches of the epilogue: the `first` walk's look (walkEpilogueWatched, before
 * the payload's checks), when a second walk now looks exactly the same; undefined (phase 2 then
 * runs the epilogue, walking it again) when there is none, a walk fails, or the two differ.
 */
export function monitorEpilogueWatch(
  runner: EpilogueRunner,
  first: readonly WatchedPath[] | undefined,
): WatchedPath[] | undefined {
  if (first === undefined || first.length === 0) return undefined;
  try {
    const second = walkEpilogueWatched(runner);
    const same =
      second?.length === first.length &&
      second.every((again, index) => {
        const seen = first[index];
        return seen !== undefined && watchedPathLine(again) === watchedPathLine(seen);
      });
    return same ? [...first] : undefined;
  } catch {
    return undefined;
  }
}

/** The GLEXEC_EPILOG_* variables of the containment: the payload's cgroup, its FQANs, its leftovers' count and list. */
export function epilogueContainmentVariables(
  cgroup: string | undefined,
  target: Pick<Target, 'fqans'>,
  leftovers: { readonly count: number; readonly file: string } | undefined,
): Record<string, string> {
  return {
    ...(cgroup === undefined ? {} : { GLEXEC_EPILOG_TARGET_CGROUP: cgroup }),
    ...(target.fqans === undefined ? {} : { GLEXEC_EPILOG_TARGET_FQANS: target.fqans.join(',') }),
    ...(leftovers
      ? { GLEXEC_EPILOG_LEFTOVER_COUNT: String(leftovers.count), GLEXEC_EPILOG_LEFTOVER_FILE: leftovers.file }
      : {}),
  };
}

/** In the monitor's epilogue environment, what stands for the payload's pid, group and return code. */
const MONITOR_EPILOGUE_SLOTS = {
  GLEXEC_EPILOG_TARGET_PID: `${SLOT_BYTE}I`,
  GLEXEC_EPILOG_TARGET_PGID: `${SLOT_BYTE}G`,
  GLEXEC_EPILOG_TARGET_RC: `${SLOT_BYTE}R`,
};

/**
 * The epilogue's environment as the monitor gets it: the one runEpilogue gives it, with the three
 * values known only once the payload has ended as slots (MONITOR_EPILOGUE_SLOTS, which
 * shim/epilogue.c fills in). Undefined when any other value holds the slot byte.
 */
export function monitorEpilogueEnvironment(
  runner: EpilogueRunner,
  payloadEnv: Record<string, string>,
  context: Omit<EpilogueContext, 'payloadPid' | 'ending'>,
): string[] | undefined {
  const variables = epilogueVariables({ ...context, payloadPid: 0, ending: { code: 0 } }, runner.path);
  // Assigned over the existing names, so the order of the variables stays runEpilogue's.
  Object.assign(variables, MONITOR_EPILOGUE_SLOTS);
  const env = Object.entries(epilogueEnvironment(runner, payloadEnv, variables)).map(
    ([name, value]) => `${name}=${value}`,
  );
  const slotted = env.filter((entry) => entry.includes(SLOT_BYTE));
  const expected = Object.entries(MONITOR_EPILOGUE_SLOTS).map(([name, slot]) => `${name}=${slot}`);
  return slotted.length === expected.length && slotted.every((entry) => expected.includes(entry)) ? env : undefined;
}

const colonList = (gids: readonly number[], primary: number): string => gids.filter((gid) => gid !== primary).join(':');

/** The GLEXEC_EPILOG_* variables of gLExec 0.9, plus ARGC and PATH (ours). */
export function epilogueVariables(context: EpilogueContext, epiloguePath: string): Record<string, string> {
  const { caller, target } = context;
  const argv = [context.payloadPath, ...context.payloadArgs];
  const self = glexecProcessIds(context.glexecPid);
  const variables: Record<string, string> = {
    GLEXEC_EPILOG_ARGC: String(argv.length),
    GLEXEC_EPILOG_GLEXEC_USER: caller.name,
    GLEXEC_EPILOG_GLEXEC_GROUP: caller.groupName,
    GLEXEC_EPILOG_GLEXEC_UID: String(caller.uid),
    GLEXEC_EPILOG_GLEXEC_GID: String(caller.gid),
    GLEXEC_EPILOG_GLEXEC_SGIDS: colonList(caller.groups, caller.gid),
    GLEXEC_EPILOG_TARGET_USER: target.name,
    GLEXEC_EPILOG_TARGET_GROUP: target.groupName,
    GLEXEC_EPILOG_TARGET_UID: String(target.uid),
    GLEXEC_EPILOG_TARGET_GID: String(target.gid),
    GLEXEC_EPILOG_TARGET_SGIDS: colonList(target.groups, target.gid),
    GLEXEC_EPILOG_GLEXEC_PID: String(self.pid),
    GLEXEC_EPILOG_GLEXEC_SID: String(self.sid),
    GLEXEC_EPILOG_GLEXEC_PGID: String(self.pgid),
    GLEXEC_EPILOG_TARGET_PID: String(context.payloadPid),
    GLEXEC_EPILOG_TARGET_PGID: String(context.payloadPid),
    GLEXEC_EPILOG_TARGET_RC: String(rawReturnCode(context.ending)),
    GLEXEC_EPILOG_PATH: epiloguePath,
    ...context.containmentVariables,
  };
  // ARGC stays the true count; ARGVn are passed while they fit in MAX_EPILOGUE_ARGV_BYTES.
  let argvBytes = 0;
  for (const [index, arg] of argv.entries()) {
    const name = `GLEXEC_EPILOG_ARGV${index}`;
    argvBytes += environmentEntryBytes(name, arg);
    if (argvBytes > MAX_EPILOGUE_ARGV_BYTES) break;
    variables[name] = arg;
  }
  return variables;
}

/**
 * The most the GLEXEC_EPILOG_ARGVn variables may take together (as `NAME=value\0`): the payload's
 * argv is the caller's, and passed whole it could make the epilogue's exec fail with E2BIG.
 */
export const MAX_EPILOGUE_ARGV_BYTES = 64 * 1024;

/** What one `NAME=value` entry takes in an exec's environment, its NUL included. */
export function environmentEntryBytes(name: string, value: string): number {
  return Buffer.byteLength(name) + 1 + Buffer.byteLength(value) + 1;
}

/** The PATH of every epilogue: never the caller's, which would choose the programs root runs. */
export const EPILOGUE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * The payload's cleaned environment, less what could steer a program that runs as root: only the
 * caller's GLEXEC_* variables (data no program interprets) are kept; the site's
 * preserve_env_variables (PYTHONPATH, PERL5LIB, …) are not; HOME, USER and LOGNAME are the
 * epilogue account's (a HOME the payload owns would let it plant ~/.local/lib/python3/…, .bashrc);
 * PATH is fixed. Then the GLEXEC_EPILOG_* variables.
 */
export function epilogueEnvironment(
  runner: Pick<EpilogueRunner, 'user' | 'home'>,
  payloadEnv: Record<string, string>,
  variables: Record<string, string>,
): Record<string, string> {
  const env: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(payloadEnv)) {
    if (name.startsWith('GLEXEC_') && !name.startsWith('GLEXEC_EPILOG_')) env[name] = value;
  }
  return Object.assign(
    env,
    { HOME: runner.home, USER: runner.user, LOGNAME: runner.user, PATH: EPILOGUE_PATH },
    variables,
  );
}

/** Runs the epilogue to its end (or its timeout) and reports; never throws for the epilogue's own failures. */
export async function runEpilogue(
  runner: EpilogueRunner,
  payloadEnv: Record<string, string>,
  context: EpilogueContext,
  timeoutSeconds: number,
  graceSeconds: number,
): Promise<EpilogueReport> {
  const started = monotonicMs();
  const report = (outcome: EpilogueOutcome, leftovers: EpilogueReport['leftovers'] = 'none'): EpilogueReport => ({
    outcome,
    leftovers,
    durationMs: Math.round(monotonicMs() - started),
  });
  try {
    checkEpilogue(runner);
  } catch (error) {
    return report({ result: 'failed', reason: `was not run: ${(error as Error).message}` });
  }
  const env = epilogueEnvironment(runner, payloadEnv, epilogueVariables(context, runner.path));
  let child;
  try {
    child = spawnEpilogueProgram({ uid: runner.uid, gid: runner.gid, groups: [runner.gid] }, runner.path, env);
  } catch (error) {
    // Node throws some spawn errors (E2BIG among them) instead of emitting them: still the epilogue's failure.
    return report({ result: 'failed', reason: `could not start: ${(error as Error).message}` });
  }
  const exited = waitForExit(child);
  if (child.pid === undefined) {
    const reason = await exited.then(
      () => 'unknown error',
      (error: unknown) => String((error as Error).message),
    );
    return report({ result: 'failed', reason: `could not start: ${reason}` });
  }
  const pid = child.pid;
  const status = helperStatus(child);
  const ending = await endOrTimeOut(pid, exited, timeoutSeconds, graceSeconds);
  // Usually nothing is left in the epilogue's group: kill(-pgid, 0) says so at once, where a scan of
  // every process of its account (root's, by default) costs ~10 ms. A group that still has members
  // (zombies included) is scanned and ended as before; an emptied group cannot be rejoined.
  const leftovers = signalGroup(pid, 0)
    ? (await endProcesses(() => groupMembersOf(pid, runner.uid), graceSeconds)).outcome
    : 'none';
  // start-payload's own failure (the identity, the exec): the epilogue never ran.
  const { failure } = await status;
  if (failure !== undefined)
    return report({ result: 'failed', reason: `could not start: ${failure.message}` }, leftovers);
  return report(ending, leftovers);
}

/** The longest wait a Node timer takes (2^31-1 ms, 24.8 days); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A wait of `ms` milliseconds, however long: epilogue_timeout and kill_grace may be up to
 * 9,999,999 s (115 days), past what one Node timer takes, so a longer wait is made of several.
 */
async function sleepLong<T>(ms: number, value: T, signal: AbortSignal): Promise<T> {
  let left = ms;
  for (; left > MAX_TIMER_MS; left -= MAX_TIMER_MS) await sleep(MAX_TIMER_MS, undefined, { signal });
  return await sleep(left, value, { signal });
}

async function endOrTimeOut(
  pgid: number,
  exited: Promise<Ending>,
  timeoutSeconds: number,
  graceSeconds: number,
): Promise<EpilogueOutcome> {
  const timer = new AbortController();
  const timedOut = sleepLong(timeoutSeconds * 1000, 'timeout' as const, timer.signal).catch(() => 'cancelled' as const);
  const first = await Promise.race([exited, timedOut]);
  if (first !== 'timeout' && first !== 'cancelled') {
    timer.abort();
    return outcomeOf(first);
  }
  signalGroup(pgid, 'SIGTERM');
  const graceTimer = new AbortController();
  const graceOver = sleepLong(graceSeconds * 1000, 'grace' as const, graceTimer.signal).catch(
    () => 'cancelled' as const,
  );
  const afterTerm = await Promise.race([exited, graceOver]);
  if (afterTerm !== 'grace' && afterTerm !== 'cancelled') {
    graceTimer.abort();
    return timeoutOutcome(false, timeoutSeconds, graceSeconds);
  }
  signalGroup(pgid, 'SIGKILL');
  await exited;
  return timeoutOutcome(true, timeoutSeconds, graceSeconds);
}

function timeoutOutcome(forcefullyKilled: boolean, timeoutSeconds: number, graceSeconds: number): EpilogueOutcome {
  return {
    result: 'timed_out',
    forcefullyKilled,
    reason: forcefullyKilled
      ? `ran longer than epilogue_timeout (${timeoutSeconds} s) and was killed with SIGKILL after kill_grace (${graceSeconds} s)`
      : `ran longer than epilogue_timeout (${timeoutSeconds} s) and ended on SIGTERM`,
  };
}

/**
 * The report of an epilogue the monitor ran (shim/epilogue.c), as runEpilogue would have made it;
 * what it left in its process group is ended here, as runEpilogue ends it.
 */
export async function reportMonitorEpilogue(
  run: MonitorEpilogueRun,
  runner: EpilogueRunner,
  timeoutSeconds: number,
  graceSeconds: number,
): Promise<EpilogueReport> {
  const leftovers = run.groupLeft
    ? (await endProcesses(() => groupMembersOf(run.pid, runner.uid), graceSeconds)).outcome
    : 'none';
  const { failure } = parseHelperStatus(run.helperStatus);
  const outcome: EpilogueOutcome =
    failure !== undefined
      ? { result: 'failed', reason: `could not start: ${failure.message}` }
      : run.endedBy === 0
        ? outcomeOf(endingOfWaitStatus(run.waitStatus))
        : timeoutOutcome(run.endedBy === 9, timeoutSeconds, graceSeconds);
  return { outcome, leftovers, durationMs: run.durationMs };
}

function outcomeOf(ending: Ending): EpilogueOutcome {
  if ('signal' in ending) return { result: 'failed', signal: ending.signal, reason: `was killed by ${ending.signal}` };
  if (ending.code === 0) return { result: 'ok', exitCode: 0 };
  return { result: 'failed', exitCode: ending.code, reason: `exited with ${ending.code}` };
}

/** gLExec's rule: an epilogue that exits 201..204 makes glexec exit 204; any other failure 202. */
export function exitCodeAfterEpilogue(outcome: EpilogueOutcome, payloadExitCode: number): number {
  if (outcome.result === 'ok') return payloadExitCode;
  if (
    outcome.result === 'failed' &&
    outcome.exitCode !== undefined &&
    outcome.exitCode >= 201 &&
    outcome.exitCode <= 204
  )
    return 204;
  return 202;
}

/** The one line the caller gets on stderr when the epilogue did not succeed. */
export function describeEpilogueFailure(path: string, outcome: EpilogueOutcome): string | undefined {
  return outcome.result === 'ok' ? undefined : `epilogue ${path} ${outcome.reason}`;
}
