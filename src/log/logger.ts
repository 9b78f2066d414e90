/**
 * The log: pino, written synchronously (nothing may be lost at exit, and no worker threads run in
 * the root process), to a JSON-lines file or to syslog as plain text. Every string is sanitized.
 * The completion record is an audit record: it is written whatever log_level says.
 */
import { dirname } from 'node:path';
import pino from 'pino';
import { isoTimestamp } from '../clock';
import type { Config } from '../config/schema';
import { systemError } from '../errors';
import { lstatPath, makeDirectory, openRootLogFile, UntrustedFile, writeAll } from '../sys/files';
import { findGroup } from '../sys/identity';
import { openSyslog, SYSLOG_SOCKET, syslogListening, type SyslogPriority, writeSyslog } from '../sys/syslog';
import { requireTrustedPath } from '../trust';
import { boundRecord, escapeControl } from './sanitize';

export type Level = 'error' | 'warn' | 'notice' | 'info' | 'debug';
export type Fields = Record<string, unknown>;

export interface Log {
  error(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  notice(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  debug(msg: string, fields?: Fields): void;
  /**
   * Written at notice priority regardless of log_level and of the per-call bound: the job's audit
   * trail. When the configured destination fails, the record goes to the other one.
   */
  audit(msg: string, fields: Fields): Promise<AuditDelivery>;
  /** What this call has logged so far: a run's second phase goes on from its first's. */
  usage(): LogUsage;
  /** Whether records below notice (info, debug) are written. */
  writesBelowNotice(): boolean;
  /** The line `audit(msg, fields)` would write now, as a template with slots (renderAuditTemplate). */
  auditTemplate(msg: string, fields: Fields, slots: Readonly<Record<string, AuditSlot>>): string | undefined;
}

/** The per-call bound's account: bytes of ordinary records written, records left out past the bound. */
export interface LogUsage {
  readonly bytesWritten: number;
  readonly recordsLeftOut: number;
}

/** gLExec's log_level (0..5) → the least severe level written; 0 writes nothing but audits. */
const thresholdByLogLevel: readonly (Level | 'none')[] = ['none', 'error', 'warn', 'notice', 'info', 'debug'];
const severity: Record<Level, number> = { error: 50, warn: 40, notice: 35, info: 30, debug: 20 };
const syslogPriority: Record<Level, SyslogPriority> = {
  error: 'err',
  warn: 'warning',
  notice: 'notice',
  info: 'info',
  debug: 'debug',
};

export const MIN_LOG_LEVEL = 0;
export const MAX_LOG_LEVEL = 5;

/** Clamps log_level as gLExec does, with its warning texts. */
export function clampLogLevel(requested: number): { level: number; warning?: string } {
  if (requested < MIN_LOG_LEVEL) {
    return {
      level: MIN_LOG_LEVEL,
      warning: `Specified loglevel ${requested} is too small, using min. log level ${MIN_LOG_LEVEL}.`,
    };
  }
  if (requested > MAX_LOG_LEVEL) {
    return {
      level: MAX_LOG_LEVEL,
      warning: `Specified loglevel ${requested} is too large, using max. log level ${MAX_LOG_LEVEL}.`,
    };
  }
  return { level: requested };
}

/** A string value as is when it is one plain word, else JSON-quoted (so `"` and `\\` are escaped). */
function quoteIfNeeded(value: string): string {
  return /^[^\s"=\\]+$/.test(value) ? value : JSON.stringify(value);
}

/** Plain-text syslog line: the message, then key=value pairs (values JSON-quoted when needed). */
export function formatSyslogText(record: Record<string, unknown>): string {
  const skip = new Set(['level', 'time', 'pid', 'msg']);
  const parts = [escapeControl(String(record.msg ?? ''))];
  for (const [key, value] of Object.entries(record)) {
    if (skip.has(key) || value === undefined) continue;
    const text = typeof value === 'string' ? quoteIfNeeded(value) : JSON.stringify(value);
    parts.push(`${key}=${escapeControl(text)}`);
  }
  return parts.join(' ');
}

/** Where records go. `write` throws when a record could not be written. */
interface Sink {
  readonly destination: 'file' | 'syslog';
  write(line: string): void;
}

function syslogSink(config: Config): Sink {
  openSyslog(config.syslog_facility);
  return {
    destination: 'syslog',
    write(line: string) {
      const record = JSON.parse(line) as Record<string, unknown>;
      const level = (record.level as Level | undefined) ?? 'notice';
      writeSyslog(config.diff_syslog_levels ? syslogPriority[level] : 'notice', formatSyslogText(record));
    },
  };
}

/**
 * PRIVILEGE: the log file is opened by root, so it is opened as carefully as a config file:
 * its directory must be trusted (only root can change it), the last component is never
 * followed if it is a symlink, and the opened file must be a root-owned regular file with one link.
 */
function openLogFile(config: Config): number {
  const path = config.log_file;
  const dir = dirname(path);
  try {
    lstatPath(dir);
  } catch {
    // Create the last directory only; its parent must already be trusted.
    requireTrustedPath(
      'log directory parent',
      dirname(dir),
      { trustedUids: [], trustedGids: [], finalType: 'directory' },
      lstatPath,
      'log.untrusted',
    );
    makeDirectory(dir, 0o755);
  }
  requireTrustedPath(
    'log directory',
    dir,
    { trustedUids: [], trustedGids: [], finalType: 'directory' },
    lstatPath,
    'log.untrusted',
  );
  const group = findGroup(config.log_file_group);
  if (group === undefined)
    throw systemError('log.bad_group', `log_file_group '${config.log_file_group}' does not exist`);
  try {
    return openRootLogFile(path, group.gid);
  } catch (error) {
    if (error instanceof UntrustedFile) throw systemError('log.untrusted', error.message);
    throw systemError(
      'log.unopenable',
      `cannot open log file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
}

function fileSink(config: Config): Sink {
  const fd = openLogFile(config);
  return {
    destination: 'file',
    write(line: string) {
      // One record, written in full or reported (ENOSPC, EIO, EFBIG): never dropped unseen.
      writeAll(fd, Buffer.from(line));
    },
  };
}

/** The other destination, when the configured one failed; undefined when it cannot be used either. */
async function fallbackSink(config: Config, failed: Sink['destination']): Promise<Sink | undefined> {
  try {
    if (failed === 'syslog') return fileSink(config);
    return (await syslogListening()) ? syslogSink(config) : undefined;
  } catch {
    return undefined;
  }
}

/** How many bytes of ordinary records one call may write; the completion record is always written. */
export const MAX_LOGGED_BYTES_PER_CALL = 32 * 1024;

/**
 * What became of the completion record: written where the configuration says, or else where it
 * went instead (the other destination), or not written at all (`line` is the record, for stderr).
 */
export type AuditDelivery =
  | { readonly written: true }
  | {
      readonly written: false;
      readonly destination: Sink['destination'];
      readonly reason: string;
      readonly fallback: Sink['destination'];
    }
  | {
      readonly written: false;
      readonly destination: Sink['destination'];
      readonly reason: string;
      readonly fallback: 'none';
      readonly line: string;
    };

export function openLog(
  config: Config,
  logLevel: number,
  usedBefore: LogUsage = { bytesWritten: 0, recordsLeftOut: 0 },
): Log {
  const sink = config.log_destination === 'file' ? fileSink(config) : syslogSink(config);
  let lastLine = '';
  let lastFailure: string | undefined;
  const stream = {
    write(line: string) {
      lastLine = line;
      lastFailure = undefined;
      try {
        sink.write(line);
      } catch (error) {
        lastFailure = (error as NodeJS.ErrnoException).code ?? String(error);
      }
    },
  };
  // pino's isoTime, with isoTimestamp for toISOString (src/clock.ts says why).
  const logger = glexecPino(stream, process.pid, () => `,"time":"${isoTimestamp(Date.now())}"`);
  const threshold = thresholdByLogLevel[logLevel] ?? 'notice';
  const auditFields = (fields: Fields): Fields => (recordsLeftOut > 0 ? { ...fields, recordsLeftOut } : fields);
  const write = (level: Level, msg: string, fields: Fields | undefined): void => {
    const record = boundRecord(msg, fields);
    logger[level](record.fields, record.msg);
  };
  // What one call may add to the log is bounded: a caller can make many records (one per dropped variable).
  let { bytesWritten, recordsLeftOut } = usedBefore;
  const at =
    (level: Level) =>
    (msg: string, fields?: Fields): void => {
      if (threshold === 'none' || severity[level] < severity[threshold]) return;
      if (bytesWritten >= MAX_LOGGED_BYTES_PER_CALL) {
        if (recordsLeftOut++ === 0)
          write('warn', 'this call has written as much to the log as one call may; further records are left out', {
            maxBytes: MAX_LOGGED_BYTES_PER_CALL,
          });
        return;
      }
      write(level, msg, fields);
      bytesWritten += Buffer.byteLength(lastLine);
    };
  return {
    error: at('error'),
    warn: at('warn'),
    notice: at('notice'),
    info: at('info'),
    debug: at('debug'),
    usage: () => ({ bytesWritten, recordsLeftOut }),
    writesBelowNotice: () => threshold !== 'none' && severity[threshold] < severity.notice,
    auditTemplate: (msg, fields, slots) => renderAuditTemplate(msg, auditFields(fields), slots, sink.destination),
    async audit(msg, fields) {
      write('notice', msg, auditFields(fields));
      const line = lastLine;
      const reason =
        lastFailure ??
        (sink.destination === 'syslog' && !(await syslogListening())
          ? `nothing listens on ${SYSLOG_SOCKET}`
          : undefined);
      if (reason === undefined) return { written: true };
      const fallback = await fallbackSink(config, sink.destination);
      if (fallback !== undefined) {
        try {
          fallback.write(line);
          return { written: false, destination: sink.destination, reason, fallback: fallback.destination };
        } catch {
          // Neither destination took it.
        }
      }
      return { written: false, destination: sink.destination, reason, fallback: 'none', line: line.trimEnd() };
    },
  };
}

/** pino as glexec's log uses it: the records and their templates (renderAuditTemplate) come from here alone. */
function glexecPino(stream: { write(line: string): void }, pid: number | string, timestamp: () => string) {
  return pino(
    {
      level: 'debug',
      customLevels: { notice: severity.notice },
      base: { pid },
      timestamp,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

/**
 * A field of an audit record that is known only later (by the C monitor): the largest value it can
 * take, and the letter that stands for it in the template.
 */
export interface AuditSlot {
  readonly letter: string;
  readonly largest: unknown;
}

/** The start of a slot in a template: no record glexec writes holds this byte (JSON and escapeControl escape it). */
export const SLOT_BYTE = '\x01';
/** Stands for a slot while the template is rendered; a record holding it already gets no template. */
const MARK = '\uE000';

/**
 * The line `audit(msg, fields)` would write to `destination`, as a template: the `time` and `pid`
 * of pino (not in syslog's text) and the `slots` fields are SLOT_BYTE and a letter (T, P, and each
 * slot's own), every other byte as the record will have it. Undefined when the record cannot be rendered ahead exactly: when bounding
 * would cut it with the slots at their largest (the cut would then depend on their values), or
 * when its text holds MARK or SLOT_BYTE by itself.
 */
function renderAuditTemplate(
  msg: string,
  fields: Fields,
  slots: Readonly<Record<string, AuditSlot>>,
  destination: Sink['destination'],
): string | undefined {
  const largest = { ...fields };
  for (const [key, slot] of Object.entries(slots)) largest[key] = slot.largest;
  const bounded = boundRecord(msg, largest);
  if ('truncated' in bounded.fields || Object.keys(bounded.fields).length !== Object.keys(largest).length)
    return undefined;
  const marked: Fields = { ...bounded.fields };
  const letters: Record<string, string> = { T: `${MARK}T`, P: `${MARK}P` };
  for (const [key, slot] of Object.entries(slots)) {
    if (slot.letter in letters || !/^[A-Z]$/.test(slot.letter)) throw new Error(`bad audit slot letter ${slot.letter}`);
    letters[slot.letter] = `${MARK}${slot.letter}`;
    marked[key] = `${MARK}${slot.letter}`;
  }
  let line = '';
  const stream = { write: (text: string) => (line = text) };
  glexecPino(stream, letters.P ?? '', () => `,"time":${JSON.stringify(letters.T)}`).notice(marked, bounded.msg);
  // For syslog, the text its sink makes of that line: no time or pid, a slot's value unquoted.
  const syslog = destination === 'syslog';
  let template = syslog ? formatSyslogText(JSON.parse(line) as Record<string, unknown>) : line;
  if (syslog) for (const skipped of ['T', 'P']) delete letters[skipped];
  for (const [letter, mark] of Object.entries(letters)) {
    const parts = template.split(syslog ? mark : JSON.stringify(mark));
    if (parts.length !== 2) return undefined;
    template = parts.join(`${SLOT_BYTE}${letter}`);
  }
  if (template.includes(MARK) || template.split(SLOT_BYTE).length !== Object.keys(letters).length + 1) return undefined;
  return template;
}

/** Best effort, for errors before the configured log exists: syslog at the default facility. */
export function logEarlyError(message: string): void {
  try {
    openSyslog('daemon');
    writeSyslog('err', escapeControl(message));
  } catch {
    // Nothing more can be done; the caller still gets the message on stderr.
  }
}
