/**
 * What the LCMAPS oracles (test/e2e/lcmaps-oracle.test.ts, voms-oracle.test.ts) compare: the
 * account and groups a mapping gave, or the refusal, with the leases left in the gridmapdir.
 */
import assert from 'node:assert/strict';
import { readdirSync, lstatSync } from 'node:fs';
import { join } from 'node:path';

export interface Mapping {
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
}

export type Outcome =
  | { readonly mapped: Mapping; readonly gridmapdir: string[] }
  | { readonly refused: number; readonly gridmapdir: string[]; readonly detail: string };

interface Finished {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const sortedGroups = (gid: number, others: readonly number[]): number[] =>
  [...new Set([gid, ...others])].sort((a, b) => a - b);

/** `lease -> account` for each lease in `directory`; `lease -> (alone)` for a solitary one. */
export function leasesIn(directory: string): string[] {
  const names = readdirSync(directory);
  const inodes = new Map(names.map((name) => [name, lstatSync(join(directory, name)).ino]));
  return names
    .filter((name) => name.startsWith('%'))
    .map(
      (lease) =>
        `${lease} -> ${names.find((name) => !name.startsWith('%') && inodes.get(name) === inodes.get(lease)) ?? '(alone)'}`,
    )
    .sort();
}

/** What the real LCMAPS did, from lcmaps-helper's exit code and its `uid`/`pgids`/`sgids` lines. */
export function lcmapsHelperOutcome(result: Finished, gridmapdir: string[]): Outcome {
  // 1: LCMAPS ran and did not map (203); 2: LCMAPS would not start, e.g. a bad lcmaps.db (202).
  if (result.status === 1 || result.status === 2)
    return { refused: result.status === 1 ? 203 : 202, gridmapdir, detail: result.stderr };
  assert.equal(result.status, 0, `lcmaps-helper: ${result.stderr}`);
  const field = (name: string): number[] =>
    (new RegExp(`^${name}(.*)$`, 'm').exec(result.stdout)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number);
  const gid = field('pgids')[0] ?? -1;
  return { mapped: { uid: field('uid')[0] ?? -1, gid, groups: sortedGroups(gid, field('sgids')) }, gridmapdir };
}

/** What glexec did, from a run of `/usr/bin/id` as the payload (a refusal is one line on stderr). */
export function idPayloadOutcome(result: Finished, gridmapdir: string[]): Outcome {
  if (result.status !== 0) {
    assert.equal(result.stderr.split('\n').length, 2, `one line: ${result.stderr}`);
    return { refused: result.status ?? -1, gridmapdir, detail: result.stderr };
  }
  const match = /^uid=(\d+)\(.*?\) gid=(\d+)\(.*?\) groups=(.*)$/m.exec(result.stdout);
  assert.ok(match, result.stdout);
  const groups = (match[3] ?? '').split(',').map((group) => Number(/^\d+/.exec(group)?.[0]));
  return {
    mapped: { uid: Number(match[1]), gid: Number(match[2]), groups: [...new Set(groups)].sort((a, b) => a - b) },
    gridmapdir,
  };
}

/** The oracle's outcome as glexec's must be: refusals' wording is each program's own. */
export const expectedFrom = (oracle: Outcome, glexec: Outcome): Outcome =>
  'detail' in oracle && 'detail' in glexec ? { ...oracle, detail: glexec.detail } : oracle;
