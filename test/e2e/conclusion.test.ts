/**
 * A run with nothing to conclude (docs/architecture.md): the monitor removes the payload's empty
 * cgroup and writes the completion record itself, from phase 1's template, and that record is the
 * one phase 2 writes for the same run. log_level = 4 forces phase 2 (it has info records to
 * write) without changing the completion record.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { TestPki } from '../helpers/pki-fixtures';
import { installForSuite } from '../helpers/suite';
import { type CompletedRun, needsRoot, TestSystem } from '../helpers/system';
import { cgroupMounts } from '../../src/sys/cgroup';

let system: TestSystem;
let pki: TestPki;
const noCgroup = cgroupMounts().v2 === undefined ? 'no cgroup v2 is mounted here' : false;

/** The fields that differ from one run to the next whoever writes the record. */
const VARYING = ['time', 'pid', 'glexecPid', 'payloadPid', 'payloadPgid', 'payloadMs', 'totalMs'];

/** The record's line with each varying value replaced by its field's name (and the epilogue's duration). */
const comparable = (line: string): string =>
  VARYING.reduce((text, key) => {
    text = text.replace(/("epilogue":\{[^}]*"durationMs":)\d+/, '$1"durationMs"');
    const replaced = text.replace(new RegExp(`"${key}":("[^"]*"|\\d+)`), `"${key}":"${key}"`);
    assert.notEqual(replaced, text, `${key} in ${line}`);
    return replaced;
  }, line);

type Completion = CompletedRun;

/** One run at `logLevel` (with `extra` config lines), its exit status and its one completion record. */
function completion(args: string[], logLevel: number, options: { cwd?: string; extra?: string[] } = {}): Completion {
  return system.completedRun(args, logLevel, options.extra ?? [], {
    env: { GLEXEC_CLIENT_CERT: pki.pilotProxy },
    cwd: options.cwd,
  });
}

/** The same run once through the monitor alone, once through phase 2: the same exit and record. */
function assertSameConclusion(args: string[], options: { cwd?: string; extra?: string[] } = {}): Completion {
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

  it('is not planned with a process-group containment: phase 2 runs', () => {
    const run = completion(['/bin/true'], 3, { extra: ['containment = pgid'] });
    assert.notEqual(run.record.pid, run.record.glexecPid, run.line);
  });

  describe("with create_target_proxy's /tmp copy", () => {
    const copies = () => readdirSync('/tmp').filter((name) => name.startsWith(`x509up_u${system.target.uid}.glexec.`));
    const records = () => readdirSync(join(system.runtimeDirectory, 'target-proxies'));

    it('removes the copy and its record itself, and writes the record phase 2 writes for the same run', () => {
      const before = copies();
      const run = assertSameConclusion(['/bin/sh', '-c', 'test -s "$X509_USER_PROXY"'], {
        extra: ['create_target_proxy = yes'],
      });
      assert.equal(run.status, 0);
      assert.deepEqual(copies(), before);
      assert.deepEqual(records(), []);
    });

    it('leaves a copy whose name the payload gave to another file to phase 2, which leaves that file alone', () => {
      const before = copies();
      const run = completion(
        // The copy is kept under another name, so that the new file cannot get its inode number.
        ['/bin/sh', '-c', 'mv "$X509_USER_PROXY" "$X509_USER_PROXY.kept" && echo other > "$X509_USER_PROXY"'],
        3,
        { extra: ['create_target_proxy = yes'] },
      );
      assert.equal(run.status, 0);
      assert.notEqual(run.record.pid, run.record.glexecPid, run.line);
      const left = copies().filter((name) => !before.includes(name));
      const other = left.find((name) => !name.endsWith('.kept'));
      assert.deepEqual(left.sort(), [other, `${other}.kept`].sort());
      assert.equal(readFileSync(join('/tmp', other ?? ''), 'utf8'), 'other\n');
      for (const name of left) rmSync(join('/tmp', name));
      assert.deepEqual(records(), []);
    });
  });

  describe('with an epilogue', () => {
    /** Root's directory of the epilogues and of what they write: the runs' ledger, one line a run. */
    const epilogues = () => join(system.root, 'conclusion-epilogues');
    const ledger = () => join(epilogues(), 'ledger');

    /** An epilogue that appends its parent's pid and what it was given to the ledger, then does `then`. */
    function epilogue(name: string, then: string, timeouts = ['epilogue_timeout = 30']): string[] {
      mkdirSync(epilogues(), { recursive: true, mode: 0o755 });
      const path = join(epilogues(), name);
      writeFileSync(
        path,
        [
          '#!/bin/sh',
          `printf '%s %s %s %s\\n' "$PPID" "$GLEXEC_EPILOG_TARGET_PID" "$GLEXEC_EPILOG_TARGET_RC" "$(tail -n +2 "$GLEXEC_EPILOG_LEFTOVER_FILE" | wc -l)" >> ${ledger()}`,
          then,
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
      return [`epilogue = ${path}`, ...timeouts];
    }

    /** The ledger's lines since the last call: [parent pid, payload pid, its return code, leftovers listed]. */
    function ledgerLines(): string[][] {
      let text = '';
      try {
        text = readFileSync(ledger(), 'utf8');
      } catch {
        // No epilogue ran.
      }
      rmSync(ledger(), { force: true });
      return text
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split(' '));
    }

    it('runs it itself when the payload left nothing, with what phase 2 gives it, and writes the record phase 2 writes for the same run', () => {
      const extra = epilogue('ok.sh', 'exit 0');
      for (const code of [0, 7, 203]) {
        ledgerLines();
        const run = assertSameConclusion(['/bin/sh', '-c', `exit ${code}`], { extra });
        const [byMonitor, byPhase2, ...more] = ledgerLines();
        assert.equal(more.length, 0);
        // Its parent: the monitor (the glexec pid) in the first run, phase 2 in the second.
        assert.equal(byMonitor?.[0], String(run.record.glexecPid));
        assert.notEqual(byPhase2?.[0], undefined);
        assert.deepEqual(byMonitor?.slice(1), [String(run.record.payloadPid), String(code), '0']);
        assert.deepEqual(byPhase2?.slice(2), [String(code), '0']);
        assert.deepEqual((run.record.epilogue as { result: string }).result, 'ok');
      }
    });

    it('removes the empty leftover list it gave the epilogue', () => {
      const extra = epilogue('list.sh', 'exit 0');
      const run = completion(['/bin/true'], 3, { extra });
      assert.equal(run.record.pid, run.record.glexecPid);
      assert.deepEqual(
        readdirSync(system.runtimeDirectory).filter((name) => name.startsWith('leftovers-')),
        [],
      );
    });

    it('leaves what follows an epilogue that failed, timed out or left a process to phase 2, which reports it as its own run would: the same exit code, stderr and record, and the epilogue ran once', () => {
      const cases: [string, string, string[]][] = [
        ['exit 3', 'exit 3', []],
        ['exit 203', 'exit 203', []],
        ['killed', 'kill -TERM $$', []],
        // exec: no child of the shell's is left dying in the group, whose being counted would be a race.
        ['ends on SIGTERM', 'exec sleep 30', ['epilogue_timeout = 0.2', 'kill_grace = 5']],
        ['ignores SIGTERM', "trap '' TERM; exec sleep 5", ['epilogue_timeout = 0.2', 'kill_grace = 0.3']],
        ['leaves a process', '/bin/sleep 405 & exit 0', []],
      ];
      for (const [name, body, more] of cases) {
        const extra = epilogue(`${name.replace(/ /g, '-')}.sh`, body, more.length > 0 ? more : undefined);
        ledgerLines();
        const byMonitor = completion(['/bin/true'], 3, { extra });
        const [monitorRun, ...rest] = ledgerLines();
        const byPhase2 = completion(['/bin/true'], 4, { extra });
        const [phase2Run, ...restToo] = ledgerLines();
        assert.equal(rest.length + restToo.length, 0, name);
        assert.equal(monitorRun?.[0], String(byMonitor.record.glexecPid), `${name}: the monitor ran it`);
        assert.notEqual(phase2Run?.[0], String(byPhase2.record.glexecPid), `${name}: phase 2 ran it`);
        // Phase 2 wrote both records, and they are the same but for times and pids.
        assert.notEqual(byMonitor.record.pid, byMonitor.record.glexecPid, name);
        assert.equal(byMonitor.status, byPhase2.status, name);
        assert.equal(byMonitor.stderr, byPhase2.stderr, name);
        assert.match(byMonitor.stderr, /^glexec: epilogue \S+ (exited with|was killed by|ran longer)|^$/, name);
        assert.equal(comparable(byMonitor.line), comparable(byPhase2.line), name);
      }
    });

    it('leaves the epilogue to phase 2 when the payload left a process: the epilogue gets it in its list', () => {
      const extra = epilogue('after-leftover.sh', 'exit 0');
      ledgerLines();
      const run = completion(['/bin/sh', '-c', '/bin/sleep 406 & exit 0'], 3, { extra });
      const [only, ...more] = ledgerLines();
      assert.equal(more.length, 0);
      assert.notEqual(only?.[0], String(run.record.glexecPid));
      assert.equal(only?.[3], '1');
      assert.equal(run.record.leftovers, 1);
    });
  });
});
