/** Runs the root-only lcmaps-helper (shim/lcmaps-helper.c), which runs the real LCMAPS library. */
import { join } from 'node:path';
import { installedPath } from '../installed';
import { childProcess } from './proc';

/** Installed next to glexec.js, root-only (0700). */
export function lcmapsHelper(): string {
  return installedPath('lcmaps-helper', () => join(__dirname, '../../../build/lcmaps-helper'));
}

export interface HelperResult {
  readonly status: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Set when the helper could not be started at all. */
  readonly errorCode?: string;
}

/** The helper with exactly `env` (nothing inherited) and the proxy on its standard input. */
export function runLcmapsHelper(args: readonly string[], input: Buffer, env: Record<string, string>): HelperResult {
  const result = childProcess().spawnSync(lcmapsHelper(), args, {
    input,
    env,
    encoding: 'utf8',
    maxBuffer: 16 * 1024 * 1024,
  });
  const errorCode =
    result.error === undefined ? undefined : ((result.error as { code?: string }).code ?? result.error.message);
  return {
    status: result.status,
    signal: result.signal,
    stdout: result.stdout ?? '',
    stderr: result.stderr ?? '',
    ...(errorCode === undefined ? {} : { errorCode }),
  };
}
