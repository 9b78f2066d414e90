/**
 * Monotonic milliseconds. process.hrtime rather than the `performance` global, whose first use
 * loads perf_hooks (about 1 ms of start-up, for nothing glexec needs).
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
