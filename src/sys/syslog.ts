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

export function writeSyslog(priority: SyslogPriority, message: string): void {
  posix().syslog(constant(priority), message);
}
