/**
 * The bench's table: each row's figure, what it is compared with, its target and whether the
 * target is met. Pure, so that the decision and the JSON shape are unit-tested
 * (test/unit/bench.test.ts); bench/startup.mjs measures and fills the rows.
 */

/** A target is an upper bound on the ratio to the baseline, or on the value itself. */
export interface Target {
  readonly on: 'ratio' | 'value';
  readonly atMost: number;
}

export interface Measured {
  readonly name: string;
  /** NaN when it could not be measured (every attempt failed). */
  readonly value: number;
  readonly unit: string;
  /** What the value is compared with, measured in the same run; absent when nothing is. */
  readonly baseline?: number;
  readonly target?: Target;
}

/** One row of `--json`: null where a number is missing (JSON has no NaN). */
export interface Row {
  readonly name: string;
  readonly value: number | null;
  readonly unit: string;
  readonly baseline: number | null;
  readonly ratio: number | null;
  readonly target: Target | null;
  /** null: no target, or the figure it applies to could not be measured. */
  readonly met: boolean | null;
}

const orNull = (value: number | undefined): number | null =>
  value === undefined || !Number.isFinite(value) ? null : value;

export function toRow(measured: Measured): Row {
  const value = orNull(measured.value);
  const baseline = orNull(measured.baseline);
  const ratio = value !== null && baseline !== null && baseline > 0 ? value / baseline : null;
  const target = measured.target ?? null;
  const judged = target === null ? null : target.on === 'ratio' ? ratio : value;
  const met = target === null || judged === null ? null : judged <= target.atMost;
  return { name: measured.name, value, unit: measured.unit, baseline, ratio, target, met };
}

export function formatTarget(target: Target | null, unit: string): string {
  if (target === null) return '';
  return target.on === 'ratio' ? `<= ${target.atMost}x` : `<= ${target.atMost} ${unit}`;
}

export function verdict(row: Row): string {
  if (row.target === null) return 'no target';
  if (row.met === null) return 'not measured';
  return row.met ? 'met' : 'missed';
}

/** Counts (rounds, processes) print as whole numbers, times and sizes with one decimal. */
const figure = (value: number | null, unit: string): string =>
  value === null ? '-' : `${Number.isInteger(value) ? value : value.toFixed(1)} ${unit}`;

/** The plain-text table: one line a row, its target and "met", "missed" or "not measured". */
export function formatTable(rows: readonly Row[]): string {
  const cells = rows.map((row) => [
    row.name,
    figure(row.value, row.unit),
    figure(row.baseline, row.unit),
    row.ratio === null ? '-' : row.ratio.toFixed(2),
    formatTarget(row.target, row.unit),
    verdict(row),
  ]);
  const header = ['what', 'value', 'baseline', 'ratio', 'target', 'verdict'];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...cells.map((line) => (line[column] as string).length)),
  );
  // Names and words to the left, numbers to the right.
  const align = (text: string, column: number) =>
    [1, 2, 3].includes(column) ? text.padStart(widths[column] as number) : text.padEnd(widths[column] as number);
  return [header, ...cells].map((line) => line.map(align).join('  ').trimEnd()).join('\n');
}

/** The median of the finite values (failed samples are NaN and left out); NaN if there are none. */
export function median(values: readonly number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}
