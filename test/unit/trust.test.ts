import assert from 'node:assert/strict';
import type { Stats } from 'node:fs';
import { describe, it } from 'node:test';
import { GlexecError } from '../../src/errors';
import { canonicalComponents, requireTrustedPath, type TrustPolicy, UntrustedPath, walkTrustedPath } from '../../src/trust';

type Kind = 'dir' | 'file' | 'link';
interface FakeEntry { kind: Kind; uid?: number; gid?: number; mode: number }

function fakeFs(entries: Record<string, FakeEntry>) {
  return (path: string): Stats => {
    const entry = entries[path];
    if (!entry) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    const typeBits = entry.kind === 'dir' ? 0o040000 : entry.kind === 'file' ? 0o100000 : 0o120000;
    return {
      uid: entry.uid ?? 0, gid: entry.gid ?? 0, mode: typeBits | entry.mode,
      isDirectory: () => entry.kind === 'dir', isFile: () => entry.kind === 'file', isSymbolicLink: () => entry.kind === 'link',
    } as Stats;
  };
}

const filePolicy: TrustPolicy = { trustedUids: [], trustedGids: [], finalType: 'file' };
const tree = (overrides: Record<string, FakeEntry> = {}) =>
  fakeFs({ '/': { kind: 'dir', mode: 0o755 }, '/etc': { kind: 'dir', mode: 0o755 }, '/etc/epi': { kind: 'file', mode: 0o755 }, ...overrides });

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
    assert.equal(rule(() => canonicalComponents('etc/epi')), 'etc/epi is not an absolute path');
  });

  it('a path with .. is refused as not canonical', () => {
    assert.match(rule(() => canonicalComponents('/etc/../etc/epi')), /not canonical \(it has a "\.\." component\)/);
  });

  it('a path with // or a trailing slash is refused', () => {
    assert.match(rule(() => canonicalComponents('/etc//epi')), /double or trailing/);
    assert.match(rule(() => canonicalComponents('/etc/')), /double or trailing/);
  });

  it('a symbolic link anywhere in the path is refused, naming it', () => {
    assert.equal(rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'link', mode: 0o777 } }))), '/etc is a symbolic link (the path must be canonical)');
  });

  it('a directory owned by another user is refused', () => {
    assert.equal(rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', uid: 1000, mode: 0o755 } }))), '/etc is owned by uid 1000, not by root');
  });

  it('a world-writable sticky directory is refused', () => {
    assert.equal(rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', mode: 0o1777 } }))), '/etc is world-writable (sticky or not) (mode 1777)');
  });

  it('a group-writable directory with an untrusted group is refused', () => {
    assert.equal(rule(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', gid: 50, mode: 0o775 } }))), '/etc is writable by group gid 50, which is not trusted (mode 0775)');
  });

  it('a group-writable file is trusted when its group is a trusted group', () => {
    const policy = { ...filePolicy, trustedGids: [50] };
    assert.ok(walkTrustedPath('/etc/epi', policy, tree({ '/etc/epi': { kind: 'file', gid: 50, mode: 0o775 } })).isFile());
  });

  it('a file owned by a trusted account is trusted', () => {
    const policy = { ...filePolicy, trustedUids: [1000] };
    assert.ok(walkTrustedPath('/etc/epi', policy, tree({ '/etc/epi': { kind: 'file', uid: 1000, mode: 0o755 } })).isFile());
  });

  it('a final component of the wrong type is refused', () => {
    assert.equal(rule(() => walkTrustedPath('/etc', filePolicy, tree())), '/etc is not a regular file');
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
    assert.deepEqual(kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'link', mode: 0o777 } }))), { kind: 'symlink', path: '/etc' });
    assert.deepEqual(kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc': { kind: 'dir', mode: 0o775 } }))), { kind: 'writable', path: '/etc' });
    assert.deepEqual(kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc/epi': { kind: 'file', mode: 0o757 } }))), { kind: 'writable', path: '/etc/epi' });
    assert.deepEqual(kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc/epi': { kind: 'file', uid: 7, mode: 0o755 } }))), { kind: 'owner', path: '/etc/epi' });
    assert.deepEqual(kindOf(() => walkTrustedPath('/etc/epi', filePolicy, tree({ '/etc/epi': { kind: 'dir', mode: 0o755 } }))), { kind: 'wrong-type', path: '/etc/epi', expected: 'file' });
    assert.deepEqual(kindOf(() => canonicalComponents('/etc/../epi')), { kind: 'not-canonical', path: '/etc/../epi' });
  });

  it('a component that does not exist is missing, at that component, through requireTrustedPath', () => {
    const missingDir = (path: string): Stats => {
      if (path === '/etc') throw Object.assign(new Error('ENOENT'), { code: 'ENOENT', path });
      return tree()(path);
    };
    assert.deepEqual(kindOf(() => requireTrustedPath('epilogue', '/etc/epi', filePolicy, missingDir, 'epilogue.untrusted')), { kind: 'missing', path: '/etc' });
  });
});
