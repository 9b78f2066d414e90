/**
 * The grid-mapfile: `"DN" account[,account…]` lines (an unquoted DN may not contain spaces),
 * `#` comments. The first account listed is the mapping. Pool accounts (`.name`) need the
 * gridmapdir lease support of a later change and are refused with a 202 for now.
 */
import { lstatSync } from 'node:fs';
import { authorizationError, systemError } from '../errors';
import { readCheckedFile } from '../sys/files';
import { requireTrustedPath } from '../trust';

const MAX_GRIDMAP_BYTES = 64 * 1024 * 1024;

export interface GridMapEntry {
  readonly dn: string;
  readonly accounts: readonly string[];
  readonly line: number;
}

/** Parses one line; undefined for blanks and comments. Throws a message for a malformed line. */
export function parseGridMapLine(text: string): { dn: string; accounts: string[] } | undefined {
  const line = text.trim();
  if (line === '' || line.startsWith('#')) return undefined;
  let dn: string;
  let rest: string;
  if (line.startsWith('"')) {
    let index = 1;
    dn = '';
    for (; index < line.length && line[index] !== '"'; index++) {
      // A backslash escapes the next character inside the quotes.
      if (line[index] === '\\' && index + 1 < line.length) index++;
      dn += line[index];
    }
    if (index >= line.length) throw new Error('the quoted DN has no closing quote');
    rest = line.slice(index + 1);
  } else {
    const space = line.search(/\s/);
    if (space < 0) throw new Error('no account after the DN');
    dn = line.slice(0, space);
    rest = line.slice(space);
  }
  const accounts = rest
    .trim()
    .split(',')
    .map((account) => account.trim())
    .filter((account) => account !== '');
  if (accounts.length === 0) throw new Error('no account after the DN');
  return { dn, accounts };
}

export function parseGridMap(text: string, path: string): GridMapEntry[] {
  const entries: GridMapEntry[] = [];
  text.split(/\r?\n/).forEach((lineText, index) => {
    try {
      const parsed = parseGridMapLine(lineText);
      if (parsed) entries.push({ ...parsed, line: index + 1 });
    } catch (error) {
      throw systemError('gridmap.syntax', `${path} line ${index + 1}: ${(error as Error).message}`);
    }
  });
  return entries;
}

export function readGridMap(path: string): GridMapEntry[] {
  const checked = requireTrustedPath('grid-mapfile', path, { trustedUids: [], trustedGids: [], finalType: 'file' }, lstatSync, 'gridmap.untrusted');
  let text: string;
  try {
    text = readCheckedFile(path, checked, MAX_GRIDMAP_BYTES).toString('latin1');
  } catch (error) {
    throw systemError('gridmap.unreadable', `cannot read grid-mapfile ${path}: ${(error as Error).message}`);
  }
  return parseGridMap(text, path);
}

/** The account a DN maps to, by exact DN match. */
export function mapDn(entries: readonly GridMapEntry[], dn: string, path: string): string {
  const entry = entries.find((candidate) => candidate.dn === dn);
  if (entry === undefined) throw authorizationError('mapping.no_entry', `${dn} has no entry in grid-mapfile ${path}`);
  const account = entry.accounts[0] ?? '';
  if (account.startsWith('.')) {
    throw systemError('mapping.pool_unsupported', `${path} line ${entry.line} maps to pool '${account}', and pool accounts are not supported yet`);
  }
  return account;
}
