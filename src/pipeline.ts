/**
 * The whole run of glexec, one stage after another. Each stage takes what it needs and returns
 * data; refusals are GlexecErrors, which only the entry point (main.ts) prints.
 */
import { monotonicMs } from './clock';
import { lstatSync, statSync } from 'node:fs';
import { type Caller, identifyCaller, type ShimArgs } from './caller';
import { type Action, toAction } from './cli';
import { loadConfig, type LoadedConfig } from './config/load';
import type { Config } from './config/schema';
import { authorizationError, ExitCode, GlexecError, systemError } from './errors';
import { checkInstallation, formatFinding } from './check';
import { type Ending, exitCodeOf, rawReturnCode } from './exitcode';
import { checkEpilogue, type EpilogueContext, type EpilogueReport, type EpilogueRunner, exitCodeAfterEpilogue, resolveEpilogueRunner, runEpilogue } from './epilogue';
import { type SignalRelay, waitForExit } from './linger';
import { abandonContainment, cgroupProcsFiles, type Containment, emergencyKill, endLeftovers, findLeftovers, type LeftoverCleanup, type Leftovers, prepareContainment, removeLeftoverFile, writeLeftoverFile } from './containment';
import { payloadLimitOptions } from './limits';
import { clampLogLevel, type Log, logEarlyError, openLog } from './log/logger';
import { effectiveCertdir } from './lcmaps/certdir';
import { readLcmapsDb } from './lcmaps/db';
import { mapAccount } from './lcmaps/modules';
import { mapDn, readGridMap } from './mapping/gridmap';
import { targetFromMapping } from './mapping/mapped-target';
import { runLcmapsLibrary } from './lcmaps/library';
import { checkPayload } from './payload/check';
import { buildPayloadEnv } from './payload/env';
import { locateProxy, readProxyFile } from './proxy/read';
import { targetProxyRequest, writeTargetProxy } from './proxy/target';
import { type VerifiedProxy, verifyProxyChain } from './proxy/verify';
import { findAccount } from './sys/identity';
import { helperStatus, setprivAvailable, spawnAsTarget } from './sys/proc';
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
  if (action.kind === 'check') return runCheck(shim, reporter);

  const { loaded, log } = openConfigAndLog(shim.configPath, reporter);
  try {
    const caller = identifyCaller(shim);
    log.notice('glexec invoked', { caller: caller.name, uid: caller.uid, command: [action.payload, ...action.args], id: caller.env.get('GLEXEC_ID') });
    checkWhiteLists(caller, loaded.config, log);
    const proxy = verifyCallerProxy(caller, loaded.config);
    const target = mapToTarget(proxy, loaded.config, log);
    log.info('mapped', { dn: proxy.identityDn, target: target.name, uid: target.uid });
    const epilogue = checkEpilogueTrust(loaded.config);
    checkPayload(action.payload, target, loaded.config.prohibit_exec_via_symlink);
    requireSetpriv();
    const containment = prepareContainment(loaded.config);
    let payloadEnv: Record<string, string>;
    let payload: PayloadRun;
    try {
      const targetProxy = copyTargetProxy(caller, target, loaded.config, log);
      payloadEnv = buildEnvironment(caller, target, targetProxy, loaded.config, log);
      payload = await runPayload(action, caller, target, payloadEnv, containment, loaded.config, relay, log);
    } catch (error) {
      abandonContainment(containment);
      throw error;
    }
    const completion = { caller, target, proxy, action, payload };
    try {
      const leftovers = listLeftovers(containment, payload, target, log);
      const epilogueContext = { caller, target, payloadPath: action.payload, payloadArgs: action.args, payloadPid: payload.pid, ending: payload.ending };
      const epilogueReport = epilogue ? await runEpilogueStage(epilogue, payloadEnv, epilogueContext, containment, leftovers, loaded.config, log) : undefined;
      const cleanup = await cleanUpLeftovers(containment, payload.pid, target.uid, loaded.config, log);
      const exitCode = epilogueReport ? exitCodeAfterEpilogue(epilogueReport.outcome, exitCodeOf(payload.ending)) : exitCodeOf(payload.ending);
      writeCompletionRecord(log, { ...completion, epilogue: epilogueReport, leftovers, cleanup, exitCode });
      // Tells the loader that this run went through every stage, so its code cache is worth keeping.
      (globalThis as Record<symbol, unknown>)[Symbol.for('glexec.completedRun')] = true;
      return exitCode;
    } catch (error) {
      // The payload ran: its leftovers are still ended and the job still gets its record.
      const cleanup = await endLeftovers(containment, { pid: payload.pid, uid: target.uid }, true, loaded.config.kill_grace).catch(() => undefined);
      writeCompletionRecord(log, { ...completion, epilogue: undefined, leftovers: { count: 0, described: [] }, cleanup, exitCode: ExitCode.system, error: error instanceof GlexecError ? error.code : 'internal' });
      throw error;
    }
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

/** `glexec --check`, for root: one line per item; 202 when anything is wrong. */
function runCheck(shim: ShimArgs, reporter: Reporter): number {
  if (shim.callerUid !== 0) throw authorizationError('check.not_root', 'glexec --check is for root');
  const findings = checkInstallation(shim.configPath, trustedConfigOwners());
  reporter.out(findings.map((finding) => `${formatFinding(finding)}\n`).join(''));
  const errors = findings.filter((finding) => finding.level === 'error').length;
  reporter.out(errors === 0 ? 'glexec --check: no problems found\n' : `glexec --check: ${errors} problem(s) found\n`);
  return errors === 0 ? 0 : ExitCode.system;
}

function printHelp(action: Extract<Action, { kind: 'help' }>, reporter: Reporter): number {
  reporter.out(action.text);
  return 0;
}

function readConfig(path: string): LoadedConfig {
  if (path === '') throw systemError('shim.bad_args', 'glexec was not started by its shim (no config path)');
  return loadConfig(path, trustedConfigOwners());
}

/** glexec.conf may be owned by root or by the `glexec` service account, as gLExec 0.9 packaged it. */
function trustedConfigOwners(): number[] {
  const serviceAccount = findAccount('glexec');
  return serviceAccount ? [serviceAccount.uid] : [];
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

/** The verified proxy, and its text for the LCMAPS library backend. */
function verifyCallerProxy(caller: Caller, config: Config): VerifiedProxy & { readonly pem: string } {
  const location = locateProxy(caller.env);
  const pem = readProxyFile(location, caller.uid, caller.proxy);
  return { pem, ...verifyProxyChain(pem, {
    certdir: effectiveCertdir(config),
    now: new Date(),
    requirePrivateKey: !config.omission_private_key_white_list.includes(caller.name),
  }) };
}

/** lcmaps.db policies when the site has one, else the grid-mapfile. */
function mapToTarget(proxy: VerifiedProxy & { readonly pem: string }, config: Config, log: Log): Target {
  if (config.lcmaps_db_file === '') return resolveTarget(mapDn(readGridMap(config.gridmapfile), proxy.identityDn, config.gridmapfile), proxy.identityDn);
  if (config.lcmaps_backend === 'library') {
    const run = runLcmapsLibrary(config, Buffer.from(proxy.pem, 'latin1'), effectiveCertdir(config), proxy.identityDn, log);
    log.info('lcmaps library mapped', { policy: run.mapping.policy, account: run.mapping.account, uid: run.mapping.uid, gid: run.mapping.gid, groups: run.mapping.groups, poolindex: run.poolindex });
    return targetFromMapping(run.mapping, proxy.identityDn);
  }
  const mapping = mapAccount(readLcmapsDb(config.lcmaps_db_file), config.lcmaps_get_account_policy, {
    identityDn: proxy.identityDn,
    proxy,
    now: new Date(),
    verifiedAgainstCertdir: effectiveCertdir(config),
  });
  log.info('lcmaps policy mapped', { policy: mapping.policy, via: mapping.via, account: mapping.account, gid: mapping.gid, groups: mapping.groups });
  return targetFromMapping(mapping, proxy.identityDn);
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

/** A broken epilogue setting is a 202 before anything runs. */
function checkEpilogueTrust(config: Config): EpilogueRunner | undefined {
  const runner = resolveEpilogueRunner(config);
  if (runner) checkEpilogue(runner);
  return runner;
}

/** GLEXEC_SOURCE_PROXY (else the client proxy) copied for the payload, written as the target. */
function copyTargetProxy(caller: Caller, target: Target, config: Config, log: Log): string | undefined {
  const request = targetProxyRequest(caller.env, config);
  if (request === undefined) return undefined;
  const targetLock = config.target_lock_mechanism === 'flock' ? config.lock_mechanism : config.target_lock_mechanism;
  const { path } = writeTargetProxy(request, caller, target, { input: config.input_lock_mechanism, target: targetLock });
  log.info('target proxy written', { source: request.sourcePath, path });
  return path;
}

/** The payload's environment; X509_USER_PROXY is the target proxy when there is one. */
function buildEnvironment(caller: Caller, target: Target, targetProxy: string | undefined, config: Config, log: Log): Record<string, string> {
  const { env, dropped } = buildPayloadEnv(caller.env, config, target);
  for (const { name, why } of dropped) log.info('caller variable dropped', { name, why });
  if (targetProxy !== undefined) env.X509_USER_PROXY = targetProxy;
  return env;
}

interface PayloadRun {
  readonly pid: number;
  readonly cwd: string;
  readonly ending: Ending;
  readonly durationMs: number;
}

function requireSetpriv(): void {
  if (!setprivAvailable()) throw systemError('system.no_setpriv', 'setpriv (util-linux) is not installed at /usr/bin/setpriv');
}

async function runPayload(action: Extract<Action, { kind: 'run' }>, caller: Caller, target: Target, env: Record<string, string>, containment: Containment, config: Config, relay: SignalRelay, log: Log): Promise<PayloadRun> {
  if (containment.mode === 'pgid') log.notice('containment by process group', { reason: containment.reason });
  const cwd = payloadWorkingDirectory(caller, target);
  if (!config.linger) log.notice('linger = no is accepted, but this glexec always lingers');
  const started = monotonicMs();
  const limitOptions = payloadLimitOptions(caller.limits);
  if (limitOptions.length > 0) log.info('the payload gets the caller\'s resource limits', { limits: limitOptions });
  const who = { uid: target.uid, gid: target.gid, groups: target.groups, noNewPrivs: config.no_new_privs };
  const child = spawnAsTarget(who, action.payload, action.args, env, cwd, limitOptions, cgroupProcsFiles(containment));
  const exited = waitForExit(child);
  if (child.pid === undefined) {
    const error = await exited.then(() => undefined, (reason: unknown) => reason);
    throw systemError('payload.spawn_failed', `cannot start the payload: ${String((error as Error | undefined)?.message ?? 'unknown error')}`);
  }
  const pid = child.pid;
  const helperFailure = helperStatus(child);
  relay.attach(pid, emergencyKill(containment));
  log.info('payload started', { payloadPid: pid, target: target.name, cwd });
  const ending = await exited;
  relay.detach();
  const failure = await helperFailure;
  if (failure !== '') throw systemError('containment.join_failed', `cannot start the payload in its cgroup: ${failure}`);
  const durationMs = Math.round(monotonicMs() - started);
  log.info('payload ended', { payloadPid: pid, ending, durationMs });
  return { pid, cwd, ending, durationMs };
}

/** What the payload left running, logged process by process. */
function listLeftovers(containment: Containment, payload: PayloadRun, target: Target, log: Log): Leftovers {
  const leftovers = findLeftovers(containment, { pid: payload.pid, uid: target.uid });
  if (leftovers.count > 0) log.notice('the payload left processes behind', { containment: containment.mode, count: leftovers.count, processes: leftovers.described });
  return leftovers;
}

/**
 * Runs while the payload's leftovers are still alive, so that it can find them; it gets the
 * payload's cgroup and the list of leftovers (count, and a root-owned file).
 */
async function runEpilogueStage(runner: EpilogueRunner, payloadEnv: Record<string, string>, context: Omit<EpilogueContext, 'containmentVariables'>, containment: Containment, leftovers: Leftovers, config: Config, log: Log): Promise<EpilogueReport> {
  const leftoverFile = containment.mode === 'off' ? undefined : writeLeftoverFile(leftovers.described, runner, config.runtime_directory);
  try {
    const containmentVariables: Record<string, string> = {
      ...(containment.mode === 'cgroup' ? { GLEXEC_EPILOG_TARGET_CGROUP: containment.job.path } : {}),
      ...(leftoverFile ? { GLEXEC_EPILOG_LEFTOVER_COUNT: String(leftovers.count), GLEXEC_EPILOG_LEFTOVER_FILE: leftoverFile } : {}),
    };
    const report = await runEpilogue(runner, payloadEnv, { ...context, containmentVariables }, config.epilogue_timeout, config.kill_grace);
    const fields = { path: runner.path, user: runner.user, group: runner.group, ...report.outcome, durationMs: report.durationMs, leftovers: report.leftovers };
    if (report.outcome.result === 'ok') log.info('epilogue succeeded', fields);
    else log.error(`epilogue failed: ${report.outcome.reason}`, fields);
    return report;
  } finally {
    removeLeftoverFile(leftoverFile);
  }
}

/** After the epilogue: end what the payload left (kill_leftovers), remove its cgroup. */
async function cleanUpLeftovers(containment: Containment, pid: number, uid: number, config: Config, log: Log): Promise<LeftoverCleanup> {
  const remaining = config.kill_leftovers ? findLeftovers(containment, { pid, uid }) : { count: 0, described: [] };
  if (remaining.count > 0) log.notice('ending what the payload left behind', { containment: containment.mode, count: remaining.count, processes: remaining.described });
  const cleanup = await endLeftovers(containment, { pid, uid }, config.kill_leftovers, config.kill_grace);
  if (cleanup.outcome !== 'none') log.notice('ended what the payload left behind', { ...cleanup });
  if (cleanup.survivors > 0) log.warn('processes of the payload are still running', { ...cleanup });
  return cleanup;
}

interface Completion {
  readonly caller: Caller;
  readonly target: Target;
  readonly proxy: VerifiedProxy;
  readonly action: Extract<Action, { kind: 'run' }>;
  readonly payload: PayloadRun;
  readonly epilogue: EpilogueReport | undefined;
  readonly leftovers: Leftovers;
  readonly cleanup: LeftoverCleanup | undefined;
  readonly exitCode: number;
  /** Set when glexec failed after the payload ran: the error's stable code. */
  readonly error?: string;
}

function writeCompletionRecord(log: Log, run: Completion): void {
  const { caller, target, payload, epilogue } = run;
  log.audit('job completed', {
    caller: { user: caller.name, uid: caller.uid, gid: caller.gid, groups: caller.groups },
    target: { user: target.name, uid: target.uid, gid: target.gid, groups: target.groups },
    dn: run.proxy.identityDn,
    id: caller.env.get('GLEXEC_ID'),
    command: [run.action.payload, ...run.action.args],
    cwd: payload.cwd,
    glexecPid: process.pid,
    payloadPid: payload.pid,
    payloadPgid: payload.pid,
    ending: payload.ending,
    payloadRc: rawReturnCode(payload.ending),
    epilogue: epilogue ? { ...epilogue.outcome, durationMs: epilogue.durationMs, leftovers: epilogue.leftovers } : 'none',
    containment: run.cleanup?.mode,
    leftovers: run.leftovers.count,
    cleanup: run.cleanup?.outcome ?? 'failed',
    survivors: run.cleanup?.survivors,
    ...(run.cleanup?.keptCgroup ? { keptCgroup: run.cleanup.keptCgroup } : {}),
    ...(run.error ? { error: run.error } : {}),
    exitCode: run.exitCode,
    durationMs: payload.durationMs,
  });
}

function logRefusal(log: Log, error: unknown): void {
  if (error instanceof GlexecError) log.error(error.message, { code: error.code, exitCode: error.exitCode });
  else log.error('internal error', { error: String(error) });
}
