/**
 * Mapping through a site's lcmaps.db, end to end: the lcmaps.db of a gLExec deployment guide,
 * local accounts, pool-account leases in a gridmapdir (reuse, 64 at once, a full pool), the
 * verify-proxy options, and every refusal.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { encodeLeaseName } from '../../src/mapping/pool';
import { TestPki } from '../helpers/pki-fixtures';
import { needsRoot, TestSystem } from '../helpers/system';

let system: TestSystem;
let pki: TestPki;
let lcmapsDb: string;
let gridmapdir: string;
let pool: string[];
let smallPool: string[];
const POOL_SIZE = 64;

/** The lcmaps.db of a worker node as the EMI gLExec guides lay it out, with the test's paths. */
function siteLcmapsDb(verifyOptions: string[] = ['--allow-limited-proxy']): string {
  return [
    '# LCMAPS policy file for glexec on the worker node',
    'path = /usr/lib64/lcmaps',
    '',
    '# Modules',
    'verifyproxy = "lcmaps_verify_proxy.mod"',
    `              " -certdir ${system.certdir}"`,
    ...verifyOptions.map((option) => `              " ${option}"`),
    '',
    'localaccount = "lcmaps_localaccount.mod"',
    `               " -gridmapfile ${system.gridmapPath}"`,
    '',
    'poolaccount = "lcmaps_poolaccount.mod"',
    '              " -override_inconsistency"',
    `              " -gridmapfile ${system.gridmapPath}"`,
    `              " -gridmapdir ${gridmapdir}"`,
    '',
    'posix_enf = "lcmaps_posix_enf.mod"',
    '            " -maxuid 1 -maxpgid 1 -maxsgid 32"',
    '',
    '# Policies',
    'glexec_get_account:',
    'verifyproxy -> localaccount',
    'localaccount -> posix_enf | poolaccount',
    'poolaccount -> posix_enf',
    '',
  ].join('\n');
}

function writeLcmapsDb(text: string, mode = 0o644): void {
  rmSync(lcmapsDb, { force: true });
  writeFileSync(lcmapsDb, text, { mode });
  chmodSync(lcmapsDb, mode);
}

function configWithLcmaps(extra: string[] = []): void {
  system.writeConfig(
    system.standardConfig([`lcmaps_db_file = ${lcmapsDb}`, 'lcmaps_get_account_policy = glexec_get_account', ...extra]),
  );
}

/** A fresh gridmapdir: one empty root-owned file per pool account, no leases. */
function resetGridmapdir(): void {
  rmSync(gridmapdir, { recursive: true, force: true });
  mkdirSync(gridmapdir, { mode: 0o755 });
  for (const account of [...pool, ...smallPool]) writeFileSync(join(gridmapdir, account), '', { mode: 0o644 });
}

const dnOf = (index: number) => `/C=NL/O=Example/OU=Pool/CN=Pool User ${index}`;
const poolBase = () => `${system.prefix}p`;
const smallBase = () => `${system.prefix}s`;

function expectRefusal(result: { status: number | null; stderr: string }, status: number, pattern: RegExp): void {
  assert.match(result.stderr, pattern);
  assert.equal(result.stderr.split('\n').length, 2, 'one line');
  assert.equal(result.status, status);
}

describe('mapping through lcmaps.db', { skip: needsRoot }, () => {
  before(() => {
    system = TestSystem.create();
    pki = TestPki.create(system);
    lcmapsDb = join(system.root, 'etc/lcmaps.db');
    gridmapdir = join(system.root, 'etc/gridmapdir');
    pool = system.addPoolAccounts('p', POOL_SIZE);
    smallPool = system.addPoolAccounts('s', 2);
  });
  after(() => system?.tearDown());
  beforeEach(() => {
    resetGridmapdir();
    writeLcmapsDb(siteLcmapsDb());
    configWithLcmaps();
    system.writeGridMap([`"${pki.userDn}" ${system.target.name}`, `"/C=NL/O=Example/OU=Pool" .${poolBase()}`]);
  });

  it('a local account from the grid-mapfile, through the site lcmaps.db', () => {
    const result = system.run(['/usr/bin/id', '-un'], { env: { GLEXEC_CLIENT_CERT: pki.pilotProxy } });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout, `${system.target.name}\n`);
    const mapped = system.logRecords().find((entry) => entry.msg === 'lcmaps policy mapped');
    assert.deepEqual([mapped?.policy, mapped?.via], ['glexec_get_account', 'localaccount']);
  });

  it('a pool account is leased by a hard link named after the DN, and the same DN gets it again', () => {
    system.writeGridMap([`"${dnOf(1)}" .${poolBase()}`]);
    const proxy = pki.proxyFor('pool1.pem', dnOf(1));
    const first = system.run(['/usr/bin/id', '-un'], { env: { GLEXEC_CLIENT_CERT: proxy } });
    assert.equal(first.status, 0, first.stderr);
    const account = first.stdout.trim();
    assert.ok(pool.includes(account), account);
    const lease = join(gridmapdir, encodeLeaseName(dnOf(1)));
    assert.equal(statSync(lease).ino, statSync(join(gridmapdir, account)).ino);
    assert.equal(statSync(lease).nlink, 2);
    const again = system.run(['/usr/bin/id', '-un'], { env: { GLEXEC_CLIENT_CERT: proxy } });
    assert.equal(again.stdout, first.stdout);
  });

  it('64 glexec runs at once for 64 new DNs get 64 different pool accounts', async () => {
    const dns = Array.from({ length: POOL_SIZE }, (_, index) => dnOf(100 + index));
    system.writeGridMap(dns.map((dn) => `"${dn}" .${poolBase()}`));
    const proxies = dns.map((dn, index) => pki.proxyFor(`many-${index}.pem`, dn));
    const runs = proxies.map((proxy) => {
      const child = system.start(['/usr/bin/id', '-un'], { env: { GLEXEC_CLIENT_CERT: proxy } });
      let out = '';
      let err = '';
      child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
      return new Promise<{ status: number | null; out: string; err: string }>((resolve) =>
        child.once('close', (status) => resolve({ status, out, err })),
      );
    });
    const results = await Promise.all(runs);
    for (const result of results) assert.equal(result.status, 0, result.err);
    const accounts = results.map((result) => result.out.trim());
    assert.equal(new Set(accounts).size, POOL_SIZE, accounts.join(' '));
    for (const account of accounts) assert.ok(pool.includes(account));
    const leases = readdirSync(gridmapdir).filter((name) => name.startsWith('%'));
    assert.equal(leases.length, POOL_SIZE);
  });

  it('a full pool is a 203 that says so', () => {
    const writePoolMap = (count: number) =>
      system.writeGridMap(Array.from({ length: count }, (_, index) => `"${dnOf(500 + index)}" .${smallBase()}`));
    writePoolMap(3);
    for (const index of [0, 1]) {
      assert.equal(
        system.run(['/bin/true'], {
          env: { GLEXEC_CLIENT_CERT: pki.proxyFor(`small-${index}.pem`, dnOf(500 + index)) },
        }).status,
        0,
      );
    }
    const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.proxyFor('small-2.pem', dnOf(502)) } });
    expectRefusal(result, 203, /^glexec: .*pool .*full/i);
  });

  it('a limited proxy is accepted with --allow-limited-proxy', () => {
    const limited = pki.proxyFor('limited.pem', pki.userDn, { kind: 'limited' });
    assert.equal(system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: limited } }).status, 0);
  });

  it('a limited proxy is refused (203) under --disallow-limited-proxy, and runs without a flag, as verify_proxy 1.5.10 defaults', () => {
    writeLcmapsDb(siteLcmapsDb(['--disallow-limited-proxy']));
    const limited = pki.proxyFor('limited2.pem', pki.userDn, { kind: 'limited' });
    expectRefusal(system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: limited } }), 203, /^glexec: .*limited/);
    writeLcmapsDb(siteLcmapsDb([]));
    const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: limited } });
    assert.equal(result.status, 0, result.stderr);
  });

  it('a proxy that lives longer than --max-proxy-level-ttl allows is refused (203); a shorter one runs', () => {
    writeLcmapsDb(siteLcmapsDb(['--allow-limited-proxy', '--max-proxy-level-ttl=L 0d-02:00']));
    const long = pki.proxyFor('long.pem', pki.userDn, { hours: 12 });
    expectRefusal(
      system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: long } }),
      203,
      /^glexec: .*(lifetime|ttl|longer)/i,
    );
    const short = pki.proxyFor('short.pem', pki.userDn, { hours: 1 });
    assert.equal(system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: short } }).status, 0);
  });

  it('a DN in neither the grid-mapfile nor a pool is a 203 that names the policy', () => {
    const stranger = pki.proxyFor('stranger-dn.pem', '/C=NL/O=Elsewhere/CN=Nobody');
    expectRefusal(
      system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: stranger } }),
      203,
      /^glexec: .*glexec_get_account/,
    );
  });

  describe('what the site must fix (202)', () => {
    const expectSystemError = (pattern: RegExp) =>
      expectRefusal(system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.pilotProxy } }), 202, pattern);

    it('a module glexec does not know names the file, line and module', () => {
      writeLcmapsDb(`${siteLcmapsDb()}\nscas = "lcmaps_scas_client.mod"\nglexec_get_account2:\nscas -> posix_enf\n`);
      system.writeConfig(
        system.standardConfig([`lcmaps_db_file = ${lcmapsDb}`, 'lcmaps_get_account_policy = glexec_get_account2']),
      );
      expectSystemError(new RegExp(`^glexec: ${lcmapsDb}.* line \\d+.*lcmaps_scas_client\\.mod`));
    });

    it('an option glexec does not know names it', () => {
      writeLcmapsDb(siteLcmapsDb(['--allow-limited-proxy', '--frobnicate']));
      expectSystemError(/^glexec: .*line \d+.*--frobnicate/);
    });

    it('a syntax error names the line', () => {
      writeLcmapsDb(siteLcmapsDb().replace('"lcmaps_posix_enf.mod"', '"lcmaps_posix_enf.mod'));
      expectSystemError(new RegExp(`^glexec: ${lcmapsDb} line \\d+`));
    });

    it('an lcmaps.db that others can write is refused', () => {
      writeLcmapsDb(siteLcmapsDb(), 0o666);
      expectSystemError(new RegExp(`^glexec: .*${lcmapsDb} is world-writable`));
    });

    it('a gridmapdir that others can write is refused', () => {
      system.writeGridMap([`"${dnOf(9)}" .${poolBase()}`]);
      chmodSync(gridmapdir, 0o777);
      const result = system.run(['/bin/true'], { env: { GLEXEC_CLIENT_CERT: pki.proxyFor('pool9.pem', dnOf(9)) } });
      expectRefusal(result, 202, /^glexec: .*gridmapdir/);
    });

    it('a policy that lcmaps.db does not define is refused', () => {
      system.writeConfig(
        system.standardConfig([`lcmaps_db_file = ${lcmapsDb}`, 'lcmaps_get_account_policy = no_such_policy']),
      );
      expectSystemError(/^glexec: .*policy 'no_such_policy' .* is not defined/);
    });

    it('lcmaps_db_file without lcmaps_get_account_policy is refused', () => {
      system.writeConfig(system.standardConfig([`lcmaps_db_file = ${lcmapsDb}`]));
      expectSystemError(/^glexec: lcmaps_get_account_policy names no policy\n$/);
    });

    it('glexec --check checks the lcmaps.db and names the problem', () => {
      writeLcmapsDb(siteLcmapsDb(['--frobnicate']));
      const result = system.run(['--check'], { as: { name: 'root', uid: 0, gid: 0 } });
      assert.equal(result.status, 202);
      assert.match(result.stdout, /^error {3}lcmaps\.db: .*--frobnicate.*\(fix: /m);
      writeLcmapsDb(siteLcmapsDb());
      const fine = system.run(['--check'], { as: { name: 'root', uid: 0, gid: 0 } });
      assert.equal(fine.status, 0, fine.stdout);
      assert.match(fine.stdout, /^ok {6}lcmaps\.db: .*policies glexec_get_account/m);
    });
  });
});
