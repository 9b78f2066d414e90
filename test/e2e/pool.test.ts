import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { type LeaseOptions, encodeLeaseName, leasePoolAccount } from '../../src/mapping/pool';
import { type GridmapdirFs, gridmapdirLinks } from '../../src/sys/files';
import type { LeaseReport, LeaseRequest } from './pool-lease-child';
import { thrown } from '../helpers/assertions';

const isRoot = process.getuid?.() === 0;
// As root the gridmapdirs sit in a root-only directory and the real trust check runs; without
// root that cannot be arranged, so the check is replaced (the root-only tests are skipped).
const base = isRoot ? mkdtempSync('/var/lib/glexec-pool-test-') : mkdtempSync(join(tmpdir(), 'glexec-pool-test-'));
const trustOptions: LeaseOptions = isRoot ? {} : { checkGridmapdir: () => undefined };
after(() => rmSync(base, { recursive: true, force: true }));

let dirCount = 0;
/** A fresh gridmapdir holding one empty file per account name. */
function gridmapdir(accounts: readonly string[]): string {
  const dir = join(base, `gridmapdir${++dirCount}`);
  mkdirSync(dir, { mode: 0o755 });
  for (const account of accounts) writeFileSync(join(dir, account), '', { mode: 0o644 });
  return dir;
}

const range = (pool: string, count: number): string[] =>
  Array.from({ length: count }, (_, index) => `${pool}${String(index + 1).padStart(3, '0')}`);
const nlink = (path: string): number => lstatSync(path).nlink;
const sameFile = (a: string, b: string): boolean => lstatSync(a).ino === lstatSync(b).ino;
const lease = (dir: string, pool: string, dn: string, options: LeaseOptions = {}) =>
  leasePoolAccount(dir, pool, dn, { ...trustOptions, ...options });
const dnOf = (index: number) => `/DC=org/DC=example/CN=User ${index}`;

describe('lease names', () => {
  it('are the DN lower-cased with every byte but letters and digits %-encoded, as LCMAPS names them', () => {
    assert.equal(encodeLeaseName('/C=NL/O=Example/CN=Jane Doe'), '%2fc%3dnl%2fo%3dexample%2fcn%3djane%20doe');
    // The example of the lcmaps_poolaccount.mod man page.
    assert.equal(
      encodeLeaseName('/DC=org/DC=terena/DC=tcs/C=NL/O=Nikhef/CN=Oscar Koeroo okoeroo@nikhef.nl'),
      '%2fdc%3dorg%2fdc%3dterena%2fdc%3dtcs%2fc%3dnl%2fo%3dnikhef%2fcn%3doscar%20koeroo%20okoeroo%40nikhef%2enl',
    );
  });

  it('encode non-ASCII characters as their UTF-8 bytes', () => {
    assert.equal(encodeLeaseName('/CN=José-1'), '%2fcn%3djos%c3%a9%2d1');
  });
});

describe('leasing a pool account', () => {
  it('a new DN gets the first free account, as a hard link named after the DN', () => {
    const dir = gridmapdir(range('atlas', 3));
    assert.equal(lease(dir, 'atlas', dnOf(1)), 'atlas001');
    const leaseFile = join(dir, encodeLeaseName(dnOf(1)));
    assert.ok(sameFile(leaseFile, join(dir, 'atlas001')));
    assert.equal(nlink(join(dir, 'atlas001')), 2);
    assert.deepEqual(
      readdirSync(dir).sort(),
      [encodeLeaseName(dnOf(1)), ...range('atlas', 3)].sort(),
      'no claim is left behind',
    );
  });

  it('the same DN gets its existing lease back, whatever else is free', () => {
    const dir = gridmapdir(range('atlas', 3));
    assert.equal(lease(dir, 'atlas', dnOf(1)), 'atlas001');
    assert.equal(lease(dir, 'atlas', dnOf(2)), 'atlas002');
    assert.equal(lease(dir, 'atlas', dnOf(1)), 'atlas001');
    assert.equal(lease(dir, '.atlas', dnOf(2)), 'atlas002', 'the pool may be given with its dot');
    assert.equal(nlink(join(dir, 'atlas001')), 2);
  });

  it('a leased account is skipped and a released one (lease removed) is reused', () => {
    const dir = gridmapdir(range('atlas', 2));
    lease(dir, 'atlas', dnOf(1));
    assert.equal(lease(dir, 'atlas', dnOf(2)), 'atlas002');
    rmSync(join(dir, encodeLeaseName(dnOf(1))));
    assert.equal(lease(dir, 'atlas', dnOf(3)), 'atlas001');
  });

  it('accounts are taken in numeric order, and only those of the pool', () => {
    const dir = gridmapdir(['atlas10', 'atlas9', 'atlasprd1', 'cms1', 'atlas', 'root']);
    assert.equal(lease(dir, 'atlas', dnOf(1)), 'atlas9');
    assert.equal(lease(dir, 'atlas', dnOf(2)), 'atlas10');
    assert.equal(
      thrown(() => lease(dir, 'atlas', dnOf(3))).code,
      'mapping.pool_full',
      'atlasprd1 and atlas are not in pool atlas',
    );
  });

  it('the legacy prefix match (-strict_poolprefix_match no) takes any name starting with the pool', () => {
    const dir = gridmapdir(['atlasprd1']);
    assert.equal(lease(dir, 'atlas', dnOf(1), { strictPrefixMatch: false }), 'atlasprd1');
  });

  it('a pool of 10 serves 10 DNs and the 11th gets a 203 that says the pool is full', () => {
    const dir = gridmapdir(range('atlas', 10));
    const accounts = Array.from({ length: 10 }, (_, index) => lease(dir, 'atlas', dnOf(index)));
    assert.equal(new Set(accounts).size, 10);
    const error = thrown(() => lease(dir, 'atlas', dnOf(10)));
    assert.equal(error.exitCode, 203);
    assert.equal(error.code, 'mapping.pool_full');
    assert.equal(error.message, `pool 'atlas' is full: all 10 accounts in gridmapdir ${dir} are leased`);
    assert.equal(lease(dir, 'atlas', dnOf(3)), accounts[3], 'DNs with a lease still get it');
  });

  it('a pool with no accounts at all is a site problem (202)', () => {
    const dir = gridmapdir(range('cms', 2));
    const error = thrown(() => lease(dir, 'atlas', dnOf(1)));
    assert.equal(error.exitCode, 202);
    assert.equal(error.message, `pool 'atlas' has no accounts in gridmapdir ${dir}`);
  });

  it('a symbolic link in the pool is not an account', () => {
    const dir = gridmapdir(['atlas001']);
    symlinkSync('/etc/passwd', join(dir, 'atlas000'));
    assert.equal(lease(dir, 'atlas', dnOf(1)), 'atlas001');
  });

  it('a DN too long for a file name is refused with 203', () => {
    const dir = gridmapdir(['atlas001']);
    assert.equal(thrown(() => lease(dir, 'atlas', `/CN=${'x'.repeat(300)}`)).code, 'mapping.dn_too_long');
  });

  it('a pool name that could escape the gridmapdir is refused', () => {
    const dir = gridmapdir(['atlas001']);
    assert.equal(thrown(() => lease(dir, '../atlas', dnOf(1))).code, 'mapping.bad_pool');
  });
});

describe('inconsistent leases (-override_inconsistency)', () => {
  function movedDn(): string {
    const dir = gridmapdir([...range('atlas', 2), ...range('cms', 2)]);
    assert.equal(lease(dir, 'cms', dnOf(1)), 'cms001');
    return dir;
  }

  it('a DN leased in another pool is refused with 203 without the option', () => {
    const dir = movedDn();
    const error = thrown(() => lease(dir, 'atlas', dnOf(1)));
    assert.equal(error.exitCode, 203);
    assert.equal(error.code, 'mapping.pool_inconsistent');
    assert.equal(
      error.message,
      `${dnOf(1)} already holds a lease in gridmapdir ${dir} on 'cms001', which is not an account of pool 'atlas'; -override_inconsistency would re-map it`,
    );
    assert.equal(nlink(join(dir, 'cms001')), 2, 'the old lease stays');
  });

  it('with the option the old lease is dropped and the DN gets an account of its new pool', () => {
    const dir = movedDn();
    assert.equal(lease(dir, 'atlas', dnOf(1), { overrideInconsistency: true }), 'atlas001');
    assert.equal(nlink(join(dir, 'cms001')), 1, 'cms001 is free again');
    assert.ok(sameFile(join(dir, encodeLeaseName(dnOf(1))), join(dir, 'atlas001')));
  });

  it('a lease whose account file is gone (a solitary lease) is removed and leased again, as LCMAPS does', () => {
    const dir = movedDn();
    rmSync(join(dir, 'cms001'));
    assert.equal(lease(dir, 'cms', dnOf(1)), 'cms002');
    assert.equal(statSync(join(dir, encodeLeaseName(dnOf(1)))).ino, statSync(join(dir, 'cms002')).ino);
  });

  it('an account leased to two DNs is a 202 naming both leases', () => {
    const dir = gridmapdir(range('atlas', 2));
    lease(dir, 'atlas', dnOf(1));
    linkSync(join(dir, 'atlas001'), join(dir, encodeLeaseName(dnOf(2))));
    const error = thrown(() => lease(dir, 'atlas', dnOf(1)));
    assert.equal(error.exitCode, 202);
    assert.equal(error.code, 'mapping.pool_shared');
    assert.match(
      error.message,
      new RegExp(
        `account 'atlas001' .* is leased to several DNs \\(${encodeLeaseName(dnOf(1))}, ${encodeLeaseName(dnOf(2))}\\)`,
      ),
    );
  });
});

describe('races, played out step by step', () => {
  /** The real file operations, with a hook that runs right after each successful link. */
  function fsWithHook(afterLink: (existingPath: string, newPath: string) => void): GridmapdirFs {
    return {
      ...gridmapdirLinks,
      link: (existingPath, newPath) => {
        gridmapdirLinks.link(existingPath, newPath);
        afterLink(existingPath, newPath);
      },
    };
  }

  it('when another DN links the same free account before our count check, we give way and take the next', () => {
    const dir = gridmapdir(range('atlas', 2));
    const competitor = join(dir, encodeLeaseName(dnOf(2)));
    let raced = false;
    const fs = fsWithHook((existing) => {
      if (!raced && existing.endsWith('/atlas001')) {
        raced = true;
        linkSync(existing, competitor); // as LCMAPS would: it saw atlas001 free a moment ago
      }
    });
    assert.equal(lease(dir, 'atlas', dnOf(1), { fs }), 'atlas002');
    assert.ok(sameFile(competitor, join(dir, 'atlas001')), "the competitor's lease is untouched");
    assert.equal(nlink(join(dir, 'atlas001')), 2);
    assert.equal(nlink(join(dir, 'atlas002')), 2);
  });

  it('when a concurrent request for the same DN publishes first, we drop our claim and take its lease', () => {
    const dir = gridmapdir(range('atlas', 2));
    const leaseFile = join(dir, encodeLeaseName(dnOf(1)));
    let raced = false;
    const fs = fsWithHook((existing) => {
      if (!raced && existing.endsWith('/atlas001')) {
        raced = true;
        // The other request claimed atlas002 and published while we were claiming atlas001.
        linkSync(join(dir, 'atlas002'), leaseFile);
      }
    });
    assert.equal(lease(dir, 'atlas', dnOf(1), { fs }), 'atlas002');
    assert.equal(nlink(join(dir, 'atlas001')), 1, 'our claim on atlas001 was released');
  });

  it('a solitary lease is moved aside before it is removed, so a lease published meanwhile for the same DN survives', () => {
    const dir = gridmapdir(range('atlas', 2));
    const leaseName = encodeLeaseName(dnOf(1));
    writeFileSync(join(dir, leaseName), '');
    let raced = false;
    const fs: GridmapdirFs = {
      ...gridmapdirLinks,
      rename: (from, to) => {
        if (!raced) {
          // Another request for this DN removes the solitary lease and leases atlas002 first.
          raced = true;
          rmSync(join(dir, leaseName));
          linkSync(join(dir, 'atlas002'), join(dir, leaseName));
        }
        gridmapdirLinks.rename(from, to);
      },
    };
    assert.equal(lease(dir, 'atlas', dnOf(1), { fs }), 'atlas002');
    assert.ok(raced);
    assert.ok(sameFile(join(dir, leaseName), join(dir, 'atlas002')));
    assert.equal(nlink(join(dir, 'atlas001')), 1, 'atlas001 stays free');
    assert.deepEqual(
      readdirSync(dir).filter((name) => name.startsWith('.')),
      [],
      'nothing is left aside',
    );
  });

  it('a link reported as EEXIST though it was made (a retried NFS LINK) still counts as made', () => {
    const dir = gridmapdir(range('atlas', 2));
    const fs: GridmapdirFs = {
      ...gridmapdirLinks,
      link: (existingPath, newPath) => {
        gridmapdirLinks.link(existingPath, newPath);
        throw Object.assign(new Error(`EEXIST: ${newPath}`), { code: 'EEXIST' });
      },
    };
    assert.equal(lease(dir, 'atlas', dnOf(1), { fs }), 'atlas001');
    assert.ok(sameFile(join(dir, encodeLeaseName(dnOf(1))), join(dir, 'atlas001')));
    assert.equal(nlink(join(dir, 'atlas001')), 2, 'the claim is gone');
  });

  it('a claim left by a crashed process keeps its account busy for five minutes, then is cleaned up', () => {
    const dir = gridmapdir(['atlas001']);
    const claimTime = Date.parse('2024-05-01T12:00:00Z');
    linkSync(join(dir, 'atlas001'), join(dir, `.glexec-claim~atlas001~host.4242~${claimTime}~0123456789ab`));
    const error = thrown(() => lease(dir, 'atlas', dnOf(1), { now: () => claimTime + 60_000 }));
    assert.equal(error.code, 'mapping.pool_full');
    assert.equal(lease(dir, 'atlas', dnOf(1), { now: () => claimTime + 5 * 60_000 }), 'atlas001');
    assert.deepEqual(readdirSync(dir).sort(), [encodeLeaseName(dnOf(1)), 'atlas001'].sort());
  });
});

describe(
  'a gridmapdir that is not root-only',
  { skip: isRoot ? false : 'needs root: the gridmapdir must be root-owned' },
  () => {
    it('is refused with 202 when group-writable', () => {
      const dir = gridmapdir(['atlas001']);
      chmodSync(dir, 0o775);
      const error = thrown(() => leasePoolAccount(dir, 'atlas', dnOf(1)));
      assert.equal(error.exitCode, 202);
      assert.equal(error.code, 'mapping.gridmapdir_untrusted');
      assert.match(error.message, /gridmapdir .* is not trusted: .* is writable by group gid 0/);
    });

    it('is refused with 202 when owned by another user', () => {
      const dir = gridmapdir(['atlas001']);
      chownSync(dir, 1, 1);
      assert.match(thrown(() => leasePoolAccount(dir, 'atlas', dnOf(1))).message, /is owned by uid 1, not by root/);
    });

    it('is accepted with the real check when root-owned and 0755', () => {
      assert.equal(leasePoolAccount(gridmapdir(['atlas001']), 'atlas', dnOf(1)), 'atlas001');
    });
  },
);

/** Forks one child per DN, lets them all lease at once, and returns their reports in DN order. */
async function leaseConcurrently(dir: string, pool: string, dns: readonly string[]): Promise<LeaseReport[]> {
  const childPath = join(__dirname, 'pool-lease-child.js');
  const children = dns.map((dn) => {
    const child = fork(childPath, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const ready = new Promise<void>((resolve) => child.once('message', () => resolve()));
    const report = new Promise<LeaseReport>((resolve, reject) => {
      child.on('message', (message: LeaseReport | 'ready') => {
        if (message !== 'ready') resolve(message);
      });
      // 'close' comes after every IPC message was emitted; 'exit' may overtake the last one.
      child.once('close', (code) => reject(new Error(`lease child for ${dn} exited with ${code} before reporting`)));
    });
    const request: LeaseRequest = { gridmapdir: dir, pool, dn, checkTrust: isRoot };
    child.send(request);
    return { child, ready, report };
  });
  await Promise.all(children.map((entry) => entry.ready));
  for (const entry of children) entry.child.send('go');
  return Promise.all(children.map((entry) => entry.report));
}

const accountsOf = (reports: readonly LeaseReport[]): string[] =>
  reports.flatMap((report) => ('account' in report ? [report.account] : []));

describe('leasing from 64 processes at once', () => {
  it('64 DNs on a pool of 64 get 64 different accounts, each linked once', async () => {
    const dir = gridmapdir(range('atlas', 64));
    const dns = Array.from({ length: 64 }, (_, index) => dnOf(index));
    const reports = await leaseConcurrently(dir, 'atlas', dns);
    assert.deepEqual(
      reports.filter((report) => !('account' in report)),
      [],
    );
    assert.deepEqual(accountsOf(reports).sort(), range('atlas', 64));
    reports.forEach((report, index) => {
      assert.ok(
        'account' in report && sameFile(join(dir, encodeLeaseName(dnOf(index))), join(dir, report.account)),
        `lease of ${dnOf(index)}`,
      );
    });
    for (const account of range('atlas', 64)) assert.equal(nlink(join(dir, account)), 2, account);
    assert.equal(readdirSync(dir).filter((name) => name.startsWith('.')).length, 0, 'no claims are left behind');
  });

  it('64 DNs on a pool of 70 get 64 different accounts and leave 6 free', async () => {
    const dir = gridmapdir(range('atlas', 70));
    const reports = await leaseConcurrently(
      dir,
      'atlas',
      Array.from({ length: 64 }, (_, index) => dnOf(index)),
    );
    const accounts = accountsOf(reports);
    assert.equal(accounts.length, 64);
    assert.equal(new Set(accounts).size, 64);
    assert.equal(range('atlas', 70).filter((account) => nlink(join(dir, account)) === 1).length, 6);
  });

  it('16 processes leasing for the same DN all get the same account, leased once', async () => {
    const dir = gridmapdir(range('atlas', 20));
    const reports = await leaseConcurrently(
      dir,
      'atlas',
      Array.from({ length: 16 }, () => dnOf(1)),
    );
    const accounts = accountsOf(reports);
    assert.equal(accounts.length, 16);
    assert.equal(new Set(accounts).size, 1);
    assert.equal(range('atlas', 20).filter((account) => nlink(join(dir, account)) === 2).length, 1);
  });

  it('11 DNs at once on a pool of 10: ten different accounts, and one 203 pool_full', async () => {
    const dir = gridmapdir(range('atlas', 10));
    const reports = await leaseConcurrently(
      dir,
      'atlas',
      Array.from({ length: 11 }, (_, index) => dnOf(index)),
    );
    const accounts = accountsOf(reports);
    assert.equal(new Set(accounts).size, 10);
    assert.equal(accounts.length, 10);
    const refused = reports.filter(
      (report): report is Exclude<LeaseReport, { account: string }> => !('account' in report),
    );
    assert.deepEqual(
      refused.map((report) => [report.exitCode, report.code]),
      [[203, 'mapping.pool_full']],
    );
  });
});
