/**
 * The whole run of glexec, one stage after another. Each stage takes what it needs and returns
 * data; refusals are GlexecErrors, which only the entry point (main.ts) prints.
 *
 * A run is two processes, children of the C monitor (docs/architecture.md):
 *   decide:   admit → prepareStart → handOver (the plan)
 *             [the monitor starts the payload from the plan, forwards signals, waits]
 *   conclude: takeBack (plan and outcome) → payloadOutcome → afterPayload → finishRun
 */
import { monotonicMs } from './clock';
import { join } from 'node:path';
import { type Caller, callerAccount, identifyCaller, type ShimArgs } from './caller';
import { type Action, toAction, usageError } from './cli';
import { loadConfig, type LoadedConfig } from './config/load';
import type { Config } from './config/schema';
import { authorizationError, clientError, ExitCode, GlexecError, systemError } from './errors';
import { endingOfWaitStatus, type Ending, exitCodeOf, rawReturnCode } from './exitcode';
import {
  describeEpilogueFailure,
  epilogueContainmentVariables,
  type EpilogueContext,
  type EpilogueReport,
  type EpilogueRunner,
  exitCodeAfterEpilogue,
  monitorEpilogueEnvironment,
  monitorEpilogueWatch,
  refuseTargetThatControlsEpilogue,
  reportMonitorEpilogue,
  resolveEpilogueRunner,
  runEpilogue,
  walkEpilogueWatched,
} from './epilogue';
import { checkEpilogueEnvironment } from './epilogue-env';
import {
  abandonContainment,
  cgroupProcsFiles,
  endLeftovers,
  findLeftovers,
  type LeftoverCleanup,
  leftoverList,
  type Leftovers,
  type PayloadContainment,
  type PayloadProcess,
  prepareContainment,
  removeLeftoverFile,
  writeLeftoverFile,
} from './containment';
import { payloadLimitOptions } from './caller-limits';
import {
  type AuditDelivery,
  type AuditSlot,
  clampLogLevel,
  type Fields,
  formatSyslogText,
  type Log,
  logEarlyError,
  type LogUsage,
  openLog,
} from './log/logger';
import { effectiveCertdir } from './lcmaps/certdir';
import { checkCode, lcmapsCode } from './lazy';
import { mapDn, readGridMap } from './mapping/gridmap';
import { checkPayload } from './payload/check';
import { buildPayloadEnv } from './payload/env';
import { locateProxy, ownerSeenByCaller, readProxyFile } from './proxy/read';
import {
  findCreatedProxies,
  registerCreatedProxy,
  recordText,
  type Registration,
  registryKey,
  removeLocked,
  renewLocked,
} from './proxy/registry';
import {
  DISCARD_TARGET,
  readTargetProxySource,
  removeCreatedProxy,
  renewCreatedProxy,
  type TargetProxyLocks,
  type TargetProxyRequest,
  targetProxyRequest,
  type WrittenTargetProxy,
  writeTargetProxy,
} from './proxy/target';
import { type VerifiedProxy, verifyProxyChain } from './proxy/verify';
import { glexecStartTime, readHandedBack, tellMonitorDone, writePlan } from './sys/handover';
import { asPid, findAccount, findGroup, type Pid } from './sys/identity';
import { epilogueStartArgs, type HelperStatus, parseHelperStatus, startPayloadArgs } from './sys/proc';
import { SYSLOG_UNHEARD, syslogFacilityCode, syslogListening } from './sys/syslog';
import { resolveTarget, type Target } from './target';
import {
  decodeRecord,
  encodePlan,
  MAX_ITEMS,
  type MonitorEpilogue,
  type MonitorEpilogueRun,
  type MonitorProxyCopy,
  type Outcome,
  SIGNAL_COUNT,
  type TrivialConclusion,
  type WatchedPath,
} from './plan';
import { VERSION } from './version';
import { checkCallerWhiteLists } from './whitelist';

/** What the entry point needs to print: the output streams, and whether the site wants silence. */
export interface Reporter {
  out(text: string): void;
  /** Called once the config says silent_logging = yes. */
  silence(): void;
  /** A one-line warning for the caller (stderr), unless silenced. */
  warn(text: string): void;
  /** One line for the caller's stderr (not written under silent_logging). */
  error(message: string): void;
}

/** What the command line asks for: a payload run, the version, a check, a proxy renewal or help. */
export async function dispatch(shim: ShimArgs, reporter: Reporter): Promise<number> {
  // Phase 2 of a run: the monitor has run the payload of the plan phase 1 handed over.
  if (shim.phase === 'conclude') return await conclude(shim, reporter);
  const action = toAction(shim.argv);
  switch (action.kind) {
    case 'version':
      return printVersion(shim, action.builtIns, reporter);
    case 'renew':
      return renewTargetProxy(shim, reporter);
    case 'help':
      return printHelp(action, reporter);
    case 'check':
      return await runCheck(shim, reporter);
    case 'run':
      return await decide(shim, action, reporter);
  }
}

type RunAction = Extract<Action, { kind: 'run' }>;

/**
 * One payload run, shared by its stages. Each stage sets what it made; the cleanup section
 * (finishRun) ends and removes whatever is set, so nothing depends on where a stage failed.
 * The run has two phases, two processes (docs/architecture.md): `decide` admits the caller and
 * hands a plan to the C monitor, which runs the payload; `conclude` gets it back, with the
 * payload's outcome, for the stages after the payload.
 */
interface RunContext {
  readonly shim: ShimArgs;
  readonly action: RunAction;
  readonly config: Config;
  readonly log: Log;
  readonly reporter: Reporter;
  /** glexec's own pid: the monitor's, parent of both phases. */
  readonly glexecPid: number;
  /** In phase 2: tells the monitor that the record is written, or that there is none to write. */
  readonly finished?: () => void;
  /** In phase 2: glexec's start, CLOCK_MONOTONIC milliseconds. */
  readonly startedMs?: number;
  /** Read as the caller before the checks; zeroed once the target proxy is written, and by the cleanup. */
  targetProxySource?: Buffer;
  caller?: Caller;
  target?: Target;
  containment?: PayloadContainment;
  targetProxy?: TargetProxyCopy;
  payloadEnv?: Record<string, string>;
  payload?: PayloadRun;
  leftovers?: Leftovers;
  epilogueReport?: EpilogueReport;
  /** In phase 1: what the epilogue's trust walk looked at (walkEpilogueWatched). */
  epilogueWatch?: readonly WatchedPath[];
}

/** The context once the caller is admitted: who runs what, as whom, contained how. */
type AdmittedRun = RunContext & {
  readonly caller: Caller;
  /** The proxy owner's DN. */
  readonly dn: string;
  readonly target: Target;
  readonly epilogue: EpilogueRunner | undefined;
  readonly containment: PayloadContainment;
};

/** The context once the payload ran. */
type RanRun = AdmittedRun & { readonly payload: PayloadRun; readonly payloadEnv: Record<string, string> };

/**
 * Phase 1: everything checked, the target proxy written, the payload's start planned and handed
 * to the monitor. This process then ends; nothing of it lingers while the payload runs.
 */
async function decide(shim: ShimArgs, action: RunAction, reporter: Reporter): Promise<number> {
  const { loaded, log } = openConfigAndLog(shim.configPath, reporter);
  await warnIfSyslogUnheard(loaded.config, reporter);
  const context: RunContext = { shim, action, config: loaded.config, log, reporter, glexecPid: process.ppid };
  try {
    handOver(prepareStart(admit(context)));
    // As at the end of phase 2: this run went through its stages, so the loader's code cache is worth keeping.
    (globalThis as Record<symbol, unknown>)[Symbol.for('glexec.completedRun')] = true;
    return 0;
  } catch (error) {
    return await finishRun(context, { failed: true, error });
  }
}

/** The entry of the second phase's own bundle (main-conclude.ts): it runs nothing else. */
export async function concludeRun(shim: ShimArgs, reporter: Reporter): Promise<number> {
  if (shim.phase !== 'conclude')
    throw systemError('shim.bad_args', 'glexec was not started by its shim (not the concluding phase)');
  return await conclude(shim, reporter);
}

/** Phase 2: the payload has ended (or could not start); the stages after it, and the cleanup. */
async function conclude(shim: ShimArgs, reporter: Reporter): Promise<number> {
  const { state, outcome } = takeBack(shim);
  const { config } = state;
  if (config.silent_logging) reporter.silence();
  const log = openLog(config, clampLogLevel(config.log_level).level, state.logUsage);
  const base: RunContext = {
    shim,
    action: state.action,
    config,
    log,
    reporter,
    glexecPid: outcome.glexecPid,
    startedMs: outcome.startedMs,
    finished: () => tellMonitorDone(shim.doneFd),
  };
  // Phase 1's decisions as it handed them over: the caller admitted, the start planned.
  const { caller, dn, target, epilogue, containment, targetProxy, payloadEnv } = state;
  const planned: PlannedRun = Object.assign(base, {
    caller,
    dn,
    target,
    epilogue,
    containment,
    targetProxy,
    payloadEnv,
  });
  let result: RunOutcome;
  try {
    const ran = Object.assign(planned, { payload: payloadOutcome(planned, outcome) });
    result = { ran, exitCode: await afterPayload(ran, outcome.epilogue) };
  } catch (error) {
    result = { failed: true, error };
  }
  return await finishRun(planned, result);
}

type RunOutcome =
  { readonly ran: RanRun; readonly exitCode: number } | { readonly failed: true; readonly error: unknown };

/** From the white lists to the containment: everything checked before anything runs. */
function admit(context: RunContext): AdmittedRun {
  const { shim, action, config, log } = context;
  // The white lists come first: a caller in none of them gets nothing read or logged but its refusal.
  const account = callerAccount(shim);
  checkCallerWhiteLists(account, config, log);
  const caller = identifyCaller(shim, account);
  context.caller = caller;
  log.notice('glexec invoked', {
    caller: caller.name,
    uid: caller.uid,
    command: [action.payload, ...action.args],
    id: caller.env.get('GLEXEC_ID'),
  });
  // Read (under its lock) before the checks: waiting for a caller's lock cannot come between them and the start.
  context.targetProxySource = readTargetProxySourceEarly(caller, config);
  const proxy = verifyCallerProxy(caller, config);
  const target = mapToTarget(proxy, config, log);
  context.target = target;
  log.info('mapped', { dn: proxy.identityDn, target: target.name, uid: target.uid });
  const epilogue = checkEpilogueTrust(context, config, target);
  checkPayload(action.payload, target, config.prohibit_exec_via_symlink);
  const containment = prepareContainment(config);
  return Object.assign(context, { caller, dn: proxy.identityDn, target, epilogue, containment });
}

/** The context once the payload's start is planned. */
type PlannedRun = AdmittedRun & { readonly payloadEnv: Record<string, string> };

/** The target proxy and the payload's environment: the last stages before the payload starts. */
function prepareStart(context: AdmittedRun): PlannedRun {
  const { caller, target, epilogue, action } = context;
  context.targetProxy = copyTargetProxy(context);
  const payloadEnv = buildEnvironment(caller, target, context.targetProxy?.written.path, context.config, context.log);
  if (epilogue)
    checkEpilogueEnvironment(epilogue, payloadEnv, {
      caller,
      target,
      payloadPath: action.payload,
      payloadArgs: action.args,
      glexecPid: context.glexecPid,
    });
  context.payloadEnv = payloadEnv;
  return Object.assign(context, { payloadEnv });
}

/**
 * Leftovers listed, the epilogue run while they still live; returns the job's exit code. When the
 * monitor ran the epilogue (`byMonitor`), it did so because the payload's cgroup was empty: there
 * was nothing to list, and the epilogue's run is reported as it went.
 */
async function afterPayload(context: RanRun, byMonitor: MonitorEpilogueRun | undefined): Promise<number> {
  context.leftovers = byMonitor ? { count: 0, described: [] } : listLeftovers(context);
  if (context.epilogue)
    context.epilogueReport = await runEpilogueStage(context, context.epilogue, context.leftovers, byMonitor);
  const payloadExitCode = exitCodeOf(context.payload.ending);
  return context.epilogueReport
    ? exitCodeAfterEpilogue(context.epilogueReport.outcome, payloadExitCode)
    : payloadExitCode;
}

/**
 * The one cleanup section, whatever happened: what the payload left is ended, what the run made is
 * removed, and a payload that ran gets its completion record (docs/containment.md, "The end of a run").
 */
async function finishRun(context: RunContext, outcome: RunOutcome): Promise<number> {
  const { log, target } = context;
  context.targetProxySource?.fill(0);
  const ran = 'ran' in outcome ? outcome.ran : ranPayload(context) ? context : undefined;
  let failure = 'failed' in outcome ? outcome : undefined;
  if (ran === undefined) {
    if (context.containment) abandonContainment(context.containment);
    if (target) removeTargetProxyCopy(context.targetProxy, target, log);
    context.finished?.();
    throw refusal(log, failure?.error);
  }
  const cleanup = await cleanUpLeftovers(ran, failure !== undefined).catch((error: unknown) => {
    failure ??= { failed: true, error };
    return undefined;
  });
  removeTargetProxyCopy(ran.targetProxy, ran.target, log);
  const epilogue = failure === undefined ? ran.epilogueReport : undefined;
  const exitCode = failure === undefined && 'exitCode' in outcome ? outcome.exitCode : ExitCode.system;
  const delivery = await writeCompletionRecord(ran, {
    epilogue,
    leftovers: ran.leftovers,
    cleanup,
    exitCode,
    error: failure === undefined ? undefined : failure.error instanceof GlexecError ? failure.error.code : 'internal',
  });
  context.finished?.();
  if (failure !== undefined) throw refusal(log, delivery.written ? failure.error : recordNotWritten(delivery));
  // The pilot cannot read root's log: a failed epilogue is the one thing a run that got this far says on stderr.
  const epilogueFailure =
    ran.epilogue && epilogue ? describeEpilogueFailure(ran.epilogue.path, epilogue.outcome) : undefined;
  if (epilogueFailure !== undefined) context.reporter.error(epilogueFailure);
  if (!delivery.written) throw refusal(log, recordNotWritten(delivery));
  // Tells the loader that this run went through every stage, so its code cache is worth keeping.
  (globalThis as Record<symbol, unknown>)[Symbol.for('glexec.completedRun')] = true;
  return exitCode;
}

const ranPayload = (context: RunContext): context is RanRun => context.payload !== undefined;

/** Logs why the run stopped; returns the error for the caller to throw. */
function refusal(log: Log, error: unknown): unknown {
  logRefusal(log, error);
  return error;
}

/** `glexec -v`: the version line, for anyone; `-V` adds the built-in paths. */
function printVersion(shim: ShimArgs, builtIns: boolean, reporter: Reporter): number {
  const versionLine = `glexec ${VERSION} (a reimplementation of gLExec 0.9, linger mode)`;
  if (!builtIns) {
    reporter.out(`${versionLine}\n`);
    return 0;
  }
  reporter.out(
    [
      versionLine,
      `GLEXEC_CONFIG_FILE="${shim.configPath}"`,
      `GLEXEC_NODE="${process.execPath}"`,
      `GLEXEC_PROGRAM="${__filename}"`,
      '',
    ].join('\n'),
  );
  return 0;
}

/** `glexec --check`, for root: one line per item; 202 when anything is wrong. */
async function runCheck(shim: ShimArgs, reporter: Reporter): Promise<number> {
  if (shim.callerUid !== 0) throw authorizationError('check.not_root', 'glexec --check is for root');
  // Loaded here only: a run never needs the --check code (installed, glexec-check.js: src/lazy.ts).
  const { checkInstallation, formatFinding } = checkCode();
  const findings = await checkInstallation(shim.configPath, trustedConfigOwners());
  reporter.out(findings.map((finding) => `${formatFinding(finding)}\n`).join(''));
  const errors = findings.filter((finding) => finding.level === 'error').length;
  reporter.out(errors === 0 ? 'glexec --check: no problems found\n' : `glexec --check: ${errors} problem(s) found\n`);
  return errors === 0 ? 0 : ExitCode.system;
}

/**
 * `glexec` without a payload but with GLEXEC_SOURCE_PROXY (DIRAC renews its payload's proxy this
 * way): the caller, its proxy and the mapping are checked as for a run, the target proxy is
 * rewritten from the source under the same rules, and nothing runs. Without GLEXEC_TARGET_PROXY
 * the /tmp copies that create_target_proxy made for this caller's running payloads (same source,
 * same target account) are rewritten. Without GLEXEC_SOURCE_PROXY it is the usage error.
 */
async function renewTargetProxy(shim: ShimArgs, reporter: Reporter): Promise<number> {
  const { loaded, log } = openConfigAndLog(shim.configPath, reporter);
  try {
    // As for a run: a caller in no white list gets nothing read or logged but its refusal.
    const account = callerAccount(shim);
    checkCallerWhiteLists(account, loaded.config, log);
    const caller = identifyCaller(shim, account);
    if (!caller.env.has('GLEXEC_SOURCE_PROXY')) throw usageError();
    log.notice('glexec invoked to renew the target proxy', {
      caller: caller.name,
      uid: caller.uid,
      id: caller.env.get('GLEXEC_ID'),
    });
    const proxy = verifyCallerProxy(caller, loaded.config);
    const target = mapToTarget(proxy, loaded.config, log);
    log.info('mapped', { dn: proxy.identityDn, target: target.name, uid: target.uid });
    const request = targetProxyRequest(caller.env, loaded.config, caller.cwd);
    if (request === undefined)
      throw clientError(
        'renewal.no_target',
        'no target proxy to renew: set GLEXEC_TARGET_PROXY (create_target_proxy is off)',
      );
    const renewed =
      request.targetPath === undefined
        ? renewCreatedCopies(request, caller, target, loaded.config)
        : [writeTargetProxy(request, caller, target, targetProxyLocks(loaded.config))];
    const delivery = await log.audit('proxy renewed', {
      caller: { user: caller.name, uid: caller.uid, gid: caller.gid, groups: caller.groups },
      target: { user: target.name, uid: target.uid, gid: target.gid, groups: target.groups },
      dn: proxy.identityDn,
      id: caller.env.get('GLEXEC_ID'),
      source: request.sourcePath,
      written: renewed.filter((copy) => copy.kind !== 'discarded').map((copy) => copy.path),
      discarded: renewed.some((copy) => copy.kind === 'discarded'),
      exitCode: 0,
    });
    if (!delivery.written) throw recordNotWritten(delivery);
    return 0;
  } catch (error) {
    logRefusal(log, error);
    throw error;
  }
}

/** Rewrites the registered /tmp copies of this caller's running payloads; none is a 201. */
function renewCreatedCopies(
  request: TargetProxyRequest,
  caller: Caller,
  target: Target,
  config: Config,
): WrittenTargetProxy[] {
  const registrations = findCreatedProxies(
    targetProxyRegistry(config),
    registryKey(caller.uid, target.uid, request.sourcePath),
  );
  const renewed: WrittenTargetProxy[] = [];
  for (const registration of registrations) {
    const file = renewLocked(registration, (copy) =>
      renewCreatedProxy(request, copy, caller, target, targetProxyLocks(config)),
    );
    if (file !== undefined) renewed.push({ kind: 'created', path: registration.copy.path, file });
  }
  if (renewed.length === 0) {
    throw clientError(
      'renewal.no_running_payload',
      `no running payload of ${caller.name} mapped to ${target.name} has a target proxy copied from ${request.sourceVariable} ${JSON.stringify(request.sourcePath)}; set GLEXEC_TARGET_PROXY to name the file to renew`,
    );
  }
  return renewed;
}

function printHelp(action: Extract<Action, { kind: 'help' }>, reporter: Reporter): number {
  reporter.out(action.text);
  return 0;
}

function readConfig(path: string): LoadedConfig {
  if (path === '') throw systemError('shim.bad_args', 'glexec was not started by its shim (no config path)');
  // Asked only if the file or a directory above it is not root's (the usual install has no glexec account).
  let owners: number[] | undefined;
  return loadConfig(path, () => (owners ??= trustedConfigOwners()));
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

/** libc syslog drops every record when no daemon listens, so the caller hears of it on each run. */
async function warnIfSyslogUnheard(config: Config, reporter: Reporter): Promise<void> {
  if (config.log_destination === 'syslog' && !(await syslogListening())) reporter.warn(SYSLOG_UNHEARD);
}

/** The verified proxy, and its text for the LCMAPS library backend. */
function verifyCallerProxy(caller: Caller, config: Config): VerifiedProxy & { readonly pem: string } {
  const location = locateProxy(caller.env);
  const pem = readProxyFile(location, caller.uid, caller.proxy, (path) => ownerSeenByCaller(caller, path));
  return {
    pem,
    ...verifyProxyChain(pem, {
      certdir: effectiveCertdir(config),
      now: new Date(),
      requirePrivateKey: !config.omission_private_key_white_list.includes(caller.name),
    }),
  };
}

/** lcmaps.db policies when the site has one, else the grid-mapfile. */
function mapToTarget(proxy: VerifiedProxy & { readonly pem: string }, config: Config, log: Log): Target {
  if (config.lcmaps_db_file === '')
    return resolveTarget(
      mapDn(readGridMap(config.gridmapfile), proxy.identityDn, config.gridmapfile),
      proxy.identityDn,
    );
  // The lcmaps.db code, loaded only when a site has one (installed, glexec-lcmaps.js: src/lazy.ts).
  return lcmapsCode().mapWithLcmaps(proxy, config, log);
}

/**
 * A broken epilogue setting, or a payload account that could change the epilogue, is a 202 before
 * anything runs. The walk records what it looked at, the monitor's first look (monitorEpilogue).
 */
function checkEpilogueTrust(context: RunContext, config: Config, target: Target): EpilogueRunner | undefined {
  const runner = resolveEpilogueRunner(config);
  if (runner) {
    refuseTargetThatControlsEpilogue(runner, target);
    context.epilogueWatch = walkEpilogueWatched(runner);
  }
  return runner;
}

/** The target proxy of this run; `registration` for the /tmp copy glexec created (removed after the run). */
interface TargetProxyCopy {
  readonly written: WrittenTargetProxy;
  readonly registration?: Registration;
}

/** Root's records of the /tmp copies of running payloads, for renewals (see proxy/registry.ts). */
const targetProxyRegistry = (config: Config): string => join(config.runtime_directory, 'target-proxies');

function targetProxyLocks(config: Config): TargetProxyLocks {
  return {
    input: config.input_lock_mechanism,
    target: config.target_lock_mechanism === 'flock' ? config.lock_mechanism : config.target_lock_mechanism,
  };
}

/**
 * The source proxy's bytes when a target proxy is wanted (read as the caller, under its lock);
 * none for GLEXEC_TARGET_PROXY=/dev/null, which reads no source.
 */
function readTargetProxySourceEarly(caller: Caller, config: Config): Buffer | undefined {
  const request = targetProxyRequest(caller.env, config, caller.cwd);
  if (request === undefined || request.targetPath === DISCARD_TARGET) return undefined;
  return readTargetProxySource(request, caller, targetProxyLocks(config));
}

/** GLEXEC_SOURCE_PROXY (else the client proxy) copied for the payload, written as the target; `source` is zeroed. */
function copyTargetProxy(context: AdmittedRun): TargetProxyCopy | undefined {
  const { caller, target, config, log, targetProxySource: source } = context;
  const request = targetProxyRequest(caller.env, config, caller.cwd);
  if (request === undefined) return undefined;
  const written = writeTargetProxy(request, caller, target, targetProxyLocks(config), source);
  if (written.kind === 'discarded') {
    log.info('target proxy discarded: GLEXEC_TARGET_PROXY is /dev/null', { source: request.sourcePath });
    return { written };
  }
  log.info('target proxy written', { source: request.sourcePath, path: written.path });
  if (written.kind !== 'created') return { written };
  // A renewal finds the copy while glexec (the monitor, not this phase) still runs.
  const copy = {
    path: written.path,
    file: written.file,
    glexecPid: context.glexecPid,
    glexecStarted: glexecStartTime(context.glexecPid),
  };
  try {
    return {
      written,
      registration: registerCreatedProxy(
        targetProxyRegistry(config),
        registryKey(caller.uid, target.uid, request.sourcePath),
        copy,
      ),
    };
  } catch (error) {
    removeCreatedProxy(copy, target);
    throw error;
  }
}

/** The /tmp copy glexec created for this run goes once the payload, its leftovers and the epilogue are done. */
function removeTargetProxyCopy(copy: TargetProxyCopy | undefined, target: Target, log: Log): void {
  if (copy?.registration === undefined) return;
  try {
    const outcome = removeLocked(copy.registration, (latest) => removeCreatedProxy(latest, target));
    log.info('target proxy removed', { path: copy.written.path, outcome });
  } catch (error) {
    log.warn('target proxy not removed', { path: copy.written.path, error: String(error) });
  }
}

/** The payload's environment; X509_USER_PROXY is the target proxy when there is one (/dev/null when discarded). */
function buildEnvironment(
  caller: Caller,
  target: Target,
  targetProxy: string | undefined,
  config: Config,
  log: Log,
): Record<string, string> {
  const { env, dropped } = buildPayloadEnv(caller.env, config, target);
  for (const { name, why } of dropped) log.info('caller variable dropped', { name, why });
  if (targetProxy !== undefined) env.X509_USER_PROXY = targetProxy;
  return env;
}

interface PayloadRun {
  readonly pid: Pid;
  readonly cwd: string;
  readonly ending: Ending;
  readonly durationMs: number;
}

/** What phase 2 needs of phase 1's context, carried through the monitor as JSON. */
interface HandedOverState {
  readonly action: RunAction;
  readonly config: Config;
  readonly caller: Caller;
  readonly dn: string;
  readonly target: Target;
  readonly epilogue: EpilogueRunner | undefined;
  readonly containment: PayloadContainment;
  readonly targetProxy: TargetProxyCopy | undefined;
  readonly payloadEnv: Record<string, string>;
  /** What phase 1 logged: the per-call bound covers both phases. */
  readonly logUsage: LogUsage;
}

/** The end of phase 1: the plan for the monitor, which starts the payload as start-payload's options say. */
function handOver(context: PlannedRun): void {
  const { action, caller, target, containment, config, log, payloadEnv } = context;
  if (context.shim.planFd === undefined)
    throw systemError('shim.bad_args', 'glexec was not started by its shim (no plan descriptor)');
  if (containment.mode === 'pgid') log.notice('containment by process group', { reason: containment.reason });
  if (!config.linger) log.notice('linger = no is accepted, but this glexec always lingers');
  const limits = payloadLimitOptions(caller.limits);
  if (limits.length > 0) log.info("the payload gets the caller's resource limits", { limits });
  const who = { uid: target.uid, gid: target.gid, groups: target.groups, noNewPrivs: config.no_new_privs };
  const helperArgs = startPayloadArgs(who, action.payload, action.args, {
    cgroupProcs: cgroupProcsFiles(containment),
    limits,
    cwdFd: caller.cwdFd,
    home: target.home,
    noSymlink: config.prohibit_exec_via_symlink,
  });
  log.info('payload start handed to the monitor', { glexecPid: context.glexecPid, target: target.name });
  const state: HandedOverState = {
    action,
    config,
    caller: { ...caller, env: new Map(), limits: new Map(), cwdFd: undefined, stderrFd: undefined, proxy: undefined },
    dn: context.dn,
    target,
    epilogue: context.epilogue,
    containment,
    targetProxy: context.targetProxy,
    payloadEnv,
    logUsage: log.usage(),
  };
  const known = recordBeforeStart(context);
  const { trivial, epilogue, proxyCopy } = monitorConclusion(context);
  writePlan(
    context.shim.planFd,
    encodePlan({
      helperArgs,
      env: Object.entries(payloadEnv).map(([name, value]) => `${name}=${value}`),
      cgroup: containment.mode === 'cgroup' ? containment.job.path : '',
      recordFile: config.log_destination === 'file' ? config.log_file : '',
      recordFacility: syslogFacilityCode(config.syslog_facility),
      recordJson: JSON.stringify(known).slice(1, -1),
      recordText: formatSyslogText(known).trimStart(),
      silent: config.silent_logging,
      trivial,
      epilogue,
      proxyCopy,
      // The caller's environment is a Map: carried as its entries.
      state: JSON.stringify({ ...state, callerEnv: [...caller.env] }),
    }),
  );
}

/**
 * What the monitor may do itself once the payload has ended: conclude the run (trivialConclusion)
 * and, before that, run the epilogue (monitorEpilogue) and remove create_target_proxy's copy
 * (monitorProxyCopy), when the payload leaves nothing behind. An epilogue the monitor may not run
 * leaves the whole conclusion to phase 2.
 */
function monitorConclusion(
  context: PlannedRun,
): Partial<{ trivial: TrivialConclusion; epilogue: MonitorEpilogue; proxyCopy: MonitorProxyCopy }> {
  const trivial = trivialConclusion(context);
  if (trivial === undefined) return {};
  const registration = context.targetProxy?.registration;
  const proxyCopy = registration === undefined ? undefined : monitorProxyCopy(registration, context.target);
  if (context.epilogue === undefined) return { trivial, proxyCopy };
  const epilogue = monitorEpilogue(context, context.epilogue);
  return epilogue === undefined ? {} : { trivial, epilogue, proxyCopy };
}

/** The /tmp copy as the monitor removes it (shim/proxy-copy.c), with its record as it was written. */
function monitorProxyCopy(registration: Registration, target: Target): MonitorProxyCopy {
  const { copy, recordPath } = registration;
  return {
    uid: target.uid,
    gid: target.gid,
    dev: copy.file.dev,
    ino: copy.file.ino,
    recordPath,
    path: copy.path,
    recordText: recordText(copy),
  };
}

/**
 * The epilogue as the monitor runs it (shim/epilogue.c) when the payload's cgroup is empty once it
 * has ended: with the environment runEpilogue would give it, an empty leftover list (named here,
 * made by the monitor just before the epilogue, so that a glexec killed meanwhile leaves none),
 * and what the trust walk saw. Undefined (phase 2 then runs it) when the walk cannot be watched,
 * a value of the environment holds the slot byte, or the environment is too large for the monitor.
 */
function monitorEpilogue(context: PlannedRun, runner: EpilogueRunner): MonitorEpilogue | undefined {
  const { containment, config, target, caller, action, payloadEnv } = context;
  if (containment.mode !== 'cgroup') return undefined;
  const watch = monitorEpilogueWatch(runner, context.epilogueWatch);
  if (watch === undefined) return undefined;
  const list = leftoverList([], runner, config.runtime_directory);
  const env = monitorEpilogueEnvironment(runner, payloadEnv, {
    caller,
    target,
    payloadPath: action.payload,
    payloadArgs: action.args,
    glexecPid: context.glexecPid,
    containmentVariables: epilogueContainmentVariables(containment.job.path, target, {
      count: 0,
      file: list.path,
    }),
  });
  // The caller's GLEXEC_* variables can take the epilogue's environment past what the monitor reads: phase 2 runs it.
  if (env === undefined || env.length > MAX_ITEMS) return undefined;
  return {
    helperArgs: epilogueStartArgs({ uid: runner.uid, gid: runner.gid, groups: [runner.gid] }, runner.path),
    env,
    timeoutMs: Math.round(config.epilogue_timeout * 1000),
    graceMs: Math.round(config.kill_grace * 1000),
    leftoverList: list,
    watch,
  };
}

/** The record's `epilogue` of an epilogue that succeeded, as the monitor writes it (shim/epilogue.c). */
const EPILOGUE_OK_LARGEST = { result: 'ok', exitCode: 0, durationMs: Number.MAX_SAFE_INTEGER, leftovers: 'none' };

/** What the monitor fills in of a completion record it writes itself: the largest value of each, and its letter. */
function completionSlots(signalEndings: readonly string[], epilogue: boolean): Readonly<Record<string, AuditSlot>> {
  const endings = [...signalEndings, JSON.stringify({ code: 255 })];
  const longest = endings.reduce((a, b) => (b.length > a.length ? b : a));
  return {
    ...(epilogue ? { epilogue: { letter: 'D', largest: EPILOGUE_OK_LARGEST } } : {}),
    payloadPid: { letter: 'I', largest: 2 ** 31 - 1 },
    payloadPgid: { letter: 'G', largest: 2 ** 31 - 1 },
    ending: { letter: 'E', largest: JSON.parse(longest) as Ending },
    payloadRc: { letter: 'R', largest: 255 },
    exitCode: { letter: 'X', largest: 255 },
    payloadMs: { letter: 'M', largest: Number.MAX_SAFE_INTEGER },
    totalMs: { letter: 'A', largest: Number.MAX_SAFE_INTEGER },
  };
}

/** A string with a lone surrogate: its UTF-8 bytes would read back as another string. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * When the stages after the payload would do nothing but run the epilogue, remove the empty cgroup
 * and write the completion record, the monitor may do it all itself, from the templates made here
 * (docs/architecture.md, "A run with nothing to conclude"). It still runs phase 2 when the cgroup
 * is not empty, start-payload reported anything but one of these directories, the epilogue did
 * not succeed or left processes, or the log file is not as phase 1 left it (or nothing listens on
 * /dev/log). Undefined when phase 2 has work whatever the payload does: a process-group
 * containment or a v1 pids cgroup, or records below notice to write.
 */
function trivialConclusion(context: PlannedRun): TrivialConclusion | undefined {
  const { containment, epilogue, config, log, caller, target } = context;
  if (containment.mode !== 'cgroup' || containment.job.pidsPath !== undefined) return undefined;
  if (log.writesBelowNotice()) return undefined;
  // A log file's group, as phase 2 would set it again (syslog has none: 0, unused).
  const logGid = config.log_destination === 'file' ? findGroup(config.log_file_group)?.gid : 0;
  if (logGid === undefined) return undefined;
  // The record's `ending` for a payload ended by signal 1..64, as phase 2 would write it.
  const signalEndings = Array.from({ length: SIGNAL_COUNT }, (_, index) =>
    JSON.stringify(endingOfWaitStatus(index + 1)),
  );
  const slots = completionSlots(signalEndings, epilogue !== undefined);
  const records: { cwd: string; template: string }[] = [];
  // start-payload enters the caller's directory, else the target's home, and reports it on one line.
  for (const cwd of new Set([caller.cwd, target.home])) {
    if (cwd.includes('\n') || LONE_SURROGATE.test(cwd)) continue;
    const payload: PayloadRun = { pid: asPid(1), cwd, ending: { code: 0 }, durationMs: 0 };
    const cleanup: LeftoverCleanup = { mode: 'cgroup', outcome: 'none', durationMs: 0, survivors: 0 };
    const run: Completion = {
      epilogue:
        epilogue === undefined
          ? undefined
          : { outcome: { result: 'ok', exitCode: 0 }, durationMs: 0, leftovers: 'none' },
      leftovers: { count: 0, described: [] },
      cleanup,
      exitCode: 0,
      error: undefined,
    };
    const template = log.auditTemplate(COMPLETION, completionFields(context, payload, run, 0), slots);
    if (template === undefined) return undefined;
    records.push({ cwd, template });
  }
  return records.length === 0 ? undefined : { logGid, signalEndings, records };
}

/** Phase 2's state and the payload's outcome, from the record the monitor handed back. */
function takeBack(shim: ShimArgs): { state: HandedOverState; outcome: Outcome } {
  if (shim.planFd === undefined)
    throw systemError('shim.bad_args', 'glexec was not started by its shim (no plan descriptor)');
  const { plan, outcome } = decodeRecord(readHandedBack(shim.planFd));
  const parsed = JSON.parse(plan.state) as HandedOverState & { callerEnv: [string, string][] };
  const { callerEnv, ...state } = parsed;
  return { state: { ...state, caller: { ...state.caller, env: new Map(callerEnv), limits: new Map() } }, outcome };
}

/** The completion record's first fields, known before the payload starts (the monitor's minimal record has them too). */
function recordBeforeStart(context: AdmittedRun): Record<string, unknown> {
  const { caller, target, action } = context;
  return {
    caller: { user: caller.name, uid: caller.uid, gid: caller.gid, groups: caller.groups },
    target: { user: target.name, uid: target.uid, gid: target.gid, groups: target.groups },
    dn: context.dn,
    ...(target.fqans === undefined ? {} : { fqans: target.fqans }),
    id: caller.env.get('GLEXEC_ID'),
    command: [action.payload, ...action.args],
  };
}

/** The payload's run as the monitor saw it; start-payload's own failure is thrown. */
function payloadOutcome(context: AdmittedRun, outcome: Outcome): PayloadRun {
  const { log, target, action } = context;
  const pid = asPid(outcome.payloadPid);
  const status = parseHelperStatus(outcome.helperStatus);
  log.info('payload started', { payloadPid: pid, target: target.name, cwd: status.cwd });
  const ending = endingOfWaitStatus(outcome.waitStatus);
  throwStartFailure(status.failure, action.payload, target);
  const durationMs = outcome.payloadEndedMs - outcome.payloadStartedMs;
  log.info('payload ended', { payloadPid: pid, ending, durationMs });
  return { pid, cwd: status.cwd ?? '', ending, durationMs };
}

/** start-payload's own failure: glexec's (202), a symlink refused at exec (201), or the exec's (126). */
function throwStartFailure(failure: HelperStatus['failure'], payload: string, target: Target): void {
  if (failure === undefined) return;
  if (failure.kind === 'join')
    throw systemError('containment.join_failed', `cannot start the payload in its cgroup: ${failure.message}`);
  if (failure.kind === 'symlink')
    throw clientError('payload.symlink', `payload ${payload} is a symbolic link and prohibit_exec_via_symlink is set`);
  if (failure.kind === 'exec')
    throw new GlexecError(
      ExitCode.cannotExecute,
      'payload.exec_failed',
      `payload ${payload} cannot be executed by ${target.name}: ${failure.message}`,
    );
  throw systemError('payload.start_failed', `cannot start the payload: ${failure.message}`);
}

/** What the payload left running, logged process by process. */
function listLeftovers(context: RanRun): Leftovers {
  const { containment, log } = context;
  const leftovers = findLeftovers(containment, payloadProcess(context));
  if (leftovers.count > 0)
    log.notice('the payload left processes behind', {
      containment: containment.mode,
      count: leftovers.count,
      processes: leftovers.described,
    });
  return leftovers;
}

/**
 * Runs while the payload's leftovers are still alive, so that it can find them; it gets the
 * payload's cgroup and the list of leftovers (count, and a root-owned file). An epilogue the
 * monitor already ran (`byMonitor`) is reported, not run again.
 */
async function runEpilogueStage(
  context: RanRun,
  runner: EpilogueRunner,
  leftovers: Leftovers,
  byMonitor: MonitorEpilogueRun | undefined,
): Promise<EpilogueReport> {
  const { caller, target, action, payload, payloadEnv, containment, config, log } = context;
  const epilogueContext: Omit<EpilogueContext, 'containmentVariables'> = {
    caller,
    target,
    payloadPath: action.payload,
    payloadArgs: action.args,
    payloadPid: payload.pid,
    ending: payload.ending,
    glexecPid: context.glexecPid,
  };
  const leftoverFile =
    byMonitor !== undefined || containment.mode === 'off'
      ? undefined
      : writeLeftoverFile(leftovers.described, runner, config.runtime_directory);
  try {
    const containmentVariables = epilogueContainmentVariables(
      containment.mode === 'cgroup' ? containment.job.path : undefined,
      target,
      leftoverFile === undefined ? undefined : { count: leftovers.count, file: leftoverFile },
    );
    const report = byMonitor
      ? await reportMonitorEpilogue(byMonitor, runner, config.epilogue_timeout, config.kill_grace)
      : await runEpilogue(
          runner,
          payloadEnv,
          { ...epilogueContext, containmentVariables },
          config.epilogue_timeout,
          config.kill_grace,
        );
    const fields = {
      path: runner.path,
      user: runner.user,
      group: runner.group,
      ...report.outcome,
      durationMs: report.durationMs,
      leftovers: report.leftovers,
    };
    if (report.outcome.result === 'ok') log.info('epilogue succeeded', fields);
    else log.error(`epilogue failed: ${report.outcome.reason}`, fields);
    return report;
  } finally {
    // The monitor's list, when what its epilogue left could still read it (reportMonitorEpilogue has ended them).
    removeLeftoverFile(leftoverFile ?? (byMonitor?.leftoverFile || undefined));
  }
}

/**
 * After the epilogue: end what the payload left (kill_leftovers), remove its cgroup. After a
 * failure everything left is ended whatever kill_leftovers says, counted first if the run had not.
 */
async function cleanUpLeftovers(context: RanRun, afterFailure: boolean): Promise<LeftoverCleanup> {
  const { containment, config, log } = context;
  const payload = payloadProcess(context);
  if (afterFailure) {
    context.leftovers ??= countLeftoversAfterFailure(containment, payload);
    return await endLeftovers(containment, payload, true, config.kill_grace);
  }
  const remaining = config.kill_leftovers ? findLeftovers(containment, payload) : { count: 0, described: [] };
  if (remaining.count > 0)
    log.notice('ending what the payload left behind', {
      containment: containment.mode,
      count: remaining.count,
      processes: remaining.described,
    });
  const cleanup = await endLeftovers(containment, payload, config.kill_leftovers, config.kill_grace);
  if (cleanup.outcome !== 'none') log.notice('ended what the payload left behind', { ...cleanup });
  if (cleanup.survivors > 0) log.warn('processes of the payload are still running', { ...cleanup });
  return cleanup;
}

/** The leftovers when listing them was the stage that failed: unknown if they cannot be found now either. */
function countLeftoversAfterFailure(containment: PayloadContainment, payload: PayloadProcess): Leftovers | undefined {
  try {
    return findLeftovers(containment, payload);
  } catch {
    return undefined;
  }
}

const payloadProcess = (context: RanRun): PayloadProcess => ({ pid: context.payload.pid, uid: context.target.uid });

/** What the completion record says beyond the run's context. */
interface Completion {
  readonly epilogue: EpilogueReport | undefined;
  /** Unknown only when glexec failed while listing them and could not find them afterwards. */
  readonly leftovers: Leftovers | undefined;
  readonly cleanup: LeftoverCleanup | undefined;
  readonly exitCode: number;
  /** Set when glexec failed after the payload ran: the error's stable code. */
  readonly error: string | undefined;
}

function writeCompletionRecord(context: RanRun, run: Completion): Promise<AuditDelivery> {
  // From the start of glexec (the shim): what the job spent in glexec and its payload.
  const totalMs = Math.round(monotonicMs() - (context.startedMs ?? monotonicMs() - process.uptime() * 1000));
  return context.log.audit(COMPLETION, completionFields(context, context.payload, run, totalMs));
}

const COMPLETION = 'job completed';

/** The completion record's fields, in their order (the monitor's template of it has the same, trivialConclusion). */
function completionFields(context: AdmittedRun, payload: PayloadRun, run: Completion, totalMs: number): Fields {
  const { epilogue } = run;
  return {
    ...recordBeforeStart(context),
    cwd: payload.cwd,
    glexecPid: context.glexecPid,
    payloadPid: payload.pid,
    payloadPgid: payload.pid,
    ending: payload.ending,
    payloadRc: rawReturnCode(payload.ending),
    epilogue: epilogue
      ? { ...epilogue.outcome, durationMs: epilogue.durationMs, leftovers: epilogue.leftovers }
      : 'none',
    containment: run.cleanup?.mode,
    leftovers: run.leftovers?.count,
    cleanup: run.cleanup?.outcome ?? 'failed',
    survivors: run.cleanup?.survivors,
    ...(run.cleanup?.keptCgroup ? { keptCgroup: run.cleanup.keptCgroup } : {}),
    ...(run.error ? { error: run.error } : {}),
    exitCode: run.exitCode,
    payloadMs: payload.durationMs,
    totalMs,
  };
}

/**
 * A completion record that did not reach the configured destination makes the run a 202: the
 * site's audit trail is not where it should be. The record itself is in the other destination,
 * or, when neither took it, in this message (so it reaches at least the caller's stderr).
 */
function recordNotWritten(delivery: Exclude<AuditDelivery, { written: true }>): GlexecError {
  const failed = `the completion record could not be written to ${delivery.destination === 'file' ? 'the log file' : 'syslog'} (${delivery.reason})`;
  if (delivery.fallback === 'none')
    return systemError(
      'log.record_not_written',
      `${failed}, nor to ${delivery.destination === 'file' ? 'syslog' : 'the log file'}: ${delivery.line}`,
    );
  return systemError(
    'log.record_elsewhere',
    `${failed}; it was written to ${delivery.fallback === 'file' ? 'the log file' : 'syslog'} instead`,
  );
}

function logRefusal(log: Log, error: unknown): void {
  if (error instanceof GlexecError) log.error(error.message, { code: error.code, exitCode: error.exitCode });
  else log.error('internal error', { error: String(error) });
}
