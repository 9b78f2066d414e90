/**
 * `npm run install-system` as a site admin runs it: the config file's directory is made if
 * missing, the config path compiled in is said, a bad argument is one line, not a stack trace, and
 * the setuid programs are linked statically.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { needsRoot, REPO } from '../helpers/system';

let root: string;

/** install-system with `args`, under the umask given (the admin's shell may have any). */
function install(args: string[], umask = '022'): { status: number | null; stdout: string; stderr: string } {
  const script = join(REPO, 'scripts/install-system.mjs');
  const result = spawnSync('/bin/sh', ['-c', `umask ${umask}; exec "$0" "$@"`, process.execPath, script, ...args], {
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The p_type of each program header of a 64-bit little-endian ELF file. */
function programHeaderTypes(path: string): number[] {
  const elf = readFileSync(path);
  assert.equal(elf.readUInt32BE(0), 0x7f454c46, `${path} is not an ELF file`);
  assert.equal(elf[4], 2, `${path} is not a 64-bit ELF file`);
  const offset = Number(elf.readBigUInt64LE(0x20));
  const size = elf.readUInt16LE(0x36);
  return Array.from({ length: elf.readUInt16LE(0x38) }, (_, index) => elf.readUInt32LE(offset + index * size));
}

const PT_DYNAMIC = 2;
const PT_INTERP = 3;

describe('install-system', { skip: needsRoot }, () => {
  before(() => {
    root = mkdtempSync('/var/lib/glexec-install-test-');
    chmodSync(root, 0o755);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('a --node= that does not exist is one line, exit 1', () => {
    const result = install([
      `--prefix=${root}/prefix`,
      `--config=${root}/etc/glexec.conf`,
      `--node=${root}/no-such-node`,
    ]);
    assert.equal(result.stderr, `install-system: --node=${root}/no-such-node: no such file\n`);
    assert.equal(result.status, 1);
  });

  it('a --node= that is not an executable file is one line, exit 1', () => {
    const result = install([`--prefix=${root}/prefix`, `--config=${root}/etc/glexec.conf`, `--node=${root}`]);
    assert.equal(result.stderr, `install-system: --node=${root}: ${root} is not an executable file\n`);
    assert.equal(result.status, 1);
  });

  it("creates the config file's missing directories root-owned 0755, whatever the umask, and says which config path it compiled in", () => {
    const config = join(root, 'etc/glexec/glexec.conf');
    const result = install([`--prefix=${root}/prefix`, `--config=${config}`], '077');
    assert.equal(result.status, 0, result.stderr);
    for (const dir of [join(root, 'etc'), join(root, 'etc/glexec')]) {
      const st = statSync(dir);
      assert.equal(st.uid, 0);
      assert.equal(st.gid, 0);
      assert.equal(st.mode & 0o7777, 0o755, dir);
    }
    const lines = result.stdout.split('\n');
    assert.ok(
      lines.includes(`the shim reads its configuration from ${config} (compiled in; glexec -V shows it)`),
      result.stdout,
    );
    assert.ok(
      lines.includes(
        `${config} does not exist yet: install -o root -g root -m 0600 etc/glexec.conf ${config}, edit it, then run glexec --check`,
      ),
      result.stdout,
    );
    const version = spawnSync(join(root, 'prefix/sbin/glexec'), ['-V'], { encoding: 'utf8' });
    assert.ok(version.stdout.includes(`GLEXEC_CONFIG_FILE="${config}"`), version.stdout + version.stderr);
  });

  it('installs the setuid shim and start-payload linked statically: no dynamic loader and no shared library runs in them as root', () => {
    const result = install([`--prefix=${root}/static`, `--config=${root}/etc/static.conf`]);
    assert.equal(result.status, 0, result.stderr);
    for (const program of ['sbin/glexec', 'lib/glexec/start-payload']) {
      const types = programHeaderTypes(join(root, 'static', program));
      assert.ok(!types.includes(PT_INTERP), `${program} names a dynamic loader`);
      // static-pie relocates itself from its own dynamic section; it needs no library.
      assert.ok(types.includes(PT_DYNAMIC), `${program} is not position-independent (static-pie)`);
    }
    assert.ok(statSync(join(root, 'static/sbin/glexec')).mode & 0o4000, 'the shim is setuid');
  });
});
