/**
 * The hand-over between glexec's two phases (docs/architecture.md): phase 1 writes the plan, the
 * C monitor (shim/monitor.c) reads it, starts the payload from it and hands it back to phase 2
 * with the outcome appended. One versioned text format, parsed as strictly here as in C:
 * "glexec-plan 1\n", then fields "KEY LENGTH\nBYTES\n" (LENGTH in bytes) in a fixed order, then
 * "end 0\n\n".
 */

import { clientError } from './errors';

export const PLAN_MAGIC = 'glexec-plan 1\n';
/** The monitor's bounds (shim/monitor.c: MAX_ITEMS, FIELD_MAX, PLAN_MAX; start-payload's name is an item too). */
export const MAX_ITEMS = 65536;
const MAX_FIELD_BYTES = 16 << 20;
export const MAX_PLAN_BYTES = 64 << 20;

/** What the monitor needs to start the payload and, if phase 2 fails, to end it and record that. */
export interface Plan {
  /** start-payload's arguments (shim/start-payload.c), from its options to the payload's own. */
  readonly helperArgs: readonly string[];
  /** The payload's environment, `NAME=value`. */
  readonly env: readonly string[];
  /** The payload's cgroup v2 directory, '' without one. */
  readonly cgroup: string;
  /** Where the monitor's minimal record goes: this log file, or syslog when ''. */
  readonly recordFile: string;
  readonly recordFacility: number;
  /** The completion record's fields known before the start: JSON members without braces, and syslog text. */
  readonly recordJson: string;
  readonly recordText: string;
  /** silent_logging: the monitor's own messages stay off the caller's stderr too. */
  readonly silent: boolean;
  /** When the monitor may conclude the run itself instead of phase 2; undefined: phase 2 always runs. */
  readonly trivial: TrivialConclusion | undefined;
  /** The epilogue, when the monitor may run it itself (only with a trivial conclusion). */
  readonly epilogue: MonitorEpilogue | undefined;
  /** create_target_proxy's /tmp copy, when the monitor may remove it itself (only with a trivial conclusion). */
  readonly proxyCopy: MonitorProxyCopy | undefined;
  /** Phase 2's state (JSON); the monitor carries it unread. */
  readonly state: string;
}

/**
 * What the monitor needs to do phase 2's work when there is none but the completion record and the
 * removal of the payload's empty cgroup (docs/architecture.md, "A run with nothing to conclude").
 */
export interface TrivialConclusion {
  /** The log file's group; its mode goes with it (0640, or 0600 for root), as phase 2 would set them. */
  readonly logGid: number;
  /** The record's `ending` for a payload ended by signal 1, 2, … 64 (JSON, as the record has it). */
  readonly signalEndings: readonly string[];
  /**
   * The completion record as a template (slots: SLOT_BYTE and a letter, src/log/logger.ts), one for
   * each working directory start-payload may report; any other report leaves the record to phase 2.
   */
  readonly records: readonly { readonly cwd: string; readonly template: string }[];
}

/**
 * The epilogue as the monitor starts it when the payload left nothing (docs/architecture.md, "The
 * epilogue in the monitor"); anything else it meets (a path that changed since phase 1's trust
 * walk, a failure, a timeout, processes left in its group) goes to phase 2, with what happened.
 */
export interface MonitorEpilogue {
  /** start-payload's arguments for the epilogue, from its options to the epilogue's path. */
  readonly helperArgs: readonly string[];
  /** The epilogue's environment, `NAME=value`; the payload's pid, group and return code are slots (I, G, R). */
  readonly env: readonly string[];
  readonly timeoutMs: number;
  readonly graceMs: number;
  /**
   * GLEXEC_EPILOG_LEFTOVER_FILE, which the monitor creates (O_EXCL, root's, 0600 or 0640 with
   * `readerGid`) with `text` just before the epilogue and removes after it; undefined for none.
   */
  readonly leftoverList:
    { readonly path: string; readonly text: string; readonly readerGid: number | undefined } | undefined;
  /**
   * What the trust walk saw: every directory and file on the way to the epilogue and to its
   * interpreters, each as lstat gave it; a change in any of them sends the epilogue to phase 2.
   */
  readonly watch: readonly WatchedPath[];
}

export interface WatchedPath {
  readonly dev: bigint;
  readonly ino: bigint;
  /** st_ctime in nanoseconds: chmod, chown, a write all change it (compared for all but directories). */
  readonly ctimeNs: bigint;
  readonly uid: bigint;
  readonly gid: bigint;
  /** st_mode, the file type included. */
  readonly mode: bigint;
  readonly path: string;
}

/**
 * The /tmp copy of the target proxy and its registry record, as src/proxy/registry.ts made them.
 * The monitor removes the copy as removeLocked and removeCreatedProxy do, under the record's lock,
 * only while the record still holds `recordText` and the name the copy's inode; anything else
 * (a renewal rewrote the record, another file took the name) leaves the removal to phase 2.
 */
export interface MonitorProxyCopy {
  /** The target's ids, which the removal takes (only the copy's owner may unlink it in sticky /tmp). */
  readonly uid: number;
  readonly gid: number;
  readonly dev: number;
  readonly ino: number;
  readonly recordPath: string;
  readonly path: string;
  readonly recordText: string;
}

/** A watched path as the plan carries it (shim/epilogue.c reads it): "DEV INO CTIME_NS UID GID MODE PATH". */
export function watchedPathLine({ dev, ino, ctimeNs, uid, gid, mode, path }: WatchedPath): string {
  return `${dev} ${ino} ${ctimeNs} ${uid} ${gid} ${mode} ${path}`;
}

/** Signals 1..64: the monitor gets an `ending` for each. */
export const SIGNAL_COUNT = 64;

/** What the monitor appends once the payload has ended. */
export interface Outcome {
  readonly glexecPid: number;
  readonly payloadPid: number;
  /** The payload's wait status, as waitpid(2) gives it. */
  readonly waitStatus: number;
  /** What start-payload wrote on its status pipe. */
  readonly helperStatus: string;
  /** CLOCK_MONOTONIC milliseconds: glexec's start, the payload's start and end. */
  readonly startedMs: number;
  readonly payloadStartedMs: number;
  readonly payloadEndedMs: number;
  /** Set when the monitor ran the epilogue and left the rest to phase 2. */
  readonly epilogue: MonitorEpilogueRun | undefined;
}

/** The epilogue as the monitor ran it. */
export interface MonitorEpilogueRun {
  /** Its pid, which was its process group's id. */
  readonly pid: number;
  readonly waitStatus: number;
  /** The signal the monitor ended it with after epilogue_timeout: 0, 15 (SIGTERM) or 9 (SIGKILL, after kill_grace). */
  readonly endedBy: 0 | 9 | 15;
  readonly durationMs: number;
  /** Whether its process group still had members once it had exited. */
  readonly groupLeft: boolean;
  /** What start-payload wrote on its status pipe. */
  readonly helperStatus: string;
  /** The leftover list it got, which the monitor leaves to phase 2 when the epilogue left processes ('' for none). */
  readonly leftoverFile: string;
}

type Field = readonly [key: string, value: string];

/** One field as text: its length is the value's length in UTF-8 bytes, which the monitor counts. */
function encodeField([key, value]: Field): string {
  return `${key} ${Buffer.byteLength(value, 'utf8')}\n${value}\n`;
}

const END = 'end 0\n\n';

/** The plan as phase 1 writes it. A NUL cannot reach an argument or a variable, so none may be in a value. */
export function encodePlan(plan: Plan): Buffer {
  const fields: Field[] = [
    ...plan.helperArgs.map((arg): Field => ['helper-arg', arg]),
    ...plan.env.map((entry): Field => ['env', entry]),
    ['cgroup', plan.cgroup],
    ['record-file', plan.recordFile],
    ['record-facility', String(plan.recordFacility)],
    ['record-json', plan.recordJson],
    ['record-text', plan.recordText],
    ['silent', plan.silent ? '1' : '0'],
    ['trivial-log-gid', plan.trivial === undefined ? '' : String(plan.trivial.logGid)],
    ...(plan.trivial?.signalEndings ?? []).map((ending): Field => ['trivial-ending', ending]),
    ...(plan.trivial?.records ?? []).map(({ cwd, template }): Field => {
      if (cwd.includes('\n')) throw new Error(`a trivial record's directory holds a newline: ${JSON.stringify(cwd)}`);
      return ['trivial-record', `${cwd}\n${template}`];
    }),
    ...(plan.epilogue?.helperArgs ?? []).map((arg): Field => ['epilogue-arg', arg]),
    ...(plan.epilogue?.env ?? []).map((entry): Field => ['epilogue-env', entry]),
    ['epilogue-times', plan.epilogue === undefined ? '' : `${plan.epilogue.timeoutMs} ${plan.epilogue.graceMs}`],
    [
      'epilogue-leftover-list',
      plan.epilogue?.leftoverList === undefined ? '' : encodeLeftoverList(plan.epilogue.leftoverList),
    ],
    ...(plan.epilogue?.watch ?? []).map((watched): Field => ['epilogue-watch', watchedPathLine(watched)]),
    ['proxy-copy', plan.proxyCopy === undefined ? '' : encodeProxyCopy(plan.proxyCopy)],
    ['state', plan.state],
  ];
  if (
    plan.trivial !== undefined &&
    (plan.trivial.signalEndings.length !== SIGNAL_COUNT || plan.trivial.records.length === 0)
  )
    throw new Error('a trivial conclusion needs an ending for every signal and at least one record');
  if ((plan.epilogue !== undefined || plan.proxyCopy !== undefined) && plan.trivial === undefined)
    throw new Error("the monitor's epilogue or proxy removal needs a trivial conclusion");
  if (plan.epilogue !== undefined && plan.epilogue.helperArgs.length === 0)
    throw new Error("the monitor's epilogue needs start-payload's arguments");
  for (const [key, value] of fields)
    if (value.includes('\0')) throw new Error(`the plan's ${key} holds a NUL: ${JSON.stringify(value)}`);
  // The caller's arguments and environment make most of the plan: too much of them is the caller's
  // error, refused before the monitor would refuse the plan (and while phase 1 can still clean up).
  if (plan.helperArgs.length + 1 > MAX_ITEMS || plan.env.length > MAX_ITEMS)
    throw tooLarge(`more than ${MAX_ITEMS} arguments or environment variables`);
  // The monitor's epilogue is planned within these bounds (pipeline.ts monitorEpilogue); past them the monitor would refuse the plan.
  if (
    plan.epilogue !== undefined &&
    (plan.epilogue.helperArgs.length + 1 > MAX_ITEMS || plan.epilogue.env.length > MAX_ITEMS)
  )
    throw new Error(`the monitor's epilogue has more than ${MAX_ITEMS} arguments or environment variables`);
  const encoded = fields.map(encodeField);
  const longest = fields.reduce((most, [, value]) => Math.max(most, Buffer.byteLength(value)), 0);
  if (longest > MAX_FIELD_BYTES) throw tooLarge(`a part of it is larger than ${MAX_FIELD_BYTES} bytes`);
  // One string, encoded once: a Buffer a field cost more than the rest of the hand-over.
  const bytes = Buffer.from(PLAN_MAGIC + encoded.join('') + END, 'utf8');
  if (bytes.length > MAX_PLAN_BYTES) throw tooLarge(`it is larger than ${MAX_PLAN_BYTES} bytes`);
  return bytes;
}

/** The list's path, its group ('' for none), then its text. */
function encodeLeftoverList({ path, text, readerGid }: NonNullable<MonitorEpilogue['leftoverList']>): string {
  if (path.includes('\n') || !path.startsWith('/'))
    throw new Error(`a bad leftover list path: ${JSON.stringify(path)}`);
  return `${path}\n${readerGid ?? ''}\n${text}`;
}

function decodeLeftoverList(value: string): MonitorEpilogue['leftoverList'] {
  if (value === '') return undefined;
  const [, path, gid, text] = /^(\/[^\n]*)\n(\d*)\n(.*)$/s.exec(value) ?? [];
  if (path === undefined || gid === undefined || text === undefined)
    throw new Error('bad epilogue-leftover-list in the glexec plan');
  return { path, text, readerGid: gid === '' ? undefined : number(gid, 'epilogue-leftover-list') };
}

/** A line of numbers, then the record's path, the copy's path and the record's text (none may hold a newline). */
function encodeProxyCopy(copy: MonitorProxyCopy): string {
  const lines = [copy.recordPath, copy.path, copy.recordText];
  if (lines.some((line) => line.includes('\n'))) throw new Error('a proxy-copy line of the plan holds a newline');
  return [`${copy.uid} ${copy.gid} ${copy.dev} ${copy.ino}`, ...lines].join('\n');
}

function decodeProxyCopy(value: string): MonitorProxyCopy | undefined {
  if (value === '') return undefined;
  const [numbers, recordPath, path, recordText, ...rest] = value.split('\n');
  const fields = /^(\d+) (\d+) (\d+) (\d+)$/.exec(numbers ?? '')?.slice(1) ?? [];
  if (
    fields.length !== 4 ||
    recordPath === undefined ||
    path === undefined ||
    recordText === undefined ||
    rest.length > 0
  )
    throw new Error('bad proxy-copy in the glexec plan');
  const [uid, gid, dev, ino] = fields.map((field) => number(field, 'proxy-copy'));
  return { uid: uid ?? 0, gid: gid ?? 0, dev: dev ?? 0, ino: ino ?? 0, recordPath, path, recordText };
}

function tooLarge(why: string): Error {
  return clientError('plan.too_large', `the payload's arguments and environment are too large to hand over: ${why}`);
}

const OUTCOME_KEYS = [
  'glexec-pid',
  'payload-pid',
  'wait-status',
  'helper-status',
  'started-ms',
  'payload-started-ms',
  'payload-ended-ms',
] as const;

/** The fields of a record, in order, refusing anything that is not exactly the format. */
function splitFields(bytes: Buffer): Field[] {
  if (!bytes.subarray(0, PLAN_MAGIC.length).equals(Buffer.from(PLAN_MAGIC)))
    throw new Error('not a version 1 glexec plan');
  const fields: Field[] = [];
  let at = PLAN_MAGIC.length;
  for (;;) {
    const newline = bytes.indexOf(0x0a, at);
    const head = /^([a-z-]{1,32}) (0|[1-9][0-9]{0,8})$/.exec(
      newline < 0 ? '' : bytes.subarray(at, newline).toString('latin1'),
    );
    if (!head) throw new Error('bad field header in the glexec plan');
    const key = head[1] ?? '';
    const length = Number(head[2]);
    const start = newline + 1;
    if (length > MAX_FIELD_BYTES || start + length >= bytes.length || bytes[start + length] !== 0x0a)
      throw new Error(`bad length of field ${key} in the glexec plan`);
    const value = bytes.subarray(start, start + length);
    if (value.includes(0)) throw new Error(`field ${key} of the glexec plan holds a NUL`);
    at = start + length + 1;
    if (key === 'end') {
      if (length !== 0 || at !== bytes.length) throw new Error('bad end of the glexec plan');
      return fields;
    }
    fields.push([key, value.toString('utf8')]);
  }
}

function number(value: string, key: string): number {
  if (!/^-?(0|[1-9][0-9]{0,15})$/.test(value)) throw new Error(`field ${key} of the glexec plan is not a number`);
  return Number(value);
}

function flag(value: string): boolean {
  if (value !== '0' && value !== '1') throw new Error('field silent of the glexec plan is not 0 or 1');
  return value === '1';
}

function trivialConclusion(logGid: string, signalEndings: string[], records: string[]): TrivialConclusion | undefined {
  if (logGid === '') {
    if (signalEndings.length + records.length > 0)
      throw new Error('trivial fields without trivial-log-gid in the glexec plan');
    return undefined;
  }
  if (signalEndings.length !== SIGNAL_COUNT || records.length === 0)
    throw new Error('a trivial conclusion in the glexec plan needs every signal ending and a record');
  return {
    logGid: number(logGid, 'trivial-log-gid'),
    signalEndings,
    records: records.map((record) => {
      const newline = record.indexOf('\n');
      if (newline < 0) throw new Error('a trivial-record of the glexec plan has no directory line');
      return { cwd: record.slice(0, newline), template: record.slice(newline + 1) };
    }),
  };
}

/** The record phase 2 gets back: the plan, then the outcome. */
export function decodeRecord(bytes: Buffer): { plan: Plan; outcome: Outcome } {
  const fields = splitFields(bytes);
  let index = 0;
  const take = (key: string): string => {
    const field = fields[index];
    if (field?.[0] !== key) throw new Error(`field ${key} missing or out of order in the glexec plan`);
    index++;
    return field[1];
  };
  const repeated = (key: string): string[] => {
    const values: string[] = [];
    while (fields[index]?.[0] === key) values.push(take(key));
    return values;
  };
  // The order of encodePlan, and of plan_keys in shim/monitor.c.
  const plan: Plan = {
    helperArgs: repeated('helper-arg'),
    env: repeated('env'),
    cgroup: take('cgroup'),
    recordFile: take('record-file'),
    recordFacility: number(take('record-facility'), 'record-facility'),
    recordJson: take('record-json'),
    recordText: take('record-text'),
    silent: flag(take('silent')),
    trivial: trivialConclusion(take('trivial-log-gid'), repeated('trivial-ending'), repeated('trivial-record')),
    epilogue: monitorEpilogue(
      repeated('epilogue-arg'),
      repeated('epilogue-env'),
      take('epilogue-times'),
      decodeLeftoverList(take('epilogue-leftover-list')),
      repeated('epilogue-watch'),
    ),
    proxyCopy: decodeProxyCopy(take('proxy-copy')),
    state: take('state'),
  };
  const values = OUTCOME_KEYS.map((key) => take(key));
  const epilogueRun = fields[index]?.[0] === 'epilogue-run' ? take('epilogue-run') : undefined;
  const epilogueHelperStatus = epilogueRun === undefined ? undefined : take('epilogue-helper-status');
  if (index !== fields.length) throw new Error('unexpected fields at the end of the glexec plan');
  const [glexecPid, payloadPid, waitStatus, helperStatus, startedMs, payloadStartedMs, payloadEndedMs] = values;
  const outcome: Outcome = {
    glexecPid: number(glexecPid ?? '', 'glexec-pid'),
    payloadPid: number(payloadPid ?? '', 'payload-pid'),
    waitStatus: number(waitStatus ?? '', 'wait-status'),
    helperStatus: helperStatus ?? '',
    startedMs: number(startedMs ?? '', 'started-ms'),
    payloadStartedMs: number(payloadStartedMs ?? '', 'payload-started-ms'),
    payloadEndedMs: number(payloadEndedMs ?? '', 'payload-ended-ms'),
    epilogue:
      epilogueRun === undefined
        ? undefined
        : monitorEpilogueRun(epilogueRun, epilogueHelperStatus ?? '', plan.epilogue?.leftoverList?.path ?? ''),
  };
  return { plan, outcome };
}

function monitorEpilogue(
  helperArgs: string[],
  env: string[],
  times: string,
  leftoverList: MonitorEpilogue['leftoverList'],
  watch: string[],
): MonitorEpilogue | undefined {
  if (times === '') {
    if (helperArgs.length + env.length + watch.length > 0 || leftoverList !== undefined)
      throw new Error('epilogue fields without epilogue-times in the glexec plan');
    return undefined;
  }
  const [timeoutMs, graceMs] = /^(\d+) (\d+)$/.exec(times)?.slice(1) ?? [];
  if (timeoutMs === undefined || graceMs === undefined || helperArgs.length === 0)
    throw new Error('bad epilogue in the glexec plan');
  return {
    helperArgs,
    env,
    timeoutMs: number(timeoutMs, 'epilogue-times'),
    graceMs: number(graceMs, 'epilogue-times'),
    leftoverList,
    watch: watch.map((line) => {
      const [, dev, ino, ctimeNs, uid, gid, mode, path] =
        /^(\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\/.*)$/s.exec(line) ?? [];
      if (path === undefined) throw new Error('bad epilogue-watch in the glexec plan');
      const [devN, inoN, ctimeN, uidN, gidN, modeN] = [dev, ino, ctimeNs, uid, gid, mode].map((n) => BigInt(n ?? ''));
      return {
        dev: devN ?? 0n,
        ino: inoN ?? 0n,
        ctimeNs: ctimeN ?? 0n,
        uid: uidN ?? 0n,
        gid: gidN ?? 0n,
        mode: modeN ?? 0n,
        path,
      };
    }),
  };
}

/** "PID WAIT_STATUS ENDED_BY DURATION_MS GROUP_LEFT", as shim/epilogue.c writes it. */
function monitorEpilogueRun(line: string, helperStatus: string, leftoverFile: string): MonitorEpilogueRun {
  const [pid, waitStatus, endedBy, durationMs, groupLeft] =
    /^(\d+) (\d+) (0|9|15) (\d+) ([01])$/.exec(line)?.slice(1) ?? [];
  if (pid === undefined || waitStatus === undefined || durationMs === undefined)
    throw new Error('bad epilogue-run in the glexec plan');
  return {
    pid: number(pid, 'epilogue-run'),
    waitStatus: number(waitStatus, 'epilogue-run'),
    endedBy: Number(endedBy) as MonitorEpilogueRun['endedBy'],
    durationMs: number(durationMs, 'epilogue-run'),
    groupLeft: groupLeft === '1',
    helperStatus,
    leftoverFile,
  };
}
