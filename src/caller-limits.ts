/**
 * The caller's resource limits. The shim lifted cpu, fsize, as, data, nofile and stack for glexec
 * itself (so a caller cannot make the root process fail after the payload started), set the soft
 * core limit to 0, and passed the caller's values on; the payload gets them back through
 * start-payload, so batch-system limits still bind the payload. The epilogue keeps glexec's own.
 */
import { LIFTED_RESOURCES, type LiftedResource, type Limit, type LimitValue, ownLimit } from './sys/rlimit';

const parseValue = (text: string): LimitValue | undefined =>
  text === 'unlimited' ? 'unlimited' : /^\d{1,20}$/.test(text) ? Number(text) : undefined;

/** Parses the shim's `cpu=S:H,fsize=S:H,…`; anything malformed is ignored (nothing is restored). */
export function parseCallerLimits(text: string): Map<LiftedResource, Limit> {
  const limits = new Map<LiftedResource, Limit>();
  for (const item of text.split(',')) {
    const match = /^([a-z]+)=([^:]+):(.+)$/.exec(item);
    const resource = LIFTED_RESOURCES.find((name) => name === match?.[1]);
    const soft = parseValue(match?.[2] ?? '');
    const hard = parseValue(match?.[3] ?? '');
    if (resource && soft !== undefined && hard !== undefined) limits.set(resource, { soft, hard });
  }
  return limits;
}

const same = (a: Limit, b: Limit): boolean => a.soft === b.soft && a.hard === b.hard;

/** `name=soft:hard` for each limit of the caller that differs from glexec's own (start-payload's --rlimit). */
export function payloadLimitOptions(
  callerLimits: ReadonlyMap<LiftedResource, Limit>,
  own: (resource: LiftedResource) => Limit = ownLimit,
): string[] {
  const options: string[] = [];
  for (const [resource, limit] of callerLimits) {
    if (!same(limit, own(resource))) options.push(`${resource}=${limit.soft}:${limit.hard}`);
  }
  return options;
}
