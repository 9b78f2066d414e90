/**
 * What both entry points share (main.ts for a run's first phase and every other mode,
 * main-conclude.ts for a run's second phase): the shim's arguments, the caller's stderr, and the
 * one place that prints errors and exits.
 */
import { parseShimArgs, type ShimArgs } from './caller';
import { ExitCode, GlexecError } from './errors';
import { escapeControl } from './log/sanitize';
import type { Reporter } from './pipeline';
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

/** Runs `run` with the shim's arguments and a reporter; its result is the exit code. */
export function runEntry(run: (shim: ShimArgs, reporter: Reporter) => Promise<number>): void {
  // An error thrown outside the run's promise chain still ends the payload and reports.
  process.on('uncaughtException', fail);
  process.on('unhandledRejection', fail);
  let shim;
  try {
    shim = parseShimArgs(process.argv.slice(2));
    if (shim.stderrFd !== undefined) useCallerStderr(shim.stderrFd);
  } catch (error) {
    fail(error);
  }
  run(shim, {
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
