/**
 * The whole run of glexec, one stage after another. Each stage takes what it needs and returns
 * data; refusals are GlexecErrors, which only the entry point (main.ts) prints.
 */
import { lstatSync, statSync } from 'node:fs';
import { type Caller, identifyCaller, type ShimArgs } from './caller';
import { type Action, toAction } from './cli';
import { loadConfig, type LoadedConfig } from './config/load';
import type { Config } from './config/schema';
import { GlexecError, systemError } from './errors';
import { type Ending, exitCodeOf, rawReturnCode } from './exitcode';
import { endProcessGroup, type GroupCleanup, type SignalRelay, waitForExit } from './linger';
import { clampLogLevel, type Log, logEarlyError, openLog } from './log/logger';
import { mapDn, readGridMap } from './mapping/gridmap';
import { checkPayload } from './payload/check';
import { buildPayloadEnv } from './payload/env';
import { locateProxy, readProxyFile } from './proxy/read';
import { type VerifiedProxy, verifyProxyChain } from './proxy/verify';
import { findAccount } from './sys/identity';
import { setprivAvailable, spawnAsTarget } from './sys/proc';
import { resolveTarget, type Target } from './target';
import { VERSION } from './version';
import { checkWhiteLists } from './whitelist';

/** What the entry point needs to print: the output streams, and whether the site wants silence. */
export interface Reporter {
  out(text: string): void;
  /** Called once the config says silent_logging = yes. */
  silence(): void;
}

export async function run(shim: ShimArgs, relay: SignalRelay, reporter: Reporter): Promise<number> {
  const action = toAction(shim.argv);
  if (action.kind === 'version') return printVersion(shim, reporter);
  if (action.kind === 'help') return printHelp(action, reporter);

  const { loaded, log } = openConfigAndLog(shim.configPath, reporter);
  try {
    const caller = identifyCaller(shim);
    log.notice('glexec invoked', { caller: caller.name, uid: caller.uid, command: [action.payload, ...action.args], id: caller.env.get('GLEXEC_ID') });
    checkWhiteLists(caller, loaded.config, log);
    const proxy = verifyCallerProxy(caller, loaded.config);
    const target = mapToTarget(proxy, loaded.config);
    log.info('mapped', { dn: proxy.identityDn, target: target.name, uid: target.uid });
    checkPayload(action.payload, target, loaded.config.prohibit_exec_via_symlink);
    const run = await runPayload(action, caller, target, loaded.config, relay, log);
    writeCompletionRecord(log, caller, target, proxy, action, run);
    return exitCodeOf(run.ending);
  } catch (error) {
    logRefusal(log, error);
    throw error;
  }
}

function printVersion(shim: ShimArgs, reporter: Reporter): number {
  reporter.out(
    [
      `glexec ${VERSION} (a reimplementation of gLExec 0.9, linger mode)`,
      `GLEXEC_CONFIG_FILE="${shim.configPath}"`,
      `GLEXEC_NODE="${process.execPath}"`,
      `GLEXEC_PROGRAM="${__filename}"`,
      '',
    ].join('\n'),
  );
  return 0;
}

function printHelp(action: Extract<Action, { kind: 'help' }>, reporter: Reporter): number {
  reporter.out(action.text);
  return 0;
}

/** glexec.conf may be owned by root or by the `glexec` service account, as gLExec 0.9 packaged it. */
function readConfig(path: string): LoadedConfig {
  if (path === '') throw systemError('shim.bad_args', 'glexec was not started by its shim (no config path)');
  const serviceAccount = findAccount('glexec');
  return loadConfig(path, serviceAccount ? [serviceAccount.uid] : []);
}

/** Errors before the configured log exists go to syslog at the default facility, as gLExec's do. */
function openConfigAndLog(path: string, reporter: Reporter): { loaded: LoadedConfig; log: Log } {
  try {
    const loaded = readConfig(path);
    if (loaded.config.silent_logging) reporter.silence();
    const { level, warning } = clampLogLevel(loaded.config.log_level);
    const log = openLog(loaded.config, level);
    if (warning) log.warn(warning);
    for (const note of loaded.notes) log[note.level](note.msg);
    return { loaded, log };
  } catch (error) {
    logEarlyError(error instanceof Error ? error.message : String(error));
    throw error;
  }
}

function verifyCallerProxy(caller: Caller, config: Config): VerifiedProxy {
  const location = locateProxy(caller.env);
  const pem = readProxyFile(location, caller.uid);
  return verifyProxyChain(pem, {
    certdir: config.certdir,
    now: new Date(),
    requirePrivateKey: !config.omission_private_key_white_list.includes(caller.name),
  });
}

function mapToTarget(proxy: VerifiedProxy, config: Config): Target {
  const account = mapDn(readGridMap(config.gridmapfile), proxy.identityDn, config.gridmapfile);
  return resolveTarget(account, proxy.identityDn);
}

/** The caller's working directory if it still exists, else the target's home, else `/`. */
function payloadWorkingDirectory(caller: Caller, target: Target): string {
  for (const candidate of [caller.cwd, target.home]) {
    try {
      if (candidate.startsWith('/') && statSync(candidate).isDirectory() && !lstatSync(candidate).isSymbolicLink()) return candidate;
    } catch {
      // Try the next one.
    }
  }
  return '/';
}

interface PayloadRun {
  readonly pid: number;
  readonly cwd: string;
  readonly ending: Ending;
  readonly cleanup: GroupCleanup;
  readonly durationMs: number;
}

async function runPayload(action: Extract<Action, { kind: 'run' }>, caller: Caller, target: Target, config: Config, relay: SignalRelay, log: Log): Promise<PayloadRun> {
  if (!setprivAvailable()) throw systemError('system.no_setpriv', 'setpriv (util-linux) is not installed at /usr/bin/setpriv');
  const { env, dropped } = buildPayloadEnv(caller.env, config, target);
  for (const { name, why } of dropped) log.info('caller variable dropped', { name, why });
  const cwd = payloadWorkingDirectory(caller, target);
  if (!config.linger) log.notice('linger = no is accepted, but this glexec always lingers');
  const started = performance.now();
  const child = spawnAsTarget(target, action.payload, action.args, env, cwd);
  const exited = waitForExit(child);
  if (child.pid === undefined) {
    const error = await exited.then(() => undefined, (reason: unknown) => reason);
    throw systemError('payload.spawn_failed', `cannot start the payload: ${String((error as Error | undefined)?.message ?? 'unknown error')}`);
  }
  const pid = child.pid;
  relay.attach(pid);
  log.info('payload started', { pid, target: target.name, cwd });
  const ending = await exited;
  relay.detach();
  const durationMs = Math.round(performance.now() - started);
  const cleanup = await endProcessGroup(pid, config.kill_grace);
  if (cleanup.outcome !== 'none') log.notice('ended what the payload left in its process group', { pgid: pid, outcome: cleanup.outcome });
  return { pid, cwd, ending, cleanup, durationMs };
}

function writeCompletionRecord(log: Log, caller: Caller, target: Target, proxy: VerifiedProxy, action: Extract<Action, { kind: 'run' }>, run: PayloadRun): void {
  log.audit('job completed', {
    caller: { user: caller.name, uid: caller.uid, gid: caller.gid, groups: caller.groups },
    target: { user: target.name, uid: target.uid, gid: target.gid, groups: target.groups },
    dn: proxy.identityDn,
    id: caller.env.get('GLEXEC_ID'),
    command: [action.payload, ...action.args],
    cwd: run.cwd,
    glexecPid: process.pid,
    payloadPid: run.pid,
    payloadPgid: run.pid,
    ending: run.ending,
    payloadRc: rawReturnCode(run.ending),
    exitCode: exitCodeOf(run.ending),
    leftovers: run.cleanup.outcome,
    durationMs: run.durationMs,
  });
}

function logRefusal(log: Log, error: unknown): void {
  if (error instanceof GlexecError) log.error(error.message, { code: error.code, exitCode: error.exitCode });
  else log.error('internal error', { error: String(error) });
}
