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
import { endProcessGroup, type GroupCleanup, type SignalRelay, waitForExit } from './linger';
import { payloadLimitOptions } from './limits';
import { clampLogLevel, type Log, logEarlyError, openLog } from './log/logger';
import { readLcmapsDb } from './lcmaps/db';
import { mapAccount } from './lcmaps/modules';
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
    const payloadEnv = buildEnvironment(caller, target, loaded.config, log);
    const payload = await runPayload(action, caller, target, payloadEnv, loaded.config, relay, log);
    const epilogueReport = epilogue ? await runEpilogueStage(epilogue, payloadEnv, { caller, target, payloadPath: action.payload, payloadArgs: action.args, payloadPid: payload.pid, ending: payload.ending }, loaded.config, log) : undefined;
    const cleanup = await endLeftovers(payload.pid, target.uid, loaded.config, log);
    const exitCode = epilogueReport ? exitCodeAfterEpilogue(epilogueReport.outcome, exitCodeOf(payload.ending)) : exitCodeOf(payload.ending);
    writeCompletionRecord(log, { caller, target, proxy, action, payload, epilogue: epilogueReport, cleanup, exitCode });
    return exitCode;
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

function verifyCallerProxy(caller: Caller, config: Config): VerifiedProxy {
  const location = locateProxy(caller.env);
  const pem = readProxyFile(location, caller.uid, caller.proxy);
  return verifyProxyChain(pem, {
    certdir: config.certdir,
    now: new Date(),
    requirePrivateKey: !config.omission_private_key_white_list.includes(caller.name),
  });
}

/** lcmaps.db policies when the site has one, else the grid-mapfile. */
function mapToTarget(proxy: VerifiedProxy, config: Config, log: Log): Target {
  if (config.lcmaps_db_file === '') return resolveTarget(mapDn(readGridMap(config.gridmapfile), proxy.identityDn, config.gridmapfile), proxy.identityDn);
  const mapping = mapAccount(readLcmapsDb(config.lcmaps_db_file), config.lcmaps_get_account_policy, {
    identityDn: proxy.identityDn,
    proxy,
    now: new Date(),
    verifiedAgainstCertdir: config.certdir,
  });
  log.info('lcmaps policy mapped', { policy: mapping.policy, via: mapping.via, account: mapping.account });
  return resolveTarget(mapping.account, proxy.identityDn);
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

function buildEnvironment(caller: Caller, target: Target, config: Config, log: Log): Record<string, string> {
  const { env, dropped } = buildPayloadEnv(caller.env, config, target);
  for (const { name, why } of dropped) log.info('caller variable dropped', { name, why });
  return env;
}

interface PayloadRun {
  readonly pid: number;
  readonly cwd: string;
  readonly ending: Ending;
  readonly durationMs: number;
}

async function runPayload(action: Extract<Action, { kind: 'run' }>, caller: Caller, target: Target, env: Record<string, string>, config: Config, relay: SignalRelay, log: Log): Promise<PayloadRun> {
  if (!setprivAvailable()) throw systemError('system.no_setpriv', 'setpriv (util-linux) is not installed at /usr/bin/setpriv');
  const cwd = payloadWorkingDirectory(caller, target);
  if (!config.linger) log.notice('linger = no is accepted, but this glexec always lingers');
  const started = monotonicMs();
  const limitOptions = payloadLimitOptions(caller.limits);
  if (limitOptions.length > 0) log.info('the payload gets the caller\'s resource limits', { limits: limitOptions });
  const child = spawnAsTarget(target, action.payload, action.args, env, cwd, limitOptions);
  const exited = waitForExit(child);
  if (child.pid === undefined) {
    const error = await exited.then(() => undefined, (reason: unknown) => reason);
    throw systemError('payload.spawn_failed', `cannot start the payload: ${String((error as Error | undefined)?.message ?? 'unknown error')}`);
  }
  const pid = child.pid;
  relay.attach(pid);
  log.info('payload started', { payloadPid: pid, target: target.name, cwd });
  const ending = await exited;
  relay.detach();
  const durationMs = Math.round(monotonicMs() - started);
  log.info('payload ended', { payloadPid: pid, ending, durationMs });
  return { pid, cwd, ending, durationMs };
}

/** Runs while the payload's leftovers are still alive, so that it can find them. */
async function runEpilogueStage(runner: EpilogueRunner, payloadEnv: Record<string, string>, context: EpilogueContext, config: Config, log: Log): Promise<EpilogueReport> {
  const report = await runEpilogue(runner, payloadEnv, context, config.epilogue_timeout, config.kill_grace);
  const fields = { path: runner.path, user: runner.user, group: runner.group, ...report.outcome, durationMs: report.durationMs, leftovers: report.leftovers };
  if (report.outcome.result === 'ok') log.info('epilogue succeeded', fields);
  else log.error(`epilogue failed: ${report.outcome.reason}`, fields);
  return report;
}

/** What is left of the payload's process group after the epilogue: SIGTERM, grace, SIGKILL. */
async function endLeftovers(pgid: number, uid: number, config: Config, log: Log): Promise<GroupCleanup> {
  const cleanup = await endProcessGroup(pgid, uid, config.kill_grace);
  if (cleanup.outcome !== 'none') log.notice('ended what the payload left in its process group', { pgid, outcome: cleanup.outcome, durationMs: cleanup.durationMs });
  return cleanup;
}

interface Completion {
  readonly caller: Caller;
  readonly target: Target;
  readonly proxy: VerifiedProxy;
  readonly action: Extract<Action, { kind: 'run' }>;
  readonly payload: PayloadRun;
  readonly epilogue: EpilogueReport | undefined;
  readonly cleanup: GroupCleanup;
  readonly exitCode: number;
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
    leftovers: run.cleanup.outcome,
    exitCode: run.exitCode,
    durationMs: payload.durationMs,
  });
}

function logRefusal(log: Log, error: unknown): void {
  if (error instanceof GlexecError) log.error(error.message, { code: error.code, exitCode: error.exitCode });
  else log.error('internal error', { error: String(error) });
}
