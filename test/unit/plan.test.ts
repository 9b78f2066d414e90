import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeRecord, encodePlan, type Plan } from '../../src/plan';
import { endingOfWaitStatus } from '../../src/exitcode';

const plan: Plan = {
  helperArgs: ['--uid=1001', '--gid=1001', '--groups=1001,27', '--', '/usr/bin/printf', 'a\nb', 'é'],
  env: ['PATH=/usr/bin:/bin', 'EMPTY=', 'MULTI=line one\nline two'],
  cgroup: '/sys/fs/cgroup/glexec/job-1-abcd',
  recordFile: '/var/log/glexec/glexec_log',
  recordFacility: 24,
  recordJson: '"caller":{"user":"pilot"}',
  recordText: 'caller={"user":"pilot"}',
  silent: true,
  trivial: undefined,
  epilogue: undefined,
  proxyCopy: undefined,
  state: '{"action":{"payload":"/usr/bin/printf"}}',
};

const trivial: Plan = {
  ...plan,
  trivial: {
    logGid: 4,
    signalEndings: Array.from({ length: 64 }, (_, index) => JSON.stringify(endingOfWaitStatus(index + 1))),
    records: [
      { cwd: '/home/pilot dir', template: '{"level":"notice","time":\x01T,"cwd":"/home/pilot dir"}\n' },
      { cwd: '/home/é', template: '{"cwd":"/home/é","exitCode":\x01X}\n' },
    ],
  },
};

/** What the monitor appends (shim/monitor.c), in its order. */
function outcomeFields(fields: Record<string, string>): string {
  return Object.entries(fields)
    .map(([key, value]) => `${key} ${Buffer.byteLength(value)}\n${value}\n`)
    .join('');
}

const outcome = {
  'glexec-pid': '4242',
  'payload-pid': '4243',
  'wait-status': '256',
  'helper-status': 'cwd /home/pilot\n',
  'started-ms': '1000',
  'payload-started-ms': '1100',
  'payload-ended-ms': '1600',
};

/** The plan as the monitor hands it back: without its end, the outcome, then the end. */
function handedBack(encoded: Buffer, fields: Record<string, string> = outcome): Buffer {
  const end = Buffer.from('end 0\n\n');
  assert.ok(encoded.subarray(encoded.length - end.length).equals(end));
  return Buffer.concat([encoded.subarray(0, encoded.length - end.length), Buffer.from(outcomeFields(fields)), end]);
}

describe('the plan handed between the phases and the monitor', () => {
  it('comes back with every value as it was written, newlines and non-ASCII included, and the outcome as numbers', () => {
    const { plan: decoded, outcome: got } = decodeRecord(handedBack(encodePlan(plan)));
    assert.deepEqual(decoded, plan);
    assert.deepEqual(got, {
      glexecPid: 4242,
      payloadPid: 4243,
      waitStatus: 256,
      helperStatus: 'cwd /home/pilot\n',
      startedMs: 1000,
      payloadStartedMs: 1100,
      payloadEndedMs: 1600,
      epilogue: undefined,
    });
  });

  const withEpilogue: Plan = {
    ...trivial,
    epilogue: {
      helperArgs: ['--uid=0', '--gid=0', '--groups=0', '--epilogue', '--', '/etc/glexec/epilogue dir/é.sh'],
      env: ['PATH=/usr/bin', 'GLEXEC_EPILOG_TARGET_PID=\x01I', 'GLEXEC_EPILOG_ARGV1=two\nlines'],
      timeoutMs: 300,
      graceMs: 0,
      leftoverList: { path: '/run/glexec/leftovers-1-ab.tsv', text: 'pid\tppid\n', readerGid: undefined },
      watch: [
        { dev: 2049n, ino: 2n ** 60n, ctimeNs: 1796174657305372224n, uid: 0n, gid: 0n, mode: 0o40755n, path: '/' },
        { dev: 2049n, ino: 7n, ctimeNs: 1n, uid: 0n, gid: 5n, mode: 0o100755n, path: '/etc/glexec/epilogue dir/é.sh' },
      ],
    },
    proxyCopy: {
      uid: 1001,
      gid: 1002,
      dev: 2049,
      ino: 77,
      recordPath: '/run/glexec/target-proxies/k-1-ab',
      path: '/tmp/x509up_u1001.glexec.0123456789abcdef',
      recordText: '{"path":"/tmp/x509up_u1001.glexec.0123456789abcdef","dev":2049,"ino":77}',
    },
  };

  it("comes back with the monitor's epilogue and proxy copy as they were written, inode numbers past 2^53 included, and the epilogue's run the monitor appended", () => {
    const back = handedBack(encodePlan(withEpilogue), {
      ...outcome,
      'epilogue-run': '4250 768 15 1234 1',
      'epilogue-helper-status': 'cwd /\n',
    });
    const { plan: decoded, outcome: got } = decodeRecord(back);
    assert.deepEqual(decoded, withEpilogue);
    assert.deepEqual(got.epilogue, {
      pid: 4250,
      waitStatus: 768,
      endedBy: 15,
      durationMs: 1234,
      groupLeft: true,
      helperStatus: 'cwd /\n',
      leftoverFile: withEpilogue.epilogue?.leftoverList?.path,
    });
  });

  it("refuses a monitor's epilogue with more environment variables or arguments than the monitor reads, as it refuses the payload's", () => {
    const { epilogue } = withEpilogue;
    assert.ok(epilogue);
    const many = Array.from({ length: 65_537 }, (_, index) => `GLEXEC_V${index}=`);
    assert.throws(() => encodePlan({ ...withEpilogue, epilogue: { ...epilogue, env: many } }), /more than 65536/);
    assert.throws(
      () => encodePlan({ ...withEpilogue, epilogue: { ...epilogue, helperArgs: many.slice(1) } }),
      /more than 65536/,
    );
    assert.ok(encodePlan({ ...withEpilogue, epilogue: { ...epilogue, env: many.slice(1) } }).length > 0);
  });

  it("refuses a monitor's epilogue without a trivial conclusion or start-payload's arguments, a proxy copy with a newline, and a malformed epilogue run", () => {
    assert.throws(() => encodePlan({ ...withEpilogue, trivial: undefined }), /needs a trivial conclusion/);
    assert.throws(
      () => encodePlan({ ...trivial, proxyCopy: { ...withEpilogue.proxyCopy!, path: '/tmp/a\nb' } }),
      /newline/,
    );
    const { epilogue } = withEpilogue;
    assert.ok(epilogue);
    assert.throws(() => encodePlan({ ...withEpilogue, epilogue: { ...epilogue, helperArgs: [] } }), /arguments/);
    for (const run of ['4250 768 14 1234 1', '4250 768 15 1234', '-1 768 15 1234 0'])
      assert.throws(
        () =>
          decodeRecord(
            handedBack(encodePlan(withEpilogue), { ...outcome, 'epilogue-run': run, 'epilogue-helper-status': '' }),
          ),
        /bad epilogue-run/,
        run,
      );
    const text = handedBack(encodePlan(withEpilogue)).toString('utf8');
    assert.throws(
      () => decodeRecord(Buffer.from(text.replace('epilogue-times 5\n300 0\n', 'epilogue-times 0\n\n'))),
      /without epilogue-times/,
    );
  });

  it("comes back with a trivial conclusion's log group, signal endings and record templates as they were written", () => {
    assert.deepEqual(decodeRecord(handedBack(encodePlan(trivial))).plan, trivial);
  });

  it('refuses a trivial conclusion without an ending for every signal, without a record, or with a newline in a directory', () => {
    const { trivial: conclusion } = trivial;
    assert.ok(conclusion);
    const withConclusion = (changed: Partial<typeof conclusion>): Plan => ({
      ...trivial,
      trivial: { ...conclusion, ...changed },
    });
    assert.throws(
      () => encodePlan(withConclusion({ signalEndings: conclusion.signalEndings.slice(1) })),
      /every signal/,
    );
    assert.throws(() => encodePlan(withConclusion({ records: [] })), /at least one record/);
    assert.throws(() => encodePlan(withConclusion({ records: [{ cwd: 'a\nb', template: '{}' }] })), /newline/);
    const text = handedBack(encodePlan(trivial)).toString('utf8');
    assert.throws(
      () => decodeRecord(Buffer.from(text.replace('trivial-log-gid 1\n4\n', 'trivial-log-gid 0\n\n'))),
      /without trivial-log-gid/,
    );
  });

  it('starts with its version line and counts lengths in bytes', () => {
    const encoded = encodePlan({ ...plan, helperArgs: ['--', '/bin/é'] }).toString('utf8');
    assert.ok(encoded.startsWith('glexec-plan 1\nhelper-arg 2\n--\nhelper-arg 7\n/bin/é\n'), encoded);
  });

  it('refuses a value with a NUL, which no argument or variable can carry', () => {
    assert.throws(() => encodePlan({ ...plan, env: ['A=b\0c'] }), /env holds a NUL/);
  });

  it('refuses another version, a missing or repeated field, a wrong length, and bytes after the end', () => {
    const good = handedBack(encodePlan(plan));
    const text = good.toString('utf8');
    const cases: [string, Buffer][] = [
      ['another version', Buffer.from(text.replace('glexec-plan 1', 'glexec-plan 2'))],
      ['no cgroup field', Buffer.from(text.replace(`cgroup ${plan.cgroup.length}\n${plan.cgroup}\n`, ''))],
      ['the state twice', Buffer.from(text.replace('state ', `state 2\n{}\nstate `))],
      [
        'a wrong length',
        Buffer.from(text.replace(`cgroup ${plan.cgroup.length}\n`, `cgroup ${plan.cgroup.length + 1}\n`)),
      ],
      ['a length with a leading zero', Buffer.from(text.replace('glexec-pid 4\n', 'glexec-pid 04\n'))],
      ['bytes after the end', Buffer.concat([good, Buffer.from('x')])],
      ['no end', good.subarray(0, good.length - 'end 0\n\n'.length)],
      ['an unknown field', Buffer.from(text.replace('end 0\n\n', 'extra 1\nx\nend 0\n\n'))],
      ['a silent flag that is not 0 or 1', Buffer.from(text.replace('silent 1\n1\n', 'silent 1\n2\n'))],
      ['an outcome that is not a number', handedBack(encodePlan(plan), { ...outcome, 'payload-pid': '12a' })],
    ];
    for (const [what, bytes] of cases) assert.throws(() => decodeRecord(bytes), Error, what);
  });
});

describe("the payload's wait status", () => {
  it('is its exit code when it exited, and the signal by name when a signal ended it', () => {
    assert.deepEqual(endingOfWaitStatus(0), { code: 0 });
    assert.deepEqual(endingOfWaitStatus(3 << 8), { code: 3 });
    assert.deepEqual(endingOfWaitStatus(15), { signal: 'SIGTERM' });
    assert.deepEqual(endingOfWaitStatus(9 | 0x80), { signal: 'SIGKILL' });
  });
});
