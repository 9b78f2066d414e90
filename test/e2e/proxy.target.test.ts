import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LockMechanism } from '../../src/config/schema';
import {
  DEFAULT_TARGET_DIRECTORY,
  type TargetProxyLocks,
  targetProxyRequest,
  writeTargetProxy,
} from '../../src/proxy/target';
import { asGid, asUid, type Identity, withEffectiveIdentity } from '../../src/sys/identity';
import { flockDescriptor, LockTimeout, LockUnavailable } from '../../src/sys/lock';
import { thrown } from '../helpers/assertions';

const needsRoot: string | false =
  process.getuid?.() === 0 ? false : 'needs root: creates throwaway users and switches to them';
const MECHANISMS: readonly LockMechanism[] = ['flock', 'fcntl', 'disabled'];

const env = (entries: Record<string, string>): Map<string, string> => new Map(Object.entries(entries));

describe('targetProxyRequest', () => {
  const yes = { create_target_proxy: true };
  const no = { create_target_proxy: false };

  it('takes GLEXEC_SOURCE_PROXY and GLEXEC_TARGET_PROXY as given', () => {
    const request = targetProxyRequest(
      env({ GLEXEC_SOURCE_PROXY: '/a/src', GLEXEC_TARGET_PROXY: '/b/dst', GLEXEC_CLIENT_CERT: '/c/client' }),
      yes,
    );
    assert.deepEqual(request, {
      sourceVariable: 'GLEXEC_SOURCE_PROXY',
      sourcePath: '/a/src',
      targetPath: '/b/dst',
      createTargetProxy: true,
    });
  });

  it('copies the client proxy when GLEXEC_SOURCE_PROXY is unset', () => {
    assert.deepEqual(targetProxyRequest(env({ GLEXEC_CLIENT_CERT: '/c/client', X509_USER_PROXY: '/x/proxy' }), yes), {
      sourceVariable: 'GLEXEC_CLIENT_CERT',
      sourcePath: '/c/client',
      createTargetProxy: true,
    });
    assert.deepEqual(targetProxyRequest(env({ X509_USER_PROXY: '/x/proxy' }), yes), {
      sourceVariable: 'X509_USER_PROXY',
      sourcePath: '/x/proxy',
      createTargetProxy: true,
    });
  });

  it('asks for nothing when create_target_proxy = no and GLEXEC_TARGET_PROXY is unset', () => {
    assert.equal(
      targetProxyRequest(env({ GLEXEC_SOURCE_PROXY: '/a/src', GLEXEC_CLIENT_CERT: '/c/client' }), no),
      undefined,
    );
  });

  it('still copies to an explicit GLEXEC_TARGET_PROXY when create_target_proxy = no', () => {
    assert.deepEqual(targetProxyRequest(env({ GLEXEC_CLIENT_CERT: '/c/client', GLEXEC_TARGET_PROXY: '/b/dst' }), no), {
      sourceVariable: 'GLEXEC_CLIENT_CERT',
      sourcePath: '/c/client',
      targetPath: '/b/dst',
      createTargetProxy: false,
    });
  });

  it('refuses an empty GLEXEC_SOURCE_PROXY or GLEXEC_TARGET_PROXY with 201, whatever create_target_proxy says', () => {
    for (const config of [yes, no]) {
      const source = thrown(() =>
        targetProxyRequest(env({ GLEXEC_SOURCE_PROXY: '', GLEXEC_CLIENT_CERT: '/c/client' }), config),
      );
      assert.equal(source.exitCode, 201);
      assert.equal(source.code, 'target_proxy.empty_name');
      assert.match(source.message, /GLEXEC_SOURCE_PROXY/);
      const target = thrown(() =>
        targetProxyRequest(env({ GLEXEC_TARGET_PROXY: '', GLEXEC_CLIENT_CERT: '/c/client' }), config),
      );
      assert.equal(target.exitCode, 201);
      assert.equal(target.code, 'target_proxy.empty_name');
      assert.match(target.message, /GLEXEC_TARGET_PROXY/);
    }
  });

  it('refuses relative paths with 201, naming the variable and the path on one line', () => {
    const source = thrown(() =>
      targetProxyRequest(env({ GLEXEC_SOURCE_PROXY: 'proxy\nfile', GLEXEC_CLIENT_CERT: '/c/client' }), yes),
    );
    assert.equal(source.exitCode, 201);
    assert.equal(source.code, 'target_proxy.relative_path');
    assert.equal(source.message, 'GLEXEC_SOURCE_PROXY must be an absolute path, got "proxy\\nfile"');
    const target = thrown(() =>
      targetProxyRequest(env({ GLEXEC_TARGET_PROXY: 'x509up', GLEXEC_CLIENT_CERT: '/c/client' }), yes),
    );
    assert.equal(target.code, 'target_proxy.relative_path');
    assert.match(target.message, /^GLEXEC_TARGET_PROXY .*"x509up"$/);
  });

  it('refuses with 201 when there is no proxy at all to copy', () => {
    const error = thrown(() => targetProxyRequest(env({ GLEXEC_TARGET_PROXY: '/b/dst' }), yes));
    assert.equal(error.exitCode, 201);
    assert.equal(error.code, 'target_proxy.no_source');
  });
});

interface TestAccount extends Identity {
  readonly name: string;
}

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function account(name: string): TestAccount {
  const groups = sh('id', ['-G', name])
    .trim()
    .split(/\s+/)
    .map((id) => asGid(Number(id)));
  return {
    name,
    uid: asUid(Number(sh('id', ['-u', name]).trim())),
    gid: asGid(Number(sh('id', ['-g', name]).trim())),
    groups,
  };
}

/** The Uid/Gid/Groups lines of this thread, as the kernel sees them. */
function kernelIds(): { uid: string; gid: string; groups: string } {
  const status = readFileSync('/proc/thread-self/status', 'utf8');
  const line = (name: string): string =>
    (new RegExp(`^${name}:(.*)$`, 'm').exec(status)?.[1] ?? '').trim().replace(/\s+/g, ' ');
  return { uid: line('Uid'), gid: line('Gid'), groups: line('Groups') };
}

function assertBackToRoot(): void {
  assert.deepEqual(kernelIds(), { uid: '0 0 0 0', gid: '0 0 0 0', groups: '' });
}

describe('writeTargetProxy', { skip: needsRoot }, () => {
  const prefix = `gxt${randomBytes(3).toString('hex')}`;
  const createdUsers: string[] = [];
  const createdGroups: string[] = [];
  const holders: ChildProcess[] = [];
  const defaultFiles: string[] = [];
  let root = '';
  let caller: TestAccount;
  let target: TestAccount;
  /** 1777, like /tmp. */
  let shared = '';
  /** The target's own directory (0755, not sticky). */
  let targetHome = '';
  /** The caller's own directory (0700). */
  let callerHome = '';
  /** root's, 0700: nobody else may look inside. */
  let rootOnly = '';
  /** root:<target's supplementary group>, 0770. */
  let groupOnly = '';
  let counter = 0;

  const proxyBytes = (): Buffer =>
    Buffer.concat([
      Buffer.from(`-----BEGIN CERTIFICATE-----\n${randomBytes(900).toString('base64')}\n-----END CERTIFICATE-----\n`),
      Buffer.from([0x00, 0xff, 0x80, 0x0a]),
    ]);
  const fresh = (dir: string, stem = 'proxy'): string => join(dir, `${stem}-${++counter}`);

  function plant(path: string, contents: Buffer | string, owner: Identity, mode: number): void {
    writeFileSync(path, contents);
    chownSync(path, owner.uid, owner.gid);
    chmodSync(path, mode);
  }

  /** A valid source proxy of the caller, and its bytes. */
  function callerProxy(): { path: string; bytes: Buffer } {
    const path = fresh(callerHome, 'source');
    const bytes = proxyBytes();
    plant(path, bytes, caller, 0o600);
    return { path, bytes };
  }

  function copy(
    variables: Record<string, string>,
    locks: Partial<TargetProxyLocks> = {},
    createTargetProxy = true,
  ): { path: string } {
    const request = targetProxyRequest(env(variables), { create_target_proxy: createTargetProxy });
    assert.ok(request !== undefined);
    return writeTargetProxy(request, caller, target, { input: 'flock', target: 'flock', ...locks });
  }

  /** Holds a flock lock on `path` from another process until killed; resolves once it holds it. */
  async function holdLock(path: string, mode: '--shared' | '--exclusive', seconds: number): Promise<ChildProcess> {
    const holder = spawn('/usr/bin/flock', [mode, path, '-c', `echo locked; exec sleep ${seconds}`], {
      detached: true,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    holders.push(holder);
    await new Promise<void>((resolve, reject) => {
      holder.stdout?.once('data', () => resolve());
      holder.once('error', reject);
      holder.once('exit', () => reject(new Error('the lock holder exited early')));
    });
    return holder;
  }

  function release(holder: ChildProcess): void {
    if (holder.pid !== undefined && holder.exitCode === null && holder.signalCode === null)
      process.kill(-holder.pid, 'SIGKILL');
  }

  before(() => {
    const targetGroup = `${prefix}t`;
    const extraGroup = `${prefix}s`;
    for (const group of [targetGroup, extraGroup]) {
      sh('groupadd', [group]);
      createdGroups.push(group);
    }
    sh('useradd', ['-M', '-N', '-s', '/usr/sbin/nologin', '-d', '/nonexistent', `${prefix}c`]);
    createdUsers.push(`${prefix}c`);
    sh('useradd', [
      '-M',
      '-N',
      '-g',
      targetGroup,
      '-G',
      extraGroup,
      '-s',
      '/usr/sbin/nologin',
      '-d',
      '/nonexistent',
      `${prefix}u`,
    ]);
    createdUsers.push(`${prefix}u`);
    caller = account(`${prefix}c`);
    target = account(`${prefix}u`);
    assert.notEqual(caller.uid, target.uid);

    root = mkdtempSync('/tmp/glexec-target-proxy-test-');
    chmodSync(root, 0o755);
    shared = join(root, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    targetHome = join(root, 'target');
    mkdirSync(targetHome, 0o755);
    chownSync(targetHome, target.uid, target.gid);
    callerHome = join(root, 'caller');
    mkdirSync(callerHome, 0o700);
    chownSync(callerHome, caller.uid, caller.gid);
    rootOnly = join(root, 'root-only');
    mkdirSync(rootOnly, 0o700);
    groupOnly = join(root, 'group-only');
    mkdirSync(groupOnly);
    chownSync(groupOnly, 0, account(`${prefix}u`).groups.find((gid) => gid !== target.gid) ?? -1);
    chmodSync(groupOnly, 0o770);
  });

  after(() => {
    for (const holder of holders) release(holder);
    for (const file of defaultFiles) rmSync(file, { force: true });
    if (root !== '') rmSync(root, { recursive: true, force: true });
    for (const user of createdUsers) spawnSync('userdel', [user]);
    for (const group of createdGroups) spawnSync('groupdel', [group]);
  });

  for (const mechanism of MECHANISMS) {
    it(`copies the source proxy as the target account with mode 0600 and the exact bytes (target lock ${mechanism})`, () => {
      const source = callerProxy();
      const destination = fresh(shared);
      const result = copy(
        { GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination },
        { input: mechanism, target: mechanism },
      );
      assert.equal(result.path, destination);
      const st = statSync(destination);
      assert.equal(st.uid, target.uid);
      assert.equal(st.gid, target.gid);
      assert.equal(st.mode & 0o7777, 0o600);
      assert.deepEqual(readFileSync(destination), source.bytes);
      assert.deepEqual(readFileSync(source.path), source.bytes, 'the source is left as it was');
      assert.deepEqual(
        readdirSync(shared).filter((name) => name.includes('.glexec-')),
        [],
        'no temporary file is left behind',
      );
      assertBackToRoot();
    });

    it(`replaces an existing proxy of the target account, shorter content and all (target lock ${mechanism})`, () => {
      const source = callerProxy();
      const destination = fresh(targetHome);
      plant(destination, Buffer.alloc(8000, 'old proxy '), target, 0o644);
      copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { target: mechanism });
      const st = statSync(destination);
      assert.equal(st.uid, target.uid);
      assert.equal(st.mode & 0o7777, 0o600);
      assert.deepEqual(readFileSync(destination), source.bytes);
    });

    it(`never overwrites an existing file owned by someone else, even a world-writable one (target lock ${mechanism})`, () => {
      const source = callerProxy();
      for (const dir of [targetHome, shared]) {
        const destination = fresh(dir);
        plant(destination, 'not yours\n', caller, 0o666);
        const error = thrown(() =>
          copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { target: mechanism }),
        );
        assert.equal(error.exitCode, 201);
        assert.match(error.message, /^GLEXEC_TARGET_PROXY "/);
        assert.ok(error.message.includes(destination));
        if (dir === targetHome) {
          // Not sticky, so only glexec's own ownership check stands in the way.
          assert.equal(error.code, 'target_proxy.wrong_owner');
          assert.match(
            error.message,
            new RegExp(
              `owned by uid ${caller.uid}, not by the target account \\(uid ${target.uid}\\); it is never overwritten`,
            ),
          );
        }
        const st = lstatSync(destination);
        assert.equal(st.uid, caller.uid);
        assert.equal(st.mode & 0o7777, 0o666);
        assert.equal(readFileSync(destination, 'utf8'), 'not yours\n');
      }
      assertBackToRoot();
    });

    it(`refuses a symbolic link at the target path and leaves the file it points to untouched (target lock ${mechanism})`, () => {
      const source = callerProxy();
      const pointedTo = fresh(targetHome, 'real');
      plant(pointedTo, 'original\n', target, 0o600);
      const link = fresh(targetHome, 'link');
      symlinkSync(pointedTo, link);
      const error = thrown(() =>
        copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: link }, { target: mechanism }),
      );
      assert.equal(error.exitCode, 201);
      assert.equal(error.code, 'target_proxy.symlink');
      assert.equal(readFileSync(pointedTo, 'utf8'), 'original\n');
      assert.ok(lstatSync(link).isSymbolicLink());
      assert.equal(readlinkSync(link), pointedTo);
    });

    it(`refuses a target path whose directory does not exist (target lock ${mechanism})`, () => {
      const source = callerProxy();
      const missing = join(shared, `fakedir-${++counter}`, 'x509up');
      const error = thrown(() =>
        copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: missing }, { target: mechanism }),
      );
      assert.equal(error.exitCode, 201);
      assert.equal(error.code, 'target_proxy.no_directory');
      assert.equal(
        error.message,
        `GLEXEC_TARGET_PROXY ${JSON.stringify(missing)} cannot be created: directory ${JSON.stringify(join(missing, '..'))} does not exist`,
      );
    });

    it(`refuses a target path the target account may not write, although root could (target lock ${mechanism})`, () => {
      const source = callerProxy();
      const destination = fresh(rootOnly);
      const error = thrown(() =>
        copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { target: mechanism }),
      );
      assert.equal(error.exitCode, 201);
      assert.match(error.message, /EACCES/);
      assert.equal(existsSync(destination), false);
    });
  }

  it("writes with the target account's supplementary groups", () => {
    const source = callerProxy();
    const destination = fresh(groupOnly);
    copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination });
    assert.equal(statSync(destination).uid, target.uid);
    assert.deepEqual(readFileSync(destination), source.bytes);
  });

  it('copies the client proxy when GLEXEC_SOURCE_PROXY is unset', () => {
    const client = callerProxy();
    const destination = fresh(shared);
    copy({ GLEXEC_CLIENT_CERT: client.path, GLEXEC_TARGET_PROXY: destination });
    assert.deepEqual(readFileSync(destination), client.bytes);
  });

  it('refuses a source proxy owned by someone else', () => {
    const path = fresh(shared, 'source');
    plant(path, proxyBytes(), target, 0o644);
    const destination = fresh(shared);
    const error = thrown(() => copy({ GLEXEC_SOURCE_PROXY: path, GLEXEC_TARGET_PROXY: destination }));
    assert.equal(error.exitCode, 201);
    assert.equal(error.code, 'target_proxy.source_wrong_owner');
    assert.equal(
      error.message,
      `GLEXEC_SOURCE_PROXY ${JSON.stringify(path)} is owned by uid ${target.uid}, not by the caller (uid ${caller.uid})`,
    );
    assert.equal(existsSync(destination), false);
  });

  it('refuses a source proxy with group, other or special mode bits', () => {
    for (const mode of [0o640, 0o604, 0o660, 0o4600, 0o1600]) {
      const path = fresh(callerHome, 'source');
      plant(path, proxyBytes(), caller, mode);
      const destination = fresh(shared);
      const error = thrown(() => copy({ GLEXEC_SOURCE_PROXY: path, GLEXEC_TARGET_PROXY: destination }));
      assert.equal(error.exitCode, 201, mode.toString(8));
      assert.equal(error.code, 'target_proxy.source_bad_mode', mode.toString(8));
      assert.ok(error.message.includes(`has mode ${mode.toString(8).padStart(4, '0')}`), error.message);
      assert.equal(existsSync(destination), false);
    }
  });

  it('refuses a source proxy the caller cannot open, although root could read it', () => {
    const path = fresh(rootOnly, 'source');
    plant(path, proxyBytes(), caller, 0o600);
    const destination = fresh(shared);
    const error = thrown(() => copy({ GLEXEC_SOURCE_PROXY: path, GLEXEC_TARGET_PROXY: destination }));
    assert.equal(error.exitCode, 201);
    assert.equal(error.code, 'target_proxy.source_unreadable');
    assert.equal(
      error.message,
      `GLEXEC_SOURCE_PROXY ${JSON.stringify(path)} cannot be opened by the caller (uid ${caller.uid}): EACCES`,
    );
    assert.equal(existsSync(destination), false);
    assertBackToRoot();
  });

  it('refuses a source proxy that is a symbolic link, or missing, or empty', () => {
    const real = callerProxy();
    const link = fresh(callerHome, 'link');
    symlinkSync(real.path, link);
    lchownSync(link, caller.uid, caller.gid); // as the caller would have made it
    assert.equal(
      thrown(() => copy({ GLEXEC_SOURCE_PROXY: link, GLEXEC_TARGET_PROXY: fresh(shared) })).code,
      'target_proxy.source_symlink',
    );
    assert.equal(
      thrown(() => copy({ GLEXEC_SOURCE_PROXY: join(callerHome, 'absent'), GLEXEC_TARGET_PROXY: fresh(shared) })).code,
      'target_proxy.source_missing',
    );
    const empty = fresh(callerHome, 'empty');
    plant(empty, '', caller, 0o600);
    assert.equal(
      thrown(() => copy({ GLEXEC_SOURCE_PROXY: empty, GLEXEC_TARGET_PROXY: fresh(shared) })).code,
      'target_proxy.source_empty',
    );
  });

  it('creates a new, unguessable file in /tmp when GLEXEC_TARGET_PROXY is unset and create_target_proxy = yes', () => {
    const source = callerProxy();
    const first = copy({ GLEXEC_SOURCE_PROXY: source.path }).path;
    defaultFiles.push(first);
    const second = copy({ GLEXEC_SOURCE_PROXY: source.path }, { target: 'fcntl' }).path;
    defaultFiles.push(second);
    const pattern = new RegExp(`^${DEFAULT_TARGET_DIRECTORY}/x509up_u${target.uid}\\.glexec\\.[0-9a-f]{16}$`);
    for (const path of [first, second]) {
      assert.match(path, pattern);
      const st = lstatSync(path);
      assert.ok(st.isFile());
      assert.equal(st.uid, target.uid);
      assert.equal(st.mode & 0o7777, 0o600);
      assert.deepEqual(readFileSync(path), source.bytes);
    }
    assert.notEqual(first, second);
  });

  it('writes nothing when create_target_proxy = no and no GLEXEC_TARGET_PROXY is given', () => {
    const source = callerProxy();
    const existing = readdirSync(DEFAULT_TARGET_DIRECTORY).filter((name) => name.startsWith(`x509up_u${target.uid}.`));
    assert.equal(
      targetProxyRequest(env({ GLEXEC_SOURCE_PROXY: source.path }), { create_target_proxy: false }),
      undefined,
    );
    const afterwards = readdirSync(DEFAULT_TARGET_DIRECTORY).filter((name) =>
      name.startsWith(`x509up_u${target.uid}.`),
    );
    assert.deepEqual(afterwards, existing);
  });

  it('gives up with 201 when someone holds a flock lock on the source for longer than the wait', async () => {
    const source = callerProxy();
    const holder = await holdLock(source.path, '--exclusive', 30);
    const destination = fresh(shared);
    const started = Date.now();
    const error = thrown(() =>
      copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { waitSeconds: 1 }),
    );
    assert.ok(Date.now() - started >= 900, 'it waited');
    assert.equal(error.exitCode, 201);
    assert.equal(error.code, 'target_proxy.locked');
    assert.equal(existsSync(destination), false);
    // input_lock_mechanism = disabled reads it anyway.
    copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { input: 'disabled' });
    assert.deepEqual(readFileSync(destination), source.bytes);
    release(holder);
  });

  it('waits for a flock lock on the target and writes once it is released', async () => {
    const source = callerProxy();
    const destination = fresh(targetHome);
    plant(destination, 'old\n', target, 0o600);
    await holdLock(destination, '--shared', 1);
    const started = Date.now();
    copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { waitSeconds: 10 });
    assert.ok(Date.now() - started >= 500, 'it waited for the reader');
    assert.deepEqual(readFileSync(destination), source.bytes);
  });

  it('does not truncate a target that stays locked, and gives up with 201', async () => {
    const source = callerProxy();
    const destination = fresh(targetHome);
    plant(destination, 'old proxy\n', target, 0o600);
    const holder = await holdLock(destination, '--shared', 30);
    const error = thrown(() =>
      copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { waitSeconds: 1 }),
    );
    assert.equal(error.exitCode, 201);
    assert.equal(error.code, 'target_proxy.locked');
    assert.equal(readFileSync(destination, 'utf8'), 'old proxy\n');
    // With target_lock_mechanism = disabled the lock is not asked for.
    copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: destination }, { target: 'disabled' });
    assert.deepEqual(readFileSync(destination), source.bytes);
    release(holder);
  });

  it('gives up with LockTimeout after the wait when another process holds a conflicting flock lock, and shares a shared one', async () => {
    const path = fresh(shared, 'lockfile');
    writeFileSync(path, 'x');
    const holder = await holdLock(path, '--shared', 30);
    const fd = openSync(path, 'r');
    try {
      const started = Date.now();
      assert.throws(() => flockDescriptor(fd, 'exclusive', 0.5), LockTimeout);
      assert.ok(Date.now() - started >= 500, 'it waited the whole wait before giving up');
      flockDescriptor(fd, 'shared', 0);
    } finally {
      closeSync(fd);
      release(holder);
    }
  });

  it('says LockUnavailable, not LockTimeout, when flock(2) itself fails', () => {
    const fd = openSync(fresh(shared, 'lockfile'), 'w');
    closeSync(fd);
    assert.throws(
      () => flockDescriptor(fd, 'exclusive', 1),
      (error: Error) => {
        assert.ok(error instanceof LockUnavailable);
        assert.match(error.message, /EBADF/);
        return true;
      },
    );
  });

  it('keeps the flock lock it took until glexec closes its descriptor', () => {
    const path = fresh(shared, 'lockfile');
    writeFileSync(path, 'x');
    const tryShared = (): number | null => spawnSync('/usr/bin/flock', ['--nonblock', '--shared', path, 'true']).status;
    const fd = openSync(path, 'r');
    try {
      flockDescriptor(fd, 'exclusive', 1);
      assert.equal(tryShared(), 1, 'another process cannot lock it while glexec holds the descriptor');
    } finally {
      closeSync(fd);
    }
    assert.equal(tryShared(), 0, 'closing the descriptor released it');
  });

  it('leaves the process with euid 0, egid 0 and no supplementary groups, after success and after refusal', () => {
    const source = callerProxy();
    copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: fresh(shared) });
    assertBackToRoot();
    thrown(() => copy({ GLEXEC_SOURCE_PROXY: source.path, GLEXEC_TARGET_PROXY: join(shared, 'nodir', 'x') }));
    assertBackToRoot();
    thrown(() => copy({ GLEXEC_SOURCE_PROXY: join(rootOnly, 'nothing'), GLEXEC_TARGET_PROXY: fresh(shared) }));
    assertBackToRoot();
  });

  describe('withEffectiveIdentity', () => {
    it("runs the function with the account's effective ids and groups while real and saved ids stay 0", () => {
      const seen = withEffectiveIdentity(target, () => kernelIds());
      assert.deepEqual(seen, {
        uid: `0 ${target.uid} 0 ${target.uid}`,
        gid: `0 ${target.gid} 0 ${target.gid}`,
        groups: [...target.groups].sort((a, b) => a - b).join(' '),
      });
      assertBackToRoot();
    });

    it('restores root when the function throws, and refuses to be nested', () => {
      assert.throws(
        () =>
          withEffectiveIdentity(caller, () => {
            throw new Error('boom');
          }),
        /boom/,
      );
      assertBackToRoot();
      assert.throws(
        () => withEffectiveIdentity(caller, () => withEffectiveIdentity(target, () => 1)),
        /not re-entrant/,
      );
      assertBackToRoot();
    });
  });
});
