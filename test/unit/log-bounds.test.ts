/** The bounds on one log record: strings cut after escaping, never inside an escape, records held to 4 kB. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { boundRecord, MAX_RECORD_BYTES, sanitizeDeep } from '../../src/log/sanitize';

describe('log record bounds', () => {
  it('a string of control characters is cut after escaping and never inside an escape sequence', () => {
    const cut = sanitizeDeep(`a${'\n'.repeat(2000)}`) as string;
    assert.equal(cut, `a${'\\x0A'.repeat(255)}…[${8001 - 1021} more characters]`);
  });

  it('a string is not cut between the two halves of a surrogate pair', () => {
    const cut = sanitizeDeep(`${'b'.repeat(1023)}😀tail`) as string;
    assert.ok(cut.startsWith(`${'b'.repeat(1023)}…[`), cut.slice(1020, 1030));
  });

  it('64 long arguments full of control characters give a record of at most 4 kB that counts what was cut', () => {
    const { msg, fields } = boundRecord('job completed', {
      command: Array.from({ length: 100 }, () => '\u0001'.repeat(100_000)),
      exitCode: 3,
    });
    assert.equal(msg, 'job completed');
    assert.ok(Buffer.byteLength(JSON.stringify({ msg, ...fields })) <= MAX_RECORD_BYTES);
    assert.equal(fields.exitCode, 3);
    const truncated = fields.truncated as { strings: number; items: number };
    assert.ok(truncated.strings > 0 && truncated.items > 0, JSON.stringify(truncated));
  });

  it('a record too large even at the tightest bounds keeps its numbers and says how large it was', () => {
    const fields = Object.fromEntries(Array.from({ length: 500 }, (_, index) => [`key${index}`, 'x'.repeat(100)]));
    const { fields: bounded } = boundRecord('many fields', { ...fields, exitCode: 0 });
    assert.equal(bounded.exitCode, 0);
    assert.ok((bounded.truncated as { recordBytes: number }).recordBytes > MAX_RECORD_BYTES);
    assert.equal(Object.keys(bounded).length, 2);
  });

  it('a small record is left as it is', () => {
    assert.deepEqual(boundRecord('payload started', { payloadPid: 12, cwd: '/tmp' }), {
      msg: 'payload started',
      fields: { payloadPid: 12, cwd: '/tmp' },
    });
  });
});
