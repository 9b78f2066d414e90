import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { parseRollup, procReader, sampleTree, type Memory, type ProcReader } from '../../bench/proc';
import { formatTable, median, toRow, verdict } from '../../bench/report';

describe('the bench table', () => {
  it('a ratio target is met when value / baseline is at most the bound, and missed above it', () => {
    const met = toRow({ name: 'start-up', value: 40, unit: 'ms', baseline: 25, target: { on: 'ratio', atMost: 1.6 } });
    assert.equal(met.ratio, 1.6);
    assert.equal(met.met, true);
    const missed = toRow({
      name: 'start-up',
      value: 41,
      unit: 'ms',
      baseline: 25,
      target: { on: 'ratio', atMost: 1.6 },
    });
    assert.equal(missed.met, false);
    assert.equal(verdict(missed), 'missed');
  });

  it('a value target is judged on the value, whatever the baseline says', () => {
    const row = toRow({
      name: 'memory per job',
      value: 10.5,
      unit: 'MB',
      baseline: 20,
      target: { on: 'value', atMost: 1 },
    });
    assert.equal(row.ratio, 0.525);
    assert.equal(row.met, false);
    assert.equal(
      toRow({ name: 'survivors', value: 0, unit: 'processes', target: { on: 'value', atMost: 0 } }).met,
      true,
    );
  });

  it('a row that could not be measured is "not measured", not met and not missed', () => {
    const row = toRow({ name: 'memory per job', value: NaN, unit: 'MB', target: { on: 'value', atMost: 1 } });
    assert.equal(row.value, null);
    assert.equal(row.met, null);
    assert.equal(verdict(row), 'not measured');
    const noBaseline = toRow({
      name: 'start-up',
      value: 40,
      unit: 'ms',
      baseline: NaN,
      target: { on: 'ratio', atMost: 1.6 },
    });
    assert.equal(noBaseline.ratio, null);
    assert.equal(verdict(noBaseline), 'not measured');
  });

  it('a row without a target says so, and has no baseline or ratio when nothing was compared', () => {
    const row = toRow({ name: 'lateness', value: 3, unit: 'ms' });
    assert.equal(verdict(row), 'no target');
    assert.equal(row.baseline, null);
    assert.equal(row.ratio, null);
  });

  it('each JSON row has exactly name, value, unit, baseline, ratio, target and met, and survives a JSON round trip', () => {
    const rows = [
      toRow({ name: 'a', value: 40, unit: 'ms', baseline: 20, target: { on: 'ratio', atMost: 2 } }),
      toRow({ name: 'b', value: NaN, unit: 'MB', target: { on: 'value', atMost: 64 } }),
    ];
    const parsed = JSON.parse(JSON.stringify(rows)) as Record<string, unknown>[];
    for (const row of parsed)
      assert.deepEqual(Object.keys(row), ['name', 'value', 'unit', 'baseline', 'ratio', 'target', 'met']);
    assert.deepEqual(parsed, [
      { name: 'a', value: 40, unit: 'ms', baseline: 20, ratio: 2, target: { on: 'ratio', atMost: 2 }, met: true },
      {
        name: 'b',
        value: null,
        unit: 'MB',
        baseline: null,
        ratio: null,
        target: { on: 'value', atMost: 64 },
        met: null,
      },
    ]);
  });

  it("the table prints each row's target and verdict", () => {
    const table = formatTable([
      toRow({ name: 'start-up', value: 50, unit: 'ms', baseline: 25, target: { on: 'ratio', atMost: 1.6 } }),
      toRow({ name: 'survivors', value: 0, unit: 'processes', target: { on: 'value', atMost: 0 } }),
    ]).split('\n');
    assert.match(table[1] ?? '', /^start-up .*50 ms .*25 ms .*2\.00 .*<= 1\.6x .*missed$/);
    assert.match(table[2] ?? '', /^survivors .*0 processes .*- .*<= 0 processes .*met$/);
    assert.equal(new Set(table.map((line) => line.lastIndexOf('  '))).size, 1, 'the verdicts line up');
  });

  it('the median leaves failed (NaN) samples out, and is NaN when every sample failed', () => {
    assert.equal(median([3, NaN, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([NaN, NaN])));
  });
});

describe("the bench's /proc reads", () => {
  it('a process that has already exited reads as gone, not as an exception', async () => {
    const child = spawn('/bin/true');
    await once(child, 'exit');
    assert.ok(child.pid !== undefined);
    assert.equal(procReader.memory(child.pid), undefined);
    assert.deepEqual(procReader.children(child.pid), []);
    assert.equal(sampleTree(child.pid, new Set()), undefined);
  });

  it("a live process's own memory and its child are read from /proc", async () => {
    const child = spawn('/bin/sh', ['-c', 'sleep 100000 & echo $!; wait'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const [line] = (await once(child.stdout, 'data')) as [Buffer];
      const sleeper = Number(line.toString().trim());
      assert.ok(child.pid !== undefined);
      assert.deepEqual(procReader.children(child.pid), [sleeper]);
      const whole = sampleTree(child.pid, new Set());
      const withoutSleeper = sampleTree(child.pid, new Set([sleeper]));
      assert.equal(whole?.processes, 2);
      assert.equal(withoutSleeper?.processes, 1);
      assert.ok((procReader.memory(child.pid)?.rssKb ?? 0) > 0);
      process.kill(sleeper, 'SIGKILL');
      await once(child, 'exit');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it("a zombie's empty smaps_rollup reads as gone", () => {
    assert.equal(parseRollup(''), undefined);
    assert.deepEqual(parseRollup('Rss:  300 kB\nPrivate_Clean:  10 kB\nPrivate_Dirty:  20 kB\n'), {
      rssKb: 300,
      privateKb: 30,
    });
  });

  it('a child that vanishes half-way makes the tree be read again, not thrown', () => {
    let listings = 0;
    // Process 1 is glexec, 3 its payload (excluded), 2 a helper that has ended by the time it is read.
    const reader: ProcReader = {
      memory: (pid): Memory | undefined => (pid === 2 ? undefined : { rssKb: 100, privateKb: 40 }),
      children: (pid) => (pid !== 1 ? [] : ++listings === 1 ? [2, 3] : [3]),
    };
    assert.deepEqual(sampleTree(1, new Set([3]), reader), { privateKb: 40, processes: 1, attempts: 2 });
  });

  it('a tree that never holds still is "not measured" after the last try, and so is one whose root has gone', () => {
    const restless: ProcReader = {
      memory: (pid) => (pid === 2 ? undefined : { rssKb: 1, privateKb: 1 }),
      children: (pid) => (pid === 1 ? [2] : []),
    };
    assert.equal(sampleTree(1, new Set(), restless, 3), undefined);
    assert.equal(sampleTree(1, new Set(), { memory: () => undefined, children: () => [] }), undefined);
  });
});
