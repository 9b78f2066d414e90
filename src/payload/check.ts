/**
 * Before spawning: the payload path must be absolute and exist (else 201), and the target must
 * be able to execute it by its mode bits (else 126). The kernel has the last word at exec time;
 * an exec failure there also ends as 126.
 */
import { S_IXGRP, S_IXOTH, S_IXUSR } from '../mode-bits';
import { ExitCode, GlexecError, clientError } from '../errors';
import { type Stats, lstatPath, statFollowing } from '../sys/files';
import type { Target } from '../target';

export function mayExecute(st: Stats, target: Pick<Target, 'uid' | 'groups' | 'gid'>): boolean {
  if (st.uid === target.uid) return (st.mode & S_IXUSR) !== 0;
  if (st.gid === target.gid || target.groups.some((gid) => gid === st.gid)) return (st.mode & S_IXGRP) !== 0;
  return (st.mode & S_IXOTH) !== 0;
}

export function checkPayload(path: string, target: Target, prohibitSymlink: boolean): void {
  if (!path.startsWith('/')) throw clientError('payload.relative', `payload must be an absolute path, got '${path}'`);
  let st: Stats;
  try {
    st = statFollowing(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw clientError('payload.missing', `payload ${path} does not exist`);
    throw new GlexecError(
      ExitCode.cannotExecute,
      'payload.unreachable',
      `payload ${path} cannot be reached (${code ?? 'error'})`,
    );
  }
  if (prohibitSymlink && lstatPath(path).isSymbolicLink()) {
    throw clientError('payload.symlink', `payload ${path} is a symbolic link and prohibit_exec_via_symlink is set`);
  }
  if (!st.isFile())
    throw new GlexecError(ExitCode.cannotExecute, 'payload.not_a_file', `payload ${path} is not a regular file`);
  if (!mayExecute(st, target)) {
    throw new GlexecError(
      ExitCode.cannotExecute,
      'payload.not_executable',
      `payload ${path} is not executable by ${target.name}`,
    );
  }
}
