/**
 * Entry point of the program the setuid shim runs (as root, with all ids 0). The only place that
 * prints errors and exits.
 */
import { holdSignals } from './linger';

// First of all, so that no signal ends this phase half-way. (SIGUSR1 can no longer open Node's
// inspector before this: the shim gives Node an inspector address that never binds.)
holdSignals();

import { parseShimArgs } from './caller';
import { ExitCode, GlexecError } from './errors';
import { escapeControl } from './log/sanitize';
import { dispatch } from './pipeline';
import { writeWithDeadline } from './sys/proc';
import { useCallerStderr, writeToCaller } from './sys/stderr';

let silent = false;

/** One line on the caller's stderr, unless the site asked for silence. */
function tellCaller(message: string): void {
  if (!silent) writeToCaller(`glexec: ${escapeControl(message)}\n`);
}

function fail(error: unknown): never {
  const known = error instanceof GlexecError;
  const message = known ? error.message : `internal error: ${error instanceof Error ? error.message : String(error)}`;
  tellCaller(message);
  process.exit(known ? error.exitCode : ExitCode.system);
}

// An error thrown outside the run's promise chain still ends the payload and reports.
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

function main(): void {
  let shim;
  try {
    shim = parseShimArgs(process.argv.slice(2));
    if (shim.stderrFd !== undefined) useCallerStderr(shim.stderrFd);
  } catch (error) {
    fail(error);
  }
  dispatch(shim, {
    out: (text) => writeWithDeadline(1, text),
    silence: () => {
      silent = true;
    },
    warn: (text) => {
      if (!silent) writeToCaller(`glexec: warning: ${escapeControl(text)}\n`);
    },
    error: tellCaller,
  }).then((code) => process.exit(code), fail);
}

main();
