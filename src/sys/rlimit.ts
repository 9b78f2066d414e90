/** glexec's own resource limits (getrlimit through the posix addon). */
import { posix } from './posix';

export type LimitValue = number | 'unlimited';
export interface Limit {
  readonly soft: LimitValue;
  readonly hard: LimitValue;
}

export const LIFTED_RESOURCES = ['cpu', 'fsize', 'as', 'data', 'nofile', 'core', 'stack'] as const;
export type LiftedResource = (typeof LIFTED_RESOURCES)[number];

export function ownLimit(resource: LiftedResource): Limit {
  const { soft, hard } = posix().getrlimit(resource);
  return { soft: soft ?? 'unlimited', hard: hard ?? 'unlimited' };
}
