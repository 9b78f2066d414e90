/** libc syslog(3) through the posix addon, with ident `glexec` and the pid. */
import { posix } from './posix';
import type { SyslogFacility } from '../config/schema';

export type SyslogPriority = 'err' | 'warning' | 'notice' | 'info' | 'debug';

let constants: Record<string, number> | undefined;

function constant(name: string): number {
  if (constants === undefined) {
    constants = {};
    posix().update_syslog_constants(constants);
  }
  const value = constants[name];
  if (value === undefined) throw new Error(`unknown syslog constant ${name}`);
  return value;
}

/** Opens the log with LOG_PID|LOG_NDELAY, so the socket exists before any payload runs. */
export function openSyslog(facility: SyslogFacility): void {
  posix().openlog('glexec', constant('pid') | constant('ndelay'), constant(facility));
}

/** The facility's number, as openlog(3) takes it (the monitor's minimal record uses it). */
export function syslogFacilityCode(facility: SyslogFacility): number {
  return constant(facility);
}

export function writeSyslog(priority: SyslogPriority, message: string): void {
  posix().syslog(constant(priority), message);
}

export const SYSLOG_SOCKET = '/dev/log';

/** For the caller (each run) and for `glexec --check`. */
export const SYSLOG_UNHEARD =
  'log_destination = syslog, but nothing listens on /dev/log: log records are lost, and the completion record goes to the log file instead (exit 202)';

/**
 * Whether a syslog daemon listens on /dev/log. libc syslog(3) drops messages silently when none
 * does, so glexec asks first. A stream connect to a datagram socket (rsyslog, journald) fails
 * with EPROTOTYPE, which proves that something is bound there; a connect that succeeds is a
 * stream listener (some syslog-ng setups). ENOENT, ECONNREFUSED (a socket file left behind by a
 * daemon that died) and anything else: nobody listens.
 */
export function syslogListening(path = SYSLOG_SOCKET): Promise<boolean> {
  // Loaded here: a run that logs to a file never needs node:net (~1 ms at start-up).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { connect } = require('node:net') as typeof import('node:net');
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(error.code === 'EPROTOTYPE');
    });
  });
}
