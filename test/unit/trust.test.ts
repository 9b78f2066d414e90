import assert from 'node:assert/strict';
import type { Stats } from 'node:fs';
import { describe, it } from 'node:test';
import { GlexecError } from '../../src/errors';
import { parseInterpreterLine, UntrustedProgram } from '../../src/interpreters';
import {
  canonicalComponents,
  requireTrustedPath,
  type TrustPolicy,
  UntrustedPath,
  walkTrustedPath,
  walkTrustedPathFollowingLinks,
} from '../../src/trust';

type Kind = 'dir' | 'file' | 'link';
interface FakeEntry {
  kind: Kind;
  uid?: number;
  gid?: number;
  mode: number;
}

function fakeFs(entries: Record<string, FakeEntry>) {
  return (path: string): Stats => {
    const entry = entries[path];
    if (!entry) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    const typeBits = entry.kind === 'dir' ? 0o040000 : entry.kind === 'file' ? 0o100000 : 0o120000;
    return {
      uid: entry.uid ?? 0,
      gid: entry.gid ?? 0,
      mode: typeBits | entry.mode,
      isDirectory: () => entry.kind === 'dir',
      isFile: () => entry.kind === 'file',
      isSymbolicLink: () => entry.kind === 'link',
    } as Stats;
  };
}

const filePolicy: TrustPolicy = { trustedUids: [], trustedGids: [], finalType: 'file' };
const tree = (overrides: Record<string, FakeEntry> = {}) =>
  fakeFs({
    '/': { kind: 'dir', mode: 0o755 },
    '/etc': { kind: 'dir', mode: 0o755 },
    '/etc/epi': { kind: 'file', mode: 0o755 },
    ...overrides,
  });

function rule(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof UntrustedPath, String(error));
    return error.message;
  }
  assert.fail('expected the path to be refused');
}

describe('trusted path walk', () => {
  it('a root-owned chain of 0755 directories and a 0755 file is trusted', () => {
    assert.ok(walkTrustedPath('/etc/epi', filePolicy, tree()).isFile());
  });

  it('a relative path is refused', () => {
    assert.equal(
      rule(() => canonicalComponents('etc/epi')),
      'etc/epi is not an absolute path',
    );
  });

  it('a path with .. is refused as not canonical', () => {
    assert.match(
      rule(() => canonicalComponents('/etc/../etc/epi')),
      /not canonical \(it has a "\.\." component\)/,
    );
  });

  it('a path with // or a trailing slash is refused', () => {
    assert.match(
      rule(() => canonicalComponents('/etc//epi')),
      /double or trailing/,
    );
    assert.match(
      rule(() => canonicalComponents('/etc/')),
      /double or trailing/,
    );
  });

  it('a symbolic link anywhere in the path is refused, naming it', () => {
    assert.equal(
      rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'link', mode: 0o777 } }))),
      '/etc is a symbolic link (the path must be canonical)',
    );
  });

  it('a directory owned by another user is refused', () => {
    assert.equal(
      rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', uid: 1000, mode: 0o755 } }))),
      '/etc is owned by uid 1000, not by root',
    );
  });

  it('a world-writable sticky directory is refused', () => {
    assert.equal(
      rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', mode: 0o1777 } }))),
      '/etc is world-writable (sticky or not) (mode 1777)',
    );
  });

  it('a group-writable directory with an untrusted group is refused', () => {
    assert.equal(
      rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', gid: 50, mode: 0o775 } }))),
      '/etc is writable by group gid 50, which is not trusted (mode 0775)',
    );
  });

  it('a group-writable file is trusted when its group is a trusted group', () => {
    const policy = { ...filePolicy, trustedGids: [50] };
    assert.ok(
      walkTrustedPath('/etc/epi', policy, tree({ '/etc/epi': { kind: 'file', gid: 50, mode: 0o775 } })).isFile(),
    );
  });

  it('a file owned by a trusted account is trusted', () => {
    const policy = { ...filePolicy, trustedUids: [1000] };
    assert.ok(
      walkTrustedPath('/etc/epi', policy, tree({ '/etc/epi': { kind: 'file', uid: 1000, mode: 0o755 } })).isFile(),
    );
  });

  it('owners given by a look-up: it is not asked for a root-owned path, and asked for a path a non-root account owns', () => {
    let asked = 0;
    const policy = {
      ...filePolicy,
      trustedUids: () => {
        asked++;
        return [1000];
      },
    };
    assert.ok(walkTrustedPath('/etc/epi', policy, tree()).isFile());
    assert.equal(asked, 0);
    assert.ok(
      walkTrustedPath('/etc/epi', policy, tree({ '/etc/epi': { kind: 'file', uid: 1000, mode: 0o755 } })).isFile(),
    );
    assert.equal(asked, 1);
    assert.equal(
      rule(() => walkTrustedPath('/etc/epi', policy, tree({ '/etc/epi': { kind: 'file', uid: 1001, mode: 0o755 } }))),
      '/etc/epi is owned by uid 1001, not by root or a trusted account',
    );
    assert.equal(
      rule(() =>
        walkTrustedPath(
          '/etc/epi',
          { ...filePolicy, trustedUids: () => [] },
          tree({ '/etc/epi': { kind: 'file', uid: 1000, mode: 0o755 } }),
        ),
      ),
      '/etc/epi is owned by uid 1000, not by root',
    );
  });

  it('a final component of the wrong type is refused', () => {
    assert.equal(
      rule(() => walkTrustedPath('/etc', filePolicy, tree())),
      '/etc is not a regular file',
    );
  });
});

describe('the kind of each refusal, from which glexec --check derives the fix', () => {
  const kindOf = (fn: () => unknown): unknown => {
    try {
      fn();
    } catch (error) {
      if (error instanceof GlexecError) return error.problem;
      assert.ok(error instanceof UntrustedPath, String(error));
      return error.problem;
    }
    assert.fail('expected the path to be refused');
  };

  it('names the component and the rule it broke', () => {
    assert.deepEqual(
      kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'link', mode: 0o777 } }))),
      { kind: 'symlink', path: '/etc' },
    );
    assert.deepEqual(
      kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', mode: 0o775 } }))),
      { kind: 'writable', path: '/etc' },
    );
    assert.deepEqual(
      kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc/epi': { kind: 'file', mode: 0o757 } }))),
      { kind: 'writable', path: '/etc/epi' },
    );
    assert.deepEqual(
      kindOf(() =>
        walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc/epi': { kind: 'file', uid: 7, mode: 0o755 } })),
      ),
      { kind: 'owner', path: '/etc/epi' },
    );
    assert.deepEqual(
      kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc/epi': { kind: 'dir', mode: 0o755 } }))),
      { kind: 'wrong-type', path: '/etc/epi', expected: 'file' },
    );
    assert.deepEqual(
      kindOf(() => canonicalComponents('/etc/../epi')),
      { kind: 'not-canonical', path: '/etc/../epi' },
    );
  });

  it('a component that does not exist is missing, at that component, through requireTrustedPath', () => {
    const missingDir = (path: string): Stats => {
      if (path === '/etc') throw Object.assign(new Error('ENOENT'), { code: 'ENOENT', path });
      return tree()(path);
    };
    assert.deepEqual(
      kindOf(() => requireTrustedPath('epilogue', '/etc/epi', filePolicy, missingDir, 'epilogue.untrusted')),
      { kind: 'missing', path: '/etc' },
    );
  });
});

describe('trusted path walk that follows symbolic links (for interpreters)', () => {
  // Debian 12's merged /usr: /bin -> usr/bin, /usr/bin/sh -> dash.
  const merged = (overrides: Record<string, FakeEntry> = {}) =>
    tree({
      '/bin': { kind: 'link', uid: 1000, mode: 0o777 },
      '/usr': { kind: 'dir', mode: 0o755 },
      '/usr/bin': { kind: 'dir', mode: 0o755 },
      '/usr/bin/sh': { kind: 'link', mode: 0o777 },
      '/usr/bin/dash': { kind: 'file', mode: 0o755 },
      '/opt': { kind: 'dir', uid: 1000, mode: 0o755 },
      '/opt/sh': { kind: 'link', mode: 0o777 },
      ...overrides,
    });
  const links: Record<string, string> = {
    '/bin': 'usr/bin',
    '/usr/bin/sh': 'dash',
    '/opt/sh': '../usr/bin/dash',
    '/etc/loop': '/etc/loop',
  };
  const readlink = (path: string): string => links[path] ?? assert.fail(`no link ${path}`);

  it('follows relative links to the file they lead to, and returns its resolved path', () => {
    const { resolved, stats } = walkTrustedPathFollowingLinks('/bin/sh', filePolicy, merged(), readlink);
    assert.equal(resolved, '/usr/bin/dash');
    assert.ok(stats.isFile());
  });

  it("checks the directory that holds a link, not the link's own owner or mode", () => {
    assert.equal(walkTrustedPathFollowingLinks('/bin/sh', filePolicy, merged(), readlink).resolved, '/usr/bin/dash');
    const refused = () => walkTrustedPathFollowingLinks('/opt/sh', filePolicy, merged(), readlink);
    assert.throws(
      refused,
      (error: unknown) => error instanceof UntrustedPath && error.message === '/opt is owned by uid 1000, not by root',
    );
  });

  it('refuses a file behind a link that another account owns', () => {
    const refused = () =>
      walkTrustedPathFollowingLinks(
        '/bin/sh',
        filePolicy,
        merged({ '/usr/bin/dash': { kind: 'file', uid: 1000, mode: 0o755 } }),
        readlink,
      );
    assert.throws(
      refused,
      (error: unknown) =>
        error instanceof UntrustedPath && error.message === '/usr/bin/dash is owned by uid 1000, not by root',
    );
  });

  it('refuses a magic link in /proc, whose text is not what the kernel follows', () => {
    const proc = tree({ '/proc': { kind: 'dir', mode: 0o555 }, '/proc/self': { kind: 'link', mode: 0o777 } });
    const refused = () => walkTrustedPathFollowingLinks('/proc/self/root/bin/sh', filePolicy, proc, readlink);
    assert.throws(
      refused,
      (error: unknown) =>
        error instanceof UntrustedPath &&
        error.message ===
          '/proc/self is a link in /proc, which the kernel resolves by process, not by what readlink says',
    );
  });

  it('gives up on a link loop as the kernel does, after 40 links', () => {
    const refused = () =>
      walkTrustedPathFollowingLinks(
        '/etc/loop',
        filePolicy,
        tree({ '/etc/loop': { kind: 'link', mode: 0o777 } }),
        readlink,
      );
    assert.throws(
      refused,
      (error: unknown) =>
        error instanceof UntrustedPath && error.message === '/etc/loop has more than 40 symbolic links to follow',
    );
  });
});

describe('the #! line as the kernel reads it', () => {
  const parse = (text: string | Buffer) =>
    parseInterpreterLine(Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1'), '/e');

  it('takes the interpreter and one optional argument, the rest of the line as one word', () => {
    assert.deepEqual(parse('#!/bin/sh\necho'), { interpreter: '/bin/sh' });
    assert.deepEqual(parse('#! \t/usr/bin/env   python3 -u \t\nx'), {
      interpreter: '/usr/bin/env',
      argument: 'python3 -u',
    });
  });

  it('is not there when the file does not start with #!', () => {
    assert.equal(parse('\x7fELF'), undefined);
    assert.equal(parse(' #!/bin/sh\n'), undefined);
  });

  it('ends at a NUL byte', () => {
    assert.deepEqual(parse(Buffer.from('#!/bin/sh\0 -x\n')), { interpreter: '/bin/sh' });
  });

  it('refuses a line that names no interpreter, and an interpreter name longer than the 256 bytes the kernel reads', () => {
    assert.throws(
      () => parse('#!   \n'),
      (error: unknown) =>
        error instanceof UntrustedProgram && error.message === 'the #! line of /e names no interpreter',
    );
    assert.throws(
      () => parse(`#!/${'x'.repeat(300)}`),
      (error: unknown) =>
        error instanceof UntrustedProgram &&
        error.message === 'the #! line of /e is longer than the 256 bytes the kernel reads',
    );
  });

  it('accepts a long line without a newline when the interpreter name ends within the 256 bytes, as the kernel does', () => {
    assert.deepEqual(parse(`#!/bin/sh ${'y'.repeat(300)}`), { interpreter: '/bin/sh', argument: 'y'.repeat(245) });
  });
});
