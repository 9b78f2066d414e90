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

const twoDigits = (n: number): string => (n < 10 ? `0${n}` : String(n));

/**
 * `new Date(ms).toISOString()`, written out for the years 0 to 9999 (every record glexec writes):
 * V8's toISOString cost 0.7-1.2 ms at its first call in a process, the getUTC* methods 0.02 ms.
 */
export function isoTimestamp(ms: number): string {
  const date = new Date(ms);
  const year = date.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) return date.toISOString(); // also throws for an invalid time, as it does
  const milliseconds = date.getUTCMilliseconds();
  return (
    `${String(year).padStart(4, '0')}-${twoDigits(date.getUTCMonth() + 1)}-${twoDigits(date.getUTCDate())}` +
    `T${twoDigits(date.getUTCHours())}:${twoDigits(date.getUTCMinutes())}:${twoDigits(date.getUTCSeconds())}` +
    `.${milliseconds < 10 ? '00' : milliseconds < 100 ? '0' : ''}${milliseconds}Z`
  );
}
