/**
 * Whether the epilogue's exec can take its environment, checked before the payload starts: found
 * only after the payload ran, an E2BIG would leave the site's cleanup undone. The kernel allows
 * argv and environment strings plus their pointers up to a quarter of the stack limit (at most
 * 6 MiB, at least 128 KiB), and each string up to 128 KiB.
 */
import type { Caller } from './caller';
import { clientError } from './errors';
import { environmentEntryBytes, epilogueEnvironment, type EpilogueRunner, epilogueVariables } from './epilogue';
import { posix } from './sys/posix';
import type { Target } from './target';

/** The kernel's bounds (fs/exec.c): ARG_MAX, 3/4 of _STK_LIM, MAX_ARG_STRLEN. */
const EXEC_FLOOR_BYTES = 32 * 4096;
const EXEC_CEILING_BYTES = 6 * 1024 * 1024;
const MAX_STRING_BYTES = 32 * 4096;
/** For what is known only after the payload: its pid and return code, the leftover count and file, the cgroup path; and start-payload's arguments. */
const LATE_VARIABLES_BYTES = 8 * 1024;
const POINTER_BYTES = 8;

/** How many bytes of strings and pointers an exec may take under glexec's own stack limit. */
export function execArgumentLimit(): number {
  const stack = posix().getrlimit('stack').soft;
  const quarter = stack === null ? EXEC_CEILING_BYTES : Math.floor(stack / 4);
  return Math.max(EXEC_FLOOR_BYTES, Math.min(EXEC_CEILING_BYTES, quarter));
}

/** 201 when the epilogue could not be started with this payload environment (the caller's GLEXEC_* variables). */
export function checkEpilogueEnvironment(
  runner: EpilogueRunner,
  payloadEnv: Record<string, string>,
  context: { caller: Caller; target: Target; payloadPath: string; payloadArgs: readonly string[] },
): void {
  const variables = epilogueVariables(
    { ...context, payloadPid: 0, ending: { code: 0 }, containmentVariables: {} },
    runner.path,
  );
  const entries = Object.entries(epilogueEnvironment(runner, payloadEnv, variables));
  const longest = Math.max(0, ...entries.map(([name, value]) => environmentEntryBytes(name, value)));
  const bytes = entries.reduce(
    (sum, [name, value]) => sum + environmentEntryBytes(name, value) + POINTER_BYTES,
    LATE_VARIABLES_BYTES,
  );
  const limit = execArgumentLimit();
  if (bytes > limit || longest > MAX_STRING_BYTES) {
    throw clientError(
      'epilogue.environment_too_large',
      `the epilogue could not be given its environment (${bytes} bytes, at most ${limit}, one variable at most ${MAX_STRING_BYTES}): the caller's GLEXEC_* variables are too large`,
    );
  }
}
