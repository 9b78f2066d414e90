/** Assertions the unit tests share. */
import assert from 'node:assert/strict';
import { GlexecError } from '../../src/errors';

/** Runs `fn`, which must throw a GlexecError, and returns that error for closer checks. */
export function thrown(fn: () => unknown): GlexecError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof GlexecError, String(error));
    return error;
  }
  assert.fail('expected a GlexecError');
}

/** What a finished glexec run (or any process) left: its exit status and its stderr. */
export interface Finished {
  readonly status: number | null;
  readonly stderr: string;
}

/**
 * A refusal: exit code `status` and exactly one line on stderr, equal to `message` (a string,
 * without its newline) or matching it (a RegExp, tested against the line without its newline).
 */
export function assertRefused(result: Finished, status: number, message: string | RegExp): void {
  assert.equal(result.status, status, `exit code; stderr: ${result.stderr}`);
  assert.ok(
    result.stderr.endsWith('\n') && result.stderr.indexOf('\n') === result.stderr.length - 1,
    `one line on stderr: ${JSON.stringify(result.stderr)}`,
  );
  const line = result.stderr.slice(0, -1);
  if (typeof message === 'string') assert.equal(line, message);
  else assert.match(line, message);
}
