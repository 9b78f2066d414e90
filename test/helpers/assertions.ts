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
