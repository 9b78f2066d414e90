/** glexec's own resource limits (getrlimit through the posix addon). */
import type { LiftedResource, Limit } from '../limits';
import { posix } from './posix';

export function ownLimit(resource: LiftedResource): Limit {
  const { soft, hard } = posix().getrlimit(resource);
  return { soft: soft ?? 'unlimited', hard: hard ?? 'unlimited' };
}
