import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertRefused } from '../helpers/assertions';
import { missingTool, requireTools } from '../helpers/tools';

describe('assertRefused', () => {
  it('accepts the exit code and exactly the one line, as a string or a pattern', () => {
    assertRefused({ status: 201, stderr: 'glexec: usage\n' }, 201, 'glexec: usage');
    assertRefused({ status: 203, stderr: 'glexec: not allowed\n' }, 203, /^glexec: not allowed$/);
  });

  it('fails on another exit code, a second line, a missing newline or another message', () => {
    assert.throws(() => assertRefused({ status: 202, stderr: 'glexec: usage\n' }, 201, 'glexec: usage'), /exit code/);
    assert.throws(
      () => assertRefused({ status: 201, stderr: 'glexec: warning\nglexec: usage\n' }, 201, /usage/),
      /one line on stderr/,
    );
    assert.throws(
      () => assertRefused({ status: 201, stderr: 'glexec: usage' }, 201, 'glexec: usage'),
      /one line on stderr/,
    );
    assert.throws(
      () => assertRefused({ status: 201, stderr: 'glexec: other\n' }, 201, 'glexec: usage'),
      assert.AssertionError,
    );
  });
});

describe('a missing tool', () => {
  it('is named with the apt-get command that installs it, as a skip reason and as a failure', () => {
    const path = process.env.PATH;
    // /nonexistent only: a tool outside the sbin directories cannot be found.
    process.env.PATH = '/nonexistent';
    try {
      assert.equal(missingTool('socat'), 'socat is not installed: apt-get install socat');
      assert.equal(missingTool('man'), 'man is not installed: apt-get install man-db');
      assert.throws(() => requireTools('openssl'), { message: 'openssl is not installed: apt-get install openssl' });
    } finally {
      process.env.PATH = path;
    }
  });

  it('is no reason to skip when it is on the PATH', () => {
    assert.equal(missingTool('mount'), false);
  });
});
