/**
 * The grid-mapfile, read as LCMAPS reads it: `"DN" account[,account…]` lines (an unquoted DN may
 * not contain spaces), `#` starts a comment anywhere outside the quotes. Backslashes are kept as
 * written: a DN in a grid-mapfile is OpenSSL's oneline text, whose `\/` and `\xC3` are part of
 * the name (LCMAPS compares the text, so `"…/CN=host\/node…"` matches a CN holding a slash).
 * Only spaces and tabs separate fields; a carriage return stays part of the account name, as
 * it does in LCMAPS. The first account listed is the mapping; `.name` is a pool.
 */
import { authorizationError, systemError } from '../errors';
import { readTrustedFile } from '../sys/files';

const MAX_GRIDMAP_BYTES = 64 * 1024 * 1024;

export interface GridMapEntry {
  readonly dn: string;
  readonly accounts: readonly string[];
  readonly line: number;
  /** Whether the DN was written in double quotes. */
  readonly quoted: boolean;
}

const trimBlanks = (text: string): string => text.replace(/^[ \t]+|[ \t]+$/g, '');

/**
 * Parses one line; undefined for blanks and comments. Throws a message for a malformed line.
 * `accountRequired: false` is for ban lists, whose lines may hold only a DN.
 */
export function parseGridMapLine(
  text: string,
  options: { accountRequired?: boolean } = {},
): { dn: string; accounts: string[]; quoted: boolean } | undefined {
  const line = trimBlanks(text);
  if (line === '' || line.startsWith('#')) return undefined;
  let dn: string;
  let rest: string;
  if (line.startsWith('"')) {
    const close = line.indexOf('"', 1);
    if (close < 0) throw new Error('the quoted DN has no closing quote');
    dn = line.slice(1, close);
    rest = line.slice(close + 1);
  } else {
    const blank = line.search(/[ \t#]/);
    dn = blank < 0 ? line : line.slice(0, blank);
    rest = blank < 0 ? '' : line.slice(blank);
  }
  const comment = rest.indexOf('#');
  const accounts = (comment < 0 ? rest : rest.slice(0, comment))
    .split(',')
    .map(trimBlanks)
    .filter((account) => account !== '');
  if (accounts.length === 0 && options.accountRequired !== false) throw new Error('no account after the DN');
  return { dn, accounts, quoted: line.startsWith('"') };
}

export function parseGridMap(text: string, path: string, options: { accountRequired?: boolean } = {}): GridMapEntry[] {
  const entries: GridMapEntry[] = [];
  text.split('\n').forEach((lineText, index) => {
    try {
      const parsed = parseGridMapLine(lineText, options);
      if (parsed) entries.push({ ...parsed, line: index + 1 });
    } catch (error) {
      throw systemError('gridmap.syntax', `${path} line ${index + 1}: ${(error as Error).message}`);
    }
  });
  return entries;
}

export function readGridMap(path: string, options: { accountRequired?: boolean } = {}): GridMapEntry[] {
  const policy = { trustedUids: [], trustedGids: [], finalType: 'file' } as const;
  const file = {
    what: 'grid-mapfile',
    policy,
    maxBytes: MAX_GRIDMAP_BYTES,
    untrustedCode: 'gridmap.untrusted',
    unreadableCode: 'gridmap.unreadable',
  };
  return parseGridMap(readTrustedFile(path, file).toString('latin1'), path, options);
}

/**
 * Whether a grid-mapfile DN matches the proxy's DN: the same text, or, with wildcards allowed,
 * a pattern whose `*` stands for any text (LCMAPS's poolaccount and
 * ban_dn unless -no_wildcard; localaccount matches exactly).
 */
export function gridMapDnMatches(pattern: string, dn: string, wildcards: boolean): boolean {
  if (pattern === dn) return true;
  if (!wildcards || !pattern.includes('*')) return false;
  const expression = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*');
  return new RegExp(`^${expression}$`).test(dn);
}

/** The first line, in file order, whose DN matches. */
export function findGridMapEntry(
  entries: readonly GridMapEntry[],
  dn: string,
  wildcards: boolean,
): GridMapEntry | undefined {
  return entries.find((entry) => gridMapDnMatches(entry.dn, dn, wildcards));
}

/**
 * An unquoted DN ends at the first blank, as LCMAPS reads it, so `/C=NL/CN=Jane Doe jane` maps
 * `/C=NL/CN=Jane` to an "account" with a blank in it: the common mistake of a DN without quotes.
 * The message for such a line, or undefined.
 */
export function unquotedDnMistake(entry: GridMapEntry, path: string): string | undefined {
  if (entry.quoted || !/[ \t]/.test(entry.accounts[0] ?? '')) return undefined;
  return `${path} line ${entry.line}: the DN must be in double quotes (unquoted, it ends at the first blank: "${entry.dn}")`;
}

/** The account a DN maps to, by exact DN match. */
export function mapDn(entries: readonly GridMapEntry[], dn: string, path: string): string {
  const entry = entries.find((candidate) => candidate.dn === dn);
  if (entry === undefined) {
    // The line the site meant for this DN, written without quotes, is a 202 that says so.
    const meant = entries.find(
      (candidate) =>
        unquotedDnMistake(candidate, path) !== undefined &&
        `${candidate.dn} ${candidate.accounts[0] ?? ''}`.startsWith(`${dn} `),
    );
    if (meant !== undefined) throw systemError('gridmap.unquoted_dn', unquotedDnMistake(meant, path) ?? '');
    throw authorizationError('mapping.no_entry', `${dn} has no entry in grid-mapfile ${path}`);
  }
  const mistake = unquotedDnMistake(entry, path);
  if (mistake !== undefined) throw systemError('gridmap.unquoted_dn', mistake);
  const account = entry.accounts[0] ?? '';
  if (account.startsWith('.')) {
    throw systemError(
      'mapping.pool_unsupported',
      `${path} line ${entry.line} maps to pool '${account}': pool accounts need lcmaps_db_file with lcmaps_poolaccount.mod (see the README's LCMAPS section)`,
    );
  }
  return account;
}
