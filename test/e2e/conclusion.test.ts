/**
 * A run with nothing to conclude (docs/architecture.md): the monitor removes the payload's empty
 * cgroup and writes the completion record itself, from phase 1's template, and that record is the
 * one phase 2 writes for the same run. log_level = 4 forces phase 2 (it has info records to
 * write) without changing the completion record.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TestPki } from '../helpers/pki-fixtures';
import { installForSuite } from '../helpers/suite';
import { needsRoot, TestSystem } from '../helpers/system';
import { cgroupMounts } from '../../src/sys/cgroup';

let system: TestSystem;
let pki: TestPki;
const noCgroup = cgroupMounts().v2 === undefined ? 'no cgroup v2 is mounted here' : false;

/** The fields that differ from one run to the next whoever writes the record. */
const VARYING = ['time', 'pid', 'glexecPid', 'payloadPid', 'payloadPgid', 'payloadMs', 'totalMs'];

/** The record's line with each varying value replaced by its field's name. */
const comparable = (line: string): string =>
  VARYING.reduce((text, key) => {
    const replaced = text.replace(new RegExp(`"${key}":("[^"]*"|\\d+)`), `"${key}":"${key}"`);
    assert.notEqual(replaced, text, `${key} in ${line}`);
    return replaced;
  }, line);

interface Completion {
  readonly status: number | null;
  readonly line: string;
  readonly record: Record<string, unknown>;
  readonly log: string;
}

/** One run at `logLevel` (with `extra` config lines), its exit status and its one completion record. */
function completion(args: string[], logLevel: number, options: { cwd?: string; extra?: string[] } = {}): Completion {
  system.writeConfig(system.standardConfig([`log_level = ${logLevel}`, ...(options.extra ?? [])]));
  system.clearLog();
  const result = system.run(args, { env: { GLEXEC_CLIENT_CERT: pki.pilotProxy }, cwd: options.cwd });
  const log = readFileSync(system.logFile, 'utf8');
  const lines = log.split('\n').filter((line) => line.includes('"msg":"job completed"'));
  assert.equal(lines.length, 1, log);
  const line = lines[0] ?? '';
  return { status: result.status, line, record: JSON.parse(line) as Record<string, unknown>, log };
}

/** The same run once through the monitor alone, once through phase 2: the same exit and record. */
function assertSameConclusion(args: string[], options: { cwd?: string } = {}): Completion {
  const trivial = completion(args, 3, options);
  const full = completion(args, 4, options);
  const what = args.join(' ');
  // Who wrote the record: the monitor (pid is glexec's own) or phase 2 (a node child of it).
  assert.equal(trivial.record.pid, trivial.record.glexecPid, `${what}: the monitor wrote ${trivial.line}`);
  assert.notEqual(full.record.pid, full.record.glexecPid, `${what}: phase 2 wrote ${full.line}`);
  assert.match(full.log, /"msg":"payload ended"/);
  assert.equal(trivial.status, full.status, what);
  assert.equal(trivial.record.exitCode, trivial.status, what);
  assert.equal(comparable(trivial.line), comparable(full.line), what);
  return trivial;
}

describe('a run with nothing to conclude', { skip: needsRoot || noCgroup }, () => {
  installForSuite((made, madePki) => {
    system = made;
    pki = madePki;
  });

  it('gets from the monitor the exit code and the completion record phase 2 gives the same run, byte for byte but times and pids, for exit codes 0 to 255 and signals', () => {
    for (const code of [0, 1, 2, 100, 126, 127, 128, 129, 200, 201, 202, 203, 204, 205, 254, 255])
      assertSameConclusion(['/bin/sh', '-c', `exit ${code}`]);
    // Named signals, and real-time ones (Node has no name for them: the record says 128+N).
    for (const signal of ['HUP', 'INT', 'QUIT', 'ABRT', 'KILL', 'SEGV', 'PIPE', 'ALRM', 'TERM', 'USR1', '35', '64'])
      assertSameConclusion(['/bin/sh', '-c', `ulimit -c 0; kill -${signal} $$`]);
  });

  it("names the directory start-payload entered as phase 2 does: the caller's, or the target's home when the target cannot enter the caller's", () => {
    assert.equal(assertSameConclusion(['/bin/true']).record.cwd, system.scratch);
    const closed = join(system.scratch, 'closed');
    mkdirSync(closed, { recursive: true });
    chownSync(closed, system.pilot.uid, system.pilot.gid);
    chmodSync(closed, 0o700);
    assert.equal(
      assertSameConclusion(['/bin/true'], { cwd: closed }).record.cwd,
      join(system.root, 'home', system.target.name),
    );
  });

  it("removes the payload's empty cgroup", () => {
    const base = system.cgroupBase ?? '';
    const jobs = () => readdirSync(base).filter((name) => name.startsWith('job-'));
    const before = jobs();
    const run = completion(['/bin/true'], 3);
    assert.equal(run.record.pid, run.record.glexecPid);
    assert.deepEqual(jobs(), before);
  });

  it('is not taken when the payload left a process behind: phase 2 lists it and ends it', () => {
    const run = completion(['/bin/sh', '-c', '/bin/sleep 407 & exit 0'], 3);
    assert.equal(run.status, 0);
    assert.notEqual(run.record.pid, run.record.glexecPid);
    assert.equal(run.record.leftovers, 1);
    assert.equal(run.record.cleanup, 'killed');
  });

  it('sends syslog the datagram phase 2 sends for the same run, but for the time and pids', () => {
    const datagram = (logLevel: number, args: string[]) => {
      system.writeConfig(system.standardConfig([`log_level = ${logLevel}`, 'log_destination = syslog']));
      const run = system.runWithSyslog(args, { GLEXEC_CLIENT_CERT: pki.pilotProxy });
      const records = run.datagrams.filter((text) => text.includes(': job completed '));
      assert.equal(records.length, 1, run.datagrams.join('\n'));
      const [, priority, pid, text] = /^<(\d+)>.{15} glexec\[(\d+)\]: (.*)$/s.exec(records[0] ?? '') ?? [];
      const glexecPid = /glexecPid=(\d+)/.exec(text ?? '')?.[1];
      const comparable = ['glexecPid', 'payloadPid', 'payloadPgid', 'payloadMs', 'totalMs'].reduce(
        (line, key) => line.replace(new RegExp(` ${key}=\\d+`), ` ${key}=${key}`),
        text ?? '',
      );
      return { status: run.status, priority, byMonitor: pid === glexecPid, comparable };
    };
    for (const args of [['/bin/true'], ['/bin/sh', '-c', 'exit 202'], ['/bin/sh', '-c', 'kill -TERM $$']]) {
      const trivial = datagram(3, args);
      const full = datagram(4, args);
      assert.ok(trivial.byMonitor && !full.byMonitor, args.join(' '));
      assert.deepEqual({ ...trivial, byMonitor: true }, { ...full, byMonitor: true });
    }
  });

  it('leaves the record to phase 2 when nothing listens on /dev/log: it goes to the log file, and the run is a 202', () => {
    system.writeConfig(system.standardConfig(['log_level = 3', 'log_destination = syslog']));
    system.clearLog();
    const run = system.runWithSyslog(['/bin/true'], { GLEXEC_CLIENT_CERT: pki.pilotProxy }, { listening: false });
    assert.equal(run.status, 202);
    const records = system.logRecords().filter((record) => record.msg === 'job completed');
    assert.equal(records.length, 1);
    assert.notEqual(records[0]?.pid, records[0]?.glexecPid);
  });

  it('leaves the record to phase 2 when it cannot be rendered ahead exactly: a record that bounding cuts, or text holding the template marker', () => {
    const cut = completion(['/bin/echo', 'x'.repeat(5000)], 3);
    assert.notEqual(cut.record.pid, cut.record.glexecPid, cut.line);
    assert.ok('truncated' in cut.record, cut.line);
    const marked = completion(['/bin/echo', '\uE000T'], 3);
    assert.notEqual(marked.record.pid, marked.record.glexecPid, marked.line);
    assert.deepEqual(marked.record.command, ['/bin/echo', '\uE000T']);
  });

  it('is not planned with an epilogue or a process-group containment: phase 2 runs', () => {
    const phase2 = (run: Completion) => assert.notEqual(run.record.pid, run.record.glexecPid, run.line);
    phase2(completion(['/bin/true'], 3, { extra: ['epilogue = /usr/bin/true'] }));
    phase2(completion(['/bin/true'], 3, { extra: ['containment = pgid'] }));
  });
});
