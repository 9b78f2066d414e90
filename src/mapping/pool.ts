/**
 * Pool-account leases in a gridmapdir, compatible with LCMAPS's lcmaps_poolaccount.mod.
 *
 * The gridmapdir (e.g. /etc/grid-security/gridmapdir) holds one empty root-owned file per pool
 * account (`atlas001`, `atlas002`, …). A DN's lease is a hard link to one of them, named after
 * the DN lower-cased and URL-encoded (`%2fc%3dnl%2fo%3dexample%2fcn%3djane%20doe`); an account
 * whose file has a link count of 1 is free. A returning DN finds its link and gets the same
 * account back. Nothing else records a lease, so LCMAPS and glexec can share one gridmapdir.
 *
 * Leasing a free account without a lock (claimAndPublish says why this is race-free):
 *  1. claim it: hard-link the account file to a private name `.glexec-claim~<account>~…`;
 *  2. keep the claim only if the file's link count is then exactly 2 (the account file and this
 *     claim); otherwise another process linked it too: drop the claim and try the next account;
 *  3. publish: hard-link the claim to the DN's lease name (EEXIST: a concurrent request for the
 *     same DN won, so drop the claim and take its lease instead);
 *  4. remove the claim.
 * Steps 1-2 are the link-then-count pattern open(2) recommends where O_EXCL cannot be trusted
 * (NFS). LCMAPS's gridmapdir code links the lease name itself and backs off when the count then
 * exceeds 2, which can briefly show a lease that is then withdrawn; the private claim name means
 * that a lease glexec publishes is final.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { authorizationError, systemError } from '../errors';
import { type EntryStatus, type GridmapdirFs, gridmapdirLinks, lstatPath } from '../sys/files';
import { requireTrustedPath } from '../trust';

export interface LeaseOptions {
  /**
   * LCMAPS's -override_inconsistency: when the DN already holds a lease on an account that is
   * not in this pool (the grid-mapfile moved the DN to another pool), drop that lease and lease
   * from this pool. Without it such a DN is refused.
   */
  readonly overrideInconsistency?: boolean;
  /**
   * LCMAPS's -strict_poolprefix_match: pool `atlas` is the accounts `atlas` + digits (default,
   * so `atlasprd001` is not in pool `atlas`); false gives the legacy `atlas` + anything.
   */
  readonly strictPrefixMatch?: boolean;
  /** Throws a 202 unless only root can change the gridmapdir; replaced in unit tests run without root. */
  readonly checkGridmapdir?: (gridmapdir: string) => void;
  readonly fs?: GridmapdirFs;
  /** Appended to the DN's lease name: lcmaps_voms_poolaccount's `:group` names. */
  readonly leaseSuffix?: string;
  /** Milliseconds since the epoch, for claim names and their expiry. */
  readonly now?: () => number;
}

const CLAIM_PREFIX = '.glexec-claim~';
/** A claim lives for microseconds; one this old belongs to a process that died holding it. */
const STALE_CLAIM_MS = 5 * 60 * 1000;
/** Passes over the pool before giving up when every free account was taken under our feet. */
const MAX_PASSES = 64;
/**
 * Passes in a row that must find no free account before the pool is called full: another
 * request's claim makes a free account look taken for an instant, and it may give the claim up.
 */
const FULL_PASSES = 3;
/** How often a lease that looks shared with another DN is looked at again before it is refused. */
const SHARED_LEASE_RECHECKS = 5;
const NAME_MAX = 255;

/**
 * The lease name LCMAPS uses for a DN: every byte that is not an ASCII letter or digit becomes
 * `%xx` (lower-case hex), letters are lower-cased. Non-ASCII text is encoded as its UTF-8 bytes.
 */
export function encodeLeaseName(dn: string): string {
  let name = '';
  for (const byte of Buffer.from(dn, 'utf8')) {
    const char = String.fromCharCode(byte);
    name += /[A-Za-z0-9]/.test(char) ? char.toLowerCase() : `%${byte.toString(16).padStart(2, '0')}`;
  }
  return name;
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error
    ? String((error as { code: unknown }).code)
    : undefined;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function defaultCheckGridmapdir(gridmapdir: string): void {
  requireTrustedPath(
    'gridmapdir',
    gridmapdir,
    { trustedUids: [], trustedGids: [], finalType: 'directory' },
    lstatPath,
    'mapping.gridmapdir_untrusted',
  );
}

// Made at the first pool lookup, not at load: building a collator costs 11-13 ms, on every run otherwise.
let accountNameCollator: Intl.Collator | undefined;
const byAccountName = (a: string, b: string): number =>
  (accountNameCollator ??= new Intl.Collator('en', { numeric: true })).compare(a, b);

class Gridmapdir {
  private readonly accountPattern: RegExp;

  constructor(
    readonly dir: string,
    readonly pool: string,
    readonly fs: GridmapdirFs,
    strict: boolean,
    readonly now: () => number,
  ) {
    this.accountPattern = new RegExp(`^${escapeRegExp(pool)}${strict ? '[0-9]+' : '.*'}$`);
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  status(name: string): EntryStatus | undefined {
    try {
      return this.fs.lstat(this.path(name));
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw systemError(
        'mapping.gridmapdir_unreadable',
        `cannot examine ${this.path(name)}: ${errnoCode(error) ?? String(error)}`,
      );
    }
  }

  names(): string[] {
    try {
      return this.fs.readdir(this.dir);
    } catch (error) {
      throw systemError(
        'mapping.gridmapdir_unreadable',
        `cannot list gridmapdir ${this.dir}: ${errnoCode(error) ?? String(error)}`,
      );
    }
  }

  isAccount(name: string): boolean {
    // Lease names start with '%' and claims with '.'; LCMAPS also skips names with '~'.
    return !name.startsWith('%') && !name.startsWith('.') && !name.includes('~') && this.accountPattern.test(name);
  }

  /** Account names of the pool, sorted: the lowest free one is leased first. */
  accounts(names: readonly string[]): string[] {
    return names.filter((name) => this.isAccount(name)).sort(byAccountName);
  }

  /** Removes claims left by processes that died between claiming and publishing. */
  removeStaleClaims(names: readonly string[]): void {
    for (const name of names) {
      if (!name.startsWith(CLAIM_PREFIX)) continue;
      const madeAt = Number(name.split('~')[3]);
      if (!Number.isFinite(madeAt) || this.now() - madeAt < STALE_CLAIM_MS) continue;
      // Safe even if the owner still lives: its publish step links from the claim and fails.
      this.tryUnlink(name);
    }
  }

  tryUnlink(name: string): void {
    try {
      this.fs.unlink(this.path(name));
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT')
        throw systemError(
          'mapping.gridmapdir_unwritable',
          `cannot remove ${this.path(name)}: ${errnoCode(error) ?? String(error)}`,
        );
    }
  }

  /** Whether `name` is another name of the lease's inode. */
  sharesInode(name: string, lease: EntryStatus, leaseName: string): boolean {
    const st = name === leaseName ? undefined : this.status(name);
    return st !== undefined && st.ino === lease.ino && st.dev === lease.dev;
  }
}

type ClaimOutcome = { kind: 'leased' } | { kind: 'taken' } | { kind: 'dn_leased_meanwhile' };

/**
 * link(2) that tells 'exists' from a link that was made: over NFS a retried LINK can report
 * EEXIST for its own success, so on EEXIST the two names' inodes decide.
 */
function linkOnce(gmd: Gridmapdir, existingName: string, newName: string): 'linked' | 'exists' | 'gone' {
  try {
    gmd.fs.link(gmd.path(existingName), gmd.path(newName));
    return 'linked';
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOENT') return 'gone';
    if (code === 'EEXIST') {
      const [from, to] = [gmd.status(existingName), gmd.status(newName)];
      return from !== undefined && to !== undefined && from.ino === to.ino && from.dev === to.dev ? 'linked' : 'exists';
    }
    if (code === 'ENAMETOOLONG')
      throw authorizationError('mapping.dn_too_long', `the DN's lease name is too long for gridmapdir ${gmd.dir}`);
    throw systemError(
      'mapping.gridmapdir_unwritable',
      `cannot link ${gmd.path(existingName)} to ${gmd.path(newName)}: ${code ?? String(error)}`,
    );
  }
}

/**
 * Tries to lease `account` to the lease name. The link count check is what makes it exclusive:
 * a process keeps its claim only if, after its own link, the count is 2. If two processes both
 * linked the account, the later link makes the count 3 before that process looks, so at most the
 * earlier one keeps it (both may give up, which only costs a retry). A kept claim is never
 * withdrawn, so the lease that is then published is final.
 */
function claimAndPublish(gmd: Gridmapdir, account: string, leaseName: string): ClaimOutcome {
  const claim = `${CLAIM_PREFIX}${account}~${hostname()}.${process.pid}~${gmd.now()}~${randomBytes(6).toString('hex')}`;
  const claimed = linkOnce(gmd, account, claim);
  if (claimed === 'gone') return { kind: 'taken' };
  if (claimed === 'exists')
    throw systemError('mapping.gridmapdir_unwritable', `claim name ${gmd.path(claim)} exists already`);
  try {
    const st = gmd.status(claim);
    if (st === undefined || st.nlink !== 2) return { kind: 'taken' };
    switch (linkOnce(gmd, claim, leaseName)) {
      case 'linked':
        return { kind: 'leased' };
      case 'exists':
        return { kind: 'dn_leased_meanwhile' };
      case 'gone':
        // Our claim was removed as stale (we were stopped for minutes): someone may own it now.
        return { kind: 'taken' };
    }
  } finally {
    gmd.tryUnlink(claim);
  }
}

/**
 * Removes a solitary lease without ever removing a lease another request has just published
 * under the same name: the name is first renamed aside (atomic), and what was moved is removed
 * only if it is the solitary file seen before, still alone; anything else is put back.
 */
function removeSolitaryLease(gmd: Gridmapdir, leaseName: string, seen: EntryStatus): void {
  const aside = `${CLAIM_PREFIX}solitary~${hostname()}.${process.pid}~${gmd.now()}~${randomBytes(6).toString('hex')}`;
  try {
    gmd.fs.rename(gmd.path(leaseName), gmd.path(aside));
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw systemError(
      'mapping.gridmapdir_unwritable',
      `cannot move solitary lease ${gmd.path(leaseName)} aside: ${errnoCode(error) ?? String(error)}`,
    );
  }
  const moved = gmd.status(aside);
  if (moved !== undefined && !(moved.ino === seen.ino && moved.dev === seen.dev && moved.nlink === 1)) {
    // A concurrent request for this DN published a fresh lease in between: give it its name back.
    // Only if yet another request published a lease in the instant between would that link fail
    // and the account moved aside fall free; LCMAPS's unlink has that window on every pass.
    linkOnce(gmd, aside, leaseName);
  }
  gmd.tryUnlink(aside);
}

type ExistingLease = { kind: 'none' } | { kind: 'account'; account: string };

/** The DN's current lease in this pool, if any; an inconsistent one is refused or dropped. */
function existingLease(gmd: Gridmapdir, leaseName: string, dn: string, overrideInconsistency: boolean): ExistingLease {
  for (let recheck = 0; ; recheck++) {
    const lease = gmd.status(leaseName);
    if (lease === undefined) return { kind: 'none' };
    if (!lease.isFile)
      throw systemError(
        'mapping.lease_not_file',
        `lease ${gmd.path(leaseName)} is not a regular file; the gridmapdir needs repair`,
      );
    if (lease.nlink === 1) {
      // A solitary lease (its account file was removed): LCMAPS removes it and leases anew,
      // with or without -override_inconsistency.
      removeSolitaryLease(gmd, leaseName, lease);
      continue;
    }
    const names = lease.nlink > 1 ? gmd.names() : [];
    const shares = (name: string): boolean => gmd.sharesInode(name, lease, leaseName);
    const account = gmd.accounts(names).find(shares);
    if (account === undefined) {
      const other = names.find((name) => !name.startsWith('%') && !name.startsWith(CLAIM_PREFIX) && shares(name));
      const where =
        other === undefined
          ? 'no account (its account file is gone)'
          : `'${other}', which is not an account of pool '${gmd.pool}'`;
      if (!overrideInconsistency) {
        throw authorizationError(
          'mapping.pool_inconsistent',
          `${dn} already holds a lease in gridmapdir ${gmd.dir} on ${where}; -override_inconsistency would re-map it`,
        );
      }
      gmd.tryUnlink(leaseName);
      return { kind: 'none' };
    }
    if (lease.nlink === 2) return { kind: 'account', account };
    // A count above 2 is normal for an instant (a claim, or LCMAPS linking and backing off), so
    // look again; a second lease name that stays is a double lease, which only an admin can fix.
    if (recheck >= SHARED_LEASE_RECHECKS) {
      const otherLeases = names.filter((name) => name.startsWith('%') && shares(name));
      if (otherLeases.length === 0) return { kind: 'account', account };
      throw systemError(
        'mapping.pool_shared',
        `account '${account}' in gridmapdir ${gmd.dir} is leased to several DNs (${[leaseName, ...otherLeases].join(', ')}); the gridmapdir needs repair`,
      );
    }
    sleepMs(2 * (recheck + 1));
  }
}

/**
 * Leases an account of pool `poolPrefix` (`atlas` or `.atlas` for accounts atlas001…) in
 * `gridmapdir` to `dn` and returns the account name; a DN that already has a lease gets the same
 * account. Safe for any number of concurrent glexec (and LCMAPS) processes without locks (see
 * claimAndPublish).
 *
 * 202: gridmapdir not trusted or unusable, pool has no accounts, a double lease.
 * 203: the pool is full, the DN's lease is inconsistent (see overrideInconsistency), the DN is
 * too long for a file name.
 */
export function leasePoolAccount(
  gridmapdir: string,
  poolPrefix: string,
  dn: string,
  options: LeaseOptions = {},
): string {
  const pool = poolPrefix.startsWith('.') ? poolPrefix.slice(1) : poolPrefix;
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(pool))
    throw systemError('mapping.bad_pool', `'${poolPrefix}' is not a usable pool name`);
  (options.checkGridmapdir ?? defaultCheckGridmapdir)(gridmapdir);
  const gmd = new Gridmapdir(
    gridmapdir,
    pool,
    options.fs ?? gridmapdirLinks,
    options.strictPrefixMatch ?? true,
    options.now ?? Date.now,
  );
  const leaseName = encodeLeaseName(dn) + (options.leaseSuffix ?? '');
  if (Buffer.byteLength(leaseName) > NAME_MAX) {
    throw authorizationError(
      'mapping.dn_too_long',
      `the DN's lease name is ${Buffer.byteLength(leaseName)} bytes, more than a file name may have (${NAME_MAX})`,
    );
  }

  let passesWithoutFree = 0;
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const existing = existingLease(gmd, leaseName, dn, options.overrideInconsistency ?? false);
    if (existing.kind === 'account') return existing.account;

    const names = gmd.names();
    gmd.removeStaleClaims(names);
    const accounts = gmd.accounts(names);
    if (accounts.length === 0)
      throw systemError('mapping.pool_empty', `pool '${pool}' has no accounts in gridmapdir ${gridmapdir}`);
    // After a lost race, start at a random account so that the racers spread out.
    const start = pass === 0 ? 0 : Math.floor(Math.random() * accounts.length);
    let sawFree = false;
    let dnLeasedMeanwhile = false;
    for (let offset = 0; offset < accounts.length && !dnLeasedMeanwhile; offset++) {
      const account = accounts[(start + offset) % accounts.length] ?? '';
      const st = gmd.status(account);
      if (st === undefined || !st.isFile || st.nlink !== 1) continue;
      sawFree = true;
      const outcome = claimAndPublish(gmd, account, leaseName);
      if (outcome.kind === 'leased') return account;
      dnLeasedMeanwhile = outcome.kind === 'dn_leased_meanwhile';
    }
    if (dnLeasedMeanwhile) continue;
    passesWithoutFree = sawFree ? 0 : passesWithoutFree + 1;
    if (passesWithoutFree >= FULL_PASSES) {
      throw authorizationError(
        'mapping.pool_full',
        `pool '${pool}' is full: all ${accounts.length} accounts in gridmapdir ${gridmapdir} are leased`,
      );
    }
    sleepMs(1 + Math.floor(Math.random() * 5 * (pass + 1)));
  }
  throw authorizationError(
    'mapping.pool_busy',
    `could not lease an account of pool '${pool}' in gridmapdir ${gridmapdir}: every free account was taken by another request ${MAX_PASSES} times`,
  );
}
