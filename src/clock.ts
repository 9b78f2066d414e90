/**
 * Monotonic milliseconds. process.hrtime rather than the `performance` global, whose first use
 * loads perf_hooks (about 1 ms of start-up, for nothing glexec needs).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * node:timers/promises' setTimeout, loaded at the first wait: a run's first phase never waits, and
 * the module cost its start-up about 0.2 ms.
 */
export const sleep: typeof import('node:timers/promises').setTimeout = (...args) =>
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  (require('node:timers/promises') as typeof import('node:timers/promises')).setTimeout(...args);
