/**
 * glexec the way real pilot frameworks call it: HTCondor's glexec scripts (GLEXEC_TARGET_PROXY=
 * /dev/null and a tar pipe), the CMS worker-node probe (`glexec -v`), DIRAC's glexec computing
 * element (proxy renewal by running glexec without a payload), and create_target_proxy's /tmp copy,
 * which glexec removes after the run.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestPki } from '../helpers/pki-fixtures';
import { assertRefused } from '../helpers/assertions';
import { installForSuite } from '../helpers/suite';
import { needsRoot, TestSystem } from '../helpers/system';
import { VERSION } from '../../src/version';

let system: TestSystem;
let pki: TestPki;

const withProxy = (extra: Record<string, string | undefined> = {}) => ({
  GLEXEC_CLIENT_CERT: pki.pilotProxy,
  ...extra,
});

/** The target's create_target_proxy copies in /tmp right now. */
function tmpCopies(): string[] {
  return readdirSync('/tmp')
    .filter((name) => name.startsWith(`x509up_u${system.target.uid}.glexec.`))
    .sort();
}

/** Waits until `path` exists (the payload's handshake); gives up when `child` has exited. */
async function waitForFile(path: string, child: ChildProcess): Promise<void> {
  while (!existsSync(path)) {
    if (child.exitCode !== null || child.signalCode !== null) assert.fail(`glexec ended before ${path} appeared`);
    await sleep(25);
  }
}

async function exitOf(child: ChildProcess): Promise<{ status: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { status, stdout, stderr };
}

/** A file of the pilot's, mode 0600, holding what `from` holds. */
function pilotCopy(from: string, name: string): string {
  const path = join(system.scratch, name);
  rmSync(path, { force: true });
  copyFileSync(from, path);
  chownSync(path, system.pilot.uid, system.pilot.gid);
  chmodSync(path, 0o600);
  return path;
}

/**
 * A payload that writes its X509_USER_PROXY path to `<dir>/path`, then waits for `<dir>/go`
 * (the test's handshake), then prints the proxy file's contents.
 */
function waitingPayload(): string {
  return system.installProgram(
    'wait-then-cat.sh',
    '#!/bin/sh\nprintf %s "$X509_USER_PROXY" > "$1/path.tmp" && mv "$1/path.tmp" "$1/path"\nwhile [ ! -e "$1/go" ]; do sleep 0.05; done\ncat "$X509_USER_PROXY"\n',
  );
}

/** A fresh directory everyone may write, for a payload's handshake files. */
function handshakeDirectory(name: string): string {
  const dir = join(system.scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  chmodSync(dir, 0o777);
  return dir;
}

describe('pilot frameworks', { skip: needsRoot }, () => {
  installForSuite((installed, testPki) => {
    system = installed;
    pki = testPki;
  });

  describe('HTCondor: GLEXEC_TARGET_PROXY=/dev/null', () => {
    it("condor_glexec_setup's tar pipe through glexec unpacks the sandbox as the target, makes no proxy copy and exits 0", () => {
      system.writeConfig(system.standardConfig(['create_target_proxy = yes']));
      const condorSandbox = join(system.scratch, 'dir_1234.condor');
      const jobSandbox = join(system.scratch, 'dir_1234');
      rmSync(condorSandbox, { recursive: true, force: true });
      rmSync(jobSandbox, { recursive: true, force: true });
      mkdirSync(join(condorSandbox, 'sub'), { recursive: true });
      writeFileSync(join(condorSandbox, 'job.sh'), '#!/bin/sh\necho job\n');
      writeFileSync(join(condorSandbox, 'sub/input.dat'), 'input\n');
      spawnSync('chown', ['-R', `${system.pilot.uid}:${system.pilot.gid}`, condorSandbox]);
      const proxy = pilotCopy(pki.pilotProxy, 'dir_1234.condor/x509up');
      const copiesBefore = tmpCopies();
      // What condor_glexec_setup does, as the pilot: GLEXEC_CLIENT_CERT in the condor sandbox,
      // GLEXEC_TARGET_PROXY=/dev/null, and the sandbox piped through tar into the target's side.
      const script =
        'tar -C "$CONDOR_SANDBOX" -c . | "$GLEXEC" /bin/sh -c "install -m 755 -d \\"$JOB_SANDBOX\\" && tar -C \\"$JOB_SANDBOX\\" -x"';
      const result = spawnSync(
        '/usr/bin/setpriv',
        [
          '--reuid',
          String(system.pilot.uid),
          '--regid',
          String(system.pilot.gid),
          '--init-groups',
          '--',
          '/bin/sh',
          '-c',
          script,
        ],
        {
          env: system.callerEnv({
            GLEXEC: system.shim,
            CONDOR_SANDBOX: condorSandbox,
            JOB_SANDBOX: jobSandbox,
            GLEXEC_CLIENT_CERT: proxy,
            GLEXEC_TARGET_PROXY: '/dev/null',
          }),
          cwd: system.scratch,
          encoding: 'utf8',
        },
      );
      assert.equal(result.stderr, '');
      assert.equal(result.status, 0);
      assert.equal(readFileSync(join(jobSandbox, 'sub/input.dat'), 'utf8'), 'input\n');
      assert.equal(lstatSync(join(jobSandbox, 'job.sh')).uid, system.target.uid);
      assert.equal(lstatSync(join(jobSandbox, 'x509up')).uid, system.target.uid);
      assert.deepEqual(tmpCopies(), copiesBefore);
      const nullDevice = lstatSync('/dev/null');
      assert.ok(nullDevice.isCharacterDevice());
      assert.equal(nullDevice.uid, 0);
      const record = system
        .logRecords()
        .find((entry) => entry.msg === 'target proxy discarded: GLEXEC_TARGET_PROXY is /dev/null');
      assert.ok(record, 'no log record of the discarded target proxy');
    });

    it('the payload gets X509_USER_PROXY=/dev/null, and GLEXEC_SOURCE_PROXY is not even read', () => {
      const unreadable = pki.copyProxy('not-for-target.pem', system.stranger.uid, 0o600);
      const result = system.run(['/bin/sh', '-c', 'echo "$X509_USER_PROXY"'], {
        env: withProxy({ GLEXEC_SOURCE_PROXY: unreadable, GLEXEC_TARGET_PROXY: '/dev/null' }),
      });
      assert.equal(result.stderr, '');
      assert.equal(result.status, 0);
      assert.equal(result.stdout, '/dev/null\n');
    });

    it('another device, a FIFO, a directory, or a path that leads to /dev/null gives 201 and nothing is written', () => {
      const fifo = join(system.scratch, 'proxy.fifo');
      rmSync(fifo, { force: true });
      spawnSync('mkfifo', [fifo]);
      chownSync(fifo, system.target.uid, system.target.gid);
      const link = join(system.scratch, 'null-link');
      rmSync(link, { force: true });
      symlinkSync('/dev/null', link);
      const cases: [string, string][] = [
        ['/dev/zero', 'exists and is not a regular file; it is not overwritten'],
        ['//dev/null', 'exists and is not a regular file; it is not overwritten'],
        ['/dev/../dev/null', 'exists and is not a regular file; it is not overwritten'],
        [fifo, 'is not a regular file'],
        [system.scratch, 'is a directory'],
        [link, 'is a symbolic link; glexec neither follows nor replaces it'],
      ];
      for (const [path, why] of cases) {
        const result = system.run(['/bin/true'], {
          env: withProxy({ GLEXEC_SOURCE_PROXY: pki.pilotProxy, GLEXEC_TARGET_PROXY: path }),
        });
        assertRefused(result, 201, `glexec: GLEXEC_TARGET_PROXY ${JSON.stringify(path)} ${why}`);
      }
      assert.ok(lstatSync(fifo).isFIFO());
      assert.ok(lstatSync(link).isSymbolicLink());
    });

    it('where /dev/null is not the null device (a symlink or a regular file, in a mount namespace), it gives 201 and nothing is written', () => {
      const victim = join(system.scratch, 'victim-of-dev-null');
      for (const replacement of [
        `ln -s ${victim} /dev/null`,
        `cp ${victim} /dev/null && chown ${system.target.uid} /dev/null`,
      ]) {
        writeFileSync(victim, 'keep me\n', { mode: 0o600 });
        chownSync(victim, system.target.uid, system.target.gid);
        const exports = Object.entries(
          system.callerEnv(withProxy({ GLEXEC_SOURCE_PROXY: pki.pilotProxy, GLEXEC_TARGET_PROXY: '/dev/null' })),
        )
          .map(([name, value]) => `${name}='${value}'`)
          .join(' ');
        const script = [
          'set -e',
          'mount -t tmpfs -o mode=755 tmpfs /dev',
          replacement,
          'set +e',
          `env -i ${exports} /usr/bin/setpriv --reuid ${system.pilot.uid} --regid ${system.pilot.gid} --init-groups -- ${system.shim} /bin/true`,
        ].join('\n');
        const result = spawnSync('unshare', ['-m', '--propagation', 'private', '/bin/sh', '-c', script], {
          cwd: system.scratch,
          encoding: 'utf8',
        });
        assertRefused(
          result,
          201,
          'glexec: GLEXEC_TARGET_PROXY "/dev/null" is not the null device on this machine; it is not written to',
        );
        assert.equal(readFileSync(victim, 'utf8'), 'keep me\n', replacement);
      }
    });
  });

  describe('glexec -v (the CMS worker-node probe)', () => {
    it('prints the version line to any caller, white-listed or not and with no proxy, and exits 0', () => {
      for (const as of [system.pilot, system.stranger]) {
        const result = system.run(['-v'], { as });
        assert.equal(result.stderr, '');
        assert.equal(result.status, 0);
        assert.equal(result.stdout, `glexec ${VERSION} (a reimplementation of gLExec 0.9, linger mode)\n`);
      }
    });

    it('-V still adds the built-in paths', () => {
      const result = system.run(['-V']);
      assert.equal(result.status, 0);
      assert.match(
        result.stdout,
        new RegExp(`^glexec ${VERSION.replace(/\./g, '\\.')} .*\nGLEXEC_CONFIG_FILE="${system.configPath}"\n`),
      );
    });
  });

  describe("DIRAC: renewing the payload's proxy by running glexec without a payload", () => {
    it('rewrites GLEXEC_TARGET_PROXY from GLEXEC_SOURCE_PROXY as the target, runs nothing, exits 0 and logs its own record', () => {
      const source = pilotCopy(pki.pilotProxy, 'payload-proxy.pem');
      const target = join(system.scratch, 'renewed-target.pem');
      rmSync(target, { force: true });
      const env = withProxy({ GLEXEC_SOURCE_PROXY: source, GLEXEC_TARGET_PROXY: target });
      assert.equal(system.run(['/bin/true'], { env }).status, 0);
      const renewedProxy = pki.proxyFor('renewed.pem', pki.userDn);
      copyFileSync(renewedProxy, source);
      system.clearLog();
      const result = system.run([], { env });
      assert.equal(result.stderr, '');
      assert.equal(result.stdout, '');
      assert.equal(result.status, 0);
      assert.deepEqual(readFileSync(target), readFileSync(renewedProxy));
      assert.equal(lstatSync(target).uid, system.target.uid);
      const records = system.logRecords();
      assert.equal(
        records.find((entry) => entry.msg === 'job completed'),
        undefined,
        'a renewal runs no job',
      );
      const renewal = records.find((entry) => entry.msg === 'proxy renewed');
      assert.ok(renewal, 'no renewal record');
      assert.deepEqual(renewal.written, [target]);
      assert.equal((renewal.target as { uid?: number }).uid, system.target.uid);
      assert.equal(renewal.exitCode, 0);
    });

    // log_level 3: the monitor concludes the run and removes the copy itself (docs/architecture.md); 5: phase 2 does.
    for (const [mechanism, logLevel] of [
      ['flock', 5],
      ['fcntl', 5],
      ['flock', 3],
    ] as const) {
      it(`without GLEXEC_TARGET_PROXY it reaches the /tmp copy that the running payload's X509_USER_PROXY names (target_lock_mechanism = ${mechanism}, the copy removed by ${logLevel === 3 ? 'the monitor' : 'phase 2'})`, async () => {
        system.writeConfig(
          system.standardConfig([
            'create_target_proxy = yes',
            `target_lock_mechanism = ${mechanism}`,
            `log_level = ${logLevel}`,
          ]),
        );
        const source = pilotCopy(pki.pilotProxy, 'dirac-payload-proxy.pem');
        const env = { GLEXEC_CLIENT_CERT: source, GLEXEC_SOURCE_PROXY: source };
        const dir = handshakeDirectory(`dirac-renewal-${mechanism}`);
        const child = system.start([waitingPayload(), dir], { env });
        const done = exitOf(child);
        await waitForFile(join(dir, 'path'), child);
        const copy = readFileSync(join(dir, 'path'), 'utf8');
        assert.match(copy, new RegExp(`^/tmp/x509up_u${system.target.uid}\\.glexec\\.[0-9a-f]{16}$`));
        const renewedProxy = pki.proxyFor('dirac-renewed.pem', pki.userDn);
        copyFileSync(renewedProxy, source);
        const renewal = system.run([], { env });
        assert.equal(renewal.stderr, '');
        assert.equal(renewal.status, 0);
        writeFileSync(join(dir, 'go'), '');
        const result = await done;
        assert.equal(result.stderr, '');
        assert.equal(result.status, 0);
        assert.equal(result.stdout, readFileSync(renewedProxy, 'utf8'));
        assert.equal(existsSync(copy), false, 'the copy outlived its run');
        assert.deepEqual(system.logRecords().find((entry) => entry.msg === 'proxy renewed')?.written, [copy]);
        assert.deepEqual(tmpCopies(), []);
        const completed = system.logRecords().find((entry) => entry.msg === 'job completed');
        assert.equal(completed?.pid === completed?.glexecPid, logLevel === 3, JSON.stringify(completed));
        assert.deepEqual(readdirSync(join(system.runtimeDirectory, 'target-proxies')), []);
      });
    }

    it('with no running payload to reach, a renewal without GLEXEC_TARGET_PROXY gives 201', () => {
      system.writeConfig(system.standardConfig(['create_target_proxy = yes']));
      const source = pilotCopy(pki.pilotProxy, 'orphan-proxy.pem');
      const copiesBefore = tmpCopies();
      assertRefused(
        system.run([], { env: { GLEXEC_CLIENT_CERT: source, GLEXEC_SOURCE_PROXY: source } }),
        201,
        `glexec: no running payload of ${system.pilot.name} mapped to ${system.target.name} has a target proxy copied from GLEXEC_SOURCE_PROXY ${JSON.stringify(source)}; set GLEXEC_TARGET_PROXY to name the file to renew`,
      );
      assert.deepEqual(tmpCopies(), copiesBefore);
    });

    it('with create_target_proxy = no and no GLEXEC_TARGET_PROXY, a renewal gives 201', () => {
      assertRefused(
        system.run([], { env: withProxy({ GLEXEC_SOURCE_PROXY: pki.pilotProxy }) }),
        201,
        'glexec: no target proxy to renew: set GLEXEC_TARGET_PROXY (create_target_proxy is off)',
      );
    });

    it('checks the caller as a run does: a caller in no white list gives 203', () => {
      const strangerProxy = pki.copyProxy('stranger-renewal.pem', system.stranger.uid, 0o600);
      assertRefused(
        system.run([], {
          as: system.stranger,
          env: {
            GLEXEC_CLIENT_CERT: strangerProxy,
            GLEXEC_SOURCE_PROXY: strangerProxy,
            GLEXEC_TARGET_PROXY: join(system.scratch, 'x'),
          },
        }),
        203,
        `glexec: caller ${system.stranger.name} (uid ${system.stranger.uid}) is not in user_white_list or group_white_list`,
      );
    });

    it('with GLEXEC_TARGET_PROXY=/dev/null it writes nothing and exits 0', () => {
      const result = system.run([], {
        env: withProxy({ GLEXEC_SOURCE_PROXY: pki.pilotProxy, GLEXEC_TARGET_PROXY: '/dev/null' }),
      });
      assert.equal(result.stderr, '');
      assert.equal(result.status, 0);
      const renewal = system.logRecords().find((entry) => entry.msg === 'proxy renewed');
      assert.deepEqual([renewal?.written, renewal?.discarded], [[], true]);
    });
  });

  describe('create_target_proxy: the /tmp copy glexec made goes with its run', () => {
    it('is still there for the epilogue and removed after it; ten runs leave no copy behind', () => {
      const epilogueDir = join(system.root, 'client-epilogues');
      mkdirSync(epilogueDir, { recursive: true, mode: 0o755 });
      const seen = join(system.root, 'epilogue-saw-proxy');
      const epilogue = join(epilogueDir, 'proxy-still-there.sh');
      // The epilogue gets no X509_USER_PROXY (only GLEXEC_* variables): it looks for the target's copies.
      writeFileSync(epilogue, `#!/bin/sh\nls /tmp/x509up_u$GLEXEC_EPILOG_TARGET_UID.glexec.* >> ${seen}\nexit 0\n`, {
        mode: 0o755,
      });
      system.writeConfig(
        system.standardConfig(['create_target_proxy = yes', `epilogue = ${epilogue}`, 'epilogue_timeout = 30']),
      );
      rmSync(seen, { force: true });
      const copiesBefore = tmpCopies();
      const paths: string[] = [];
      for (let run = 0; run < 10; run++) {
        const result = system.run(['/bin/sh', '-c', 'echo "$X509_USER_PROXY"'], { env: withProxy() });
        assert.equal(result.stderr, '');
        assert.equal(result.status, 0);
        paths.push(result.stdout.trim());
      }
      assert.deepEqual(readFileSync(seen, 'utf8').trim().split('\n'), paths);
      assert.deepEqual(tmpCopies(), copiesBefore);
      const removals = system.logRecords().filter((entry) => entry.msg === 'target proxy removed');
      assert.deepEqual(
        removals.map((entry) => entry.outcome),
        paths.map(() => 'removed'),
      );
    });

    it("a file the payload put at the copy's name is not glexec's and is left alone", () => {
      system.writeConfig(system.standardConfig(['create_target_proxy = yes']));
      const result = system.run(
        [
          '/bin/sh',
          '-c',
          'echo mine > "$X509_USER_PROXY.new" && mv "$X509_USER_PROXY.new" "$X509_USER_PROXY" && echo "$X509_USER_PROXY"',
        ],
        { env: withProxy() },
      );
      assert.equal(result.status, 0, result.stderr);
      const path = result.stdout.trim();
      try {
        assert.equal(readFileSync(path, 'utf8'), 'mine\n');
        assert.equal(system.logRecords().find((entry) => entry.msg === 'target proxy removed')?.outcome, 'replaced');
      } finally {
        rmSync(path, { force: true });
      }
    });
  });
});
