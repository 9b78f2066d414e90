// glexec's costs, each against a baseline measured in the same run (these machines are noisy, so
// every figure is a ratio). Needs root: it makes a throwaway installation with its own accounts
// (the end-to-end test helpers) and removes it afterwards.
//   npm run bench                 the full table (40 runs a row)
//   npm run bench -- --quick      the same rows with 20 runs and smaller loads (under a minute)
//   npm run bench -- --runs=N
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const root = join(fileURLToPath(import.meta.url), '../..');
const require = createRequire(import.meta.url);
const quick = process.argv.includes('--quick');
const runsArg = process.argv.find((arg) => arg.startsWith('--runs='));
const runs = runsArg ? Number(runsArg.slice(7)) : quick ? 20 : 40;
const leftoverCount = 2000;
if (process.getuid() !== 0) {
  console.error('bench: needs root (it installs the setuid shim and creates test accounts)');
  process.exit(1);
}
const { TestSystem } = require(join(root, 'build/test/helpers/system.js'));
const { TestPki } = require(join(root, 'build/test/helpers/pki-fixtures.js'));

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const ms = (start) => Number(process.hrtime.bigint() - start) / 1e6;
const rows = [];
const row = (what, value, baseline, unit, target) => rows.push({ what, value, baseline, unit, target });

const system = TestSystem.create();
try {
  const pki = TestPki.create(system);
  pki.writeStandardGridMap();
  const env = system.callerEnv({ GLEXEC_CLIENT_CERT: pki.pilotProxy });
  const asPilot = ['--reuid', String(system.pilot.uid), '--regid', String(system.pilot.gid), '--init-groups', '--'];
  const timed = (command, args) => {
    const start = process.hrtime.bigint();
    const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env, cwd: system.scratch });
    if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
    return ms(start);
  };
  const glexec = (...args) => () => timed('/usr/bin/setpriv', [...asPilot, system.shim, ...args]);
  const nodeZero = () => timed('/usr/bin/setpriv', [...asPilot, process.execPath, '-e', '0']);
  const setprivTrue = () => timed('/usr/bin/setpriv', ['--reuid', String(system.target.uid), '--regid', String(system.target.gid), '--clear-groups', '--', '/bin/true']);

  /** Medians of commands run alternately, `runs` times each, after one warm-up round. */
  const alternate = (commands) => {
    const samples = Object.fromEntries(Object.keys(commands).map((name) => [name, []]));
    for (const run of Object.values(commands)) run();
    for (let i = 0; i < runs; i++) for (const [name, run] of Object.entries(commands)) samples[name].push(run());
    return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]));
  };

  // 1. Start-up, no epilogue.
  system.writeConfig(system.standardConfig(['log_level = 3']));
  const plain = alternate({ glexec: glexec('/bin/true'), node: nodeZero, setpriv: setprivTrue });
  row('glexec /bin/true vs node -e 0', plain.glexec, plain.node, 'ms', 1.25);
  row('glexec /bin/true vs setpriv /bin/true', plain.glexec, plain.setpriv, 'ms');

  // 1b. Mapping cost of each LCMAPS backend against the grid-mapfile path (same DN, same account).
  if (existsSync('/usr/lib/x86_64-linux-gnu/liblcmaps.so.0') && existsSync('/usr/lib/lcmaps/lcmaps_localaccount.mod')) {
    const lcmapsDb = join(system.root, 'etc/bench-lcmaps.db');
    writeFileSync(lcmapsDb, [
      'path = /usr/lib/lcmaps',
      `verifyproxy = "lcmaps_verify_proxy.mod" " -certdir ${system.certdir}"`,
      `localaccount = "lcmaps_localaccount.mod" " -gridmapfile ${system.gridmapPath}"`,
      'posix_enf = "lcmaps_posix_enf.mod"',
      'glexec_get_account:',
      'verifyproxy -> localaccount',
      'localaccount -> posix_enf',
      '',
    ].join('\n'), { mode: 0o644 });
    const configured = (lines) => () => {
      system.writeConfig(system.standardConfig(['log_level = 3', ...lines]));
      return glexec('/bin/true')();
    };
    const lcmaps = [`lcmaps_db_file = ${lcmapsDb}`, 'lcmaps_get_account_policy = glexec_get_account'];
    const mapping = alternate({ gridmap: configured([]), builtin: configured([...lcmaps, 'lcmaps_backend = builtin']), library: configured([...lcmaps, 'lcmaps_backend = library']) });
    row('glexec /bin/true, lcmaps.db builtin backend vs grid-mapfile', mapping.builtin, mapping.gridmap, 'ms');
    row('glexec /bin/true, lcmaps.db library backend vs grid-mapfile', mapping.library, mapping.gridmap, 'ms');
  } else {
    console.error('bench: no LCMAPS (apt-get install liblcmaps0 lcmaps-plugins-basic-localaccount lcmaps-plugins-basic-posixenf lcmaps-plugins-verify-proxy): mapping rows left out');
  }

  // 2. Start-up with /bin/true as the epilogue.
  system.writeConfig(system.standardConfig(['log_level = 3', 'epilogue = /usr/bin/true']));
  const withEpilogue = alternate({ glexec: glexec('/bin/true'), node: nodeZero });
  row('glexec /bin/true, epilogue /usr/bin/true, vs node -e 0', withEpilogue.glexec, withEpilogue.node, 'ms', 1.35);

  // 3. Memory of a lingering glexec against an idle node, from smaps_rollup.
  system.writeConfig(system.standardConfig(['log_level = 3']));
  const rollup = (pid) => {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    return { rss: kb('Rss'), private: kb('Private_Clean') + kb('Private_Dirty') };
  };
  const memory = { glexec: { rss: [], private: [] }, node: { rss: [], private: [] } };
  // Pairs started together: Rss and private memory are per process, so they do not disturb each other.
  const pairs = Array.from({ length: 20 }, () => [
    spawn('/usr/bin/setpriv', [...asPilot, system.shim, '/bin/sleep', '3'], { env, cwd: system.scratch, stdio: 'ignore' }),
    spawn('/usr/bin/setpriv', [...asPilot, process.execPath, '-e', 'setTimeout(() => {}, 3000)'], { env, cwd: system.scratch, stdio: 'ignore' }),
  ]);
  await sleep(2000);
  for (const [lingering, idle] of pairs) {
    for (const [name, child] of [['glexec', lingering], ['node', idle]]) {
      const sample = rollup(child.pid);
      memory[name].rss.push(sample.rss);
      memory[name].private.push(sample.private);
    }
  }
  await Promise.all(pairs.flat().map((child) => new Promise((resolve) => child.once('exit', resolve))));
  row('lingering glexec, whole (Rss) vs idle node', median(memory.glexec.rss) / 1024, median(memory.node.rss) / 1024, 'MB', 1.1);
  row('lingering glexec, private vs idle node', median(memory.glexec.private) / 1024, median(memory.node.private) / 1024, 'MB');

  // 4. 64 at once, each with an epilogue that records that it ran.
  const ledger = join(system.root, 'epilogue-ledger');
  const epilogue = system.installProgram('ledger.sh', `#!/bin/sh\necho "$GLEXEC_EPILOG_TARGET_PID" >> ${ledger}\n`);
  system.writeConfig(system.standardConfig(['log_level = 3', `epilogue = ${epilogue}`]));
  const together = async (make) => {
    const start = process.hrtime.bigint();
    const children = Array.from({ length: 64 }, () => make());
    const codes = await Promise.all(children.map((child) => new Promise((resolve) => child.once('exit', (code) => resolve(code)))));
    return { ms: ms(start), codes };
  };
  const concurrent = { glexec: [], node: [] };
  let wrong = 0;
  for (let round = 0; round < (quick ? 3 : 5); round++) {
    rmSync(ledger, { force: true });
    system.clearLog();
    const many = await together(() => spawn('/usr/bin/setpriv', [...asPilot, system.shim, '/bin/true'], { env, cwd: system.scratch, stdio: 'ignore' }));
    const nodes = await together(() => spawn('/usr/bin/setpriv', [...asPilot, process.execPath, '-e', '0'], { env, cwd: system.scratch, stdio: 'ignore' }));
    concurrent.glexec.push(many.ms);
    concurrent.node.push(nodes.ms);
    const epilogueRuns = readFileSync(ledger, 'utf8').split('\n').filter(Boolean);
    const lines = readFileSync(system.logFile, 'utf8').split('\n').filter(Boolean);
    const parsed = lines.filter((line) => {
      try {
        JSON.parse(line);
        return true;
      } catch {
        return false;
      }
    });
    const completions = parsed.map((line) => JSON.parse(line)).filter((record) => record.msg === 'job completed');
    if (many.codes.some((code) => code !== 0) || epilogueRuns.length !== 64 || new Set(epilogueRuns).size !== 64 || parsed.length !== lines.length || completions.length !== 64) wrong++;
  }
  row(`64 glexec at once vs 64 node -e 0 (rounds with a wrong exit, epilogue count or log line: ${wrong})`, median(concurrent.glexec), median(concurrent.node), 'ms');

  // 5. Epilogue timeout precision: how late SIGTERM and SIGKILL come.
  const stamps = join(system.root, 'epilogue-stamps');
  const stubborn = system.installProgram('stubborn.sh', `#!/bin/sh\necho "start $(date +%s.%N)" > ${stamps}\ntrap 'echo "term $(date +%s.%N)" >> ${stamps}' TERM\nwhile :; do sleep 0.01; done\n`);
  const timeout = 0.3;
  const grace = 0.2;
  system.writeConfig(system.standardConfig(['log_level = 3', `epilogue = ${stubborn}`, `epilogue_timeout = ${timeout}`, `kill_grace = ${grace}`]));
  const termLate = [];
  const killLate = [];
  for (let i = 0; i < (quick ? 20 : 30); i++) {
    system.clearLog();
    spawnSync('/usr/bin/setpriv', [...asPilot, system.shim, '/bin/true'], { env, cwd: system.scratch, stdio: 'ignore' });
    const text = readFileSync(stamps, 'utf8');
    const start = Number(/^start (\S+)$/m.exec(text)?.[1]);
    const term = Number(/^term (\S+)$/m.exec(text)?.[1]);
    termLate.push((term - start - timeout) * 1000);
    const record = JSON.parse(readFileSync(system.logFile, 'utf8').split('\n').filter(Boolean).find((line) => line.includes('"job completed"')));
    killLate.push(record.epilogue.durationMs - (timeout + grace) * 1000);
  }
  row('epilogue SIGTERM after epilogue_timeout: lateness', median(termLate), 50, 'ms');
  row('epilogue SIGKILL after kill_grace: lateness (incl. start-up)', median(killLate), 50, 'ms');

  // 6. Killing leftovers: the payload leaves N sleeping processes; how long the cgroup kill takes.
  system.writeConfig(system.standardConfig(['log_level = 3']));
  const spawner = system.installProgram('spawner.sh', `#!/bin/sh\ni=0\nwhile [ $i -lt ${leftoverCount} ]; do /bin/sleep 1000 >/dev/null 2>&1 & i=$((i+1)); done\n`);
  const killTimes = [];
  let survivors = 0;
  for (let i = 0; i < (quick ? 1 : 3); i++) {
    system.clearLog();
    spawnSync('/usr/bin/setpriv', [...asPilot, system.shim, spawner], { env, cwd: system.scratch, stdio: 'ignore' });
    const records = readFileSync(system.logFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line));
    const ended = records.find((record) => record.msg === 'ended what the payload left behind');
    const done = records.find((record) => record.msg === 'job completed');
    killTimes.push(ended?.durationMs ?? NaN);
    // Killed processes may stay zombies until init reaps them: count only the running ones.
    const states = spawnSync('ps', ['-o', 'stat=', '-u', String(system.target.uid)], { encoding: 'utf8' }).stdout.split('\n');
    survivors += (done?.survivors ?? 1) + states.filter((state) => state.trim() !== '' && !state.trim().startsWith('Z')).length;
  }
  row(`killing ${leftoverCount} leftovers (cgroup.kill; survivors: ${survivors})`, median(killTimes), 1000, 'ms');

  const width = Math.max(...rows.map((r) => r.what.length));
  console.log(`glexec benchmark: ${runs} runs a row (alternated), node ${process.version}, ${new Date().toISOString()}`);
  console.log(`${'what'.padEnd(width)}  ${'glexec'.padStart(9)}  ${'baseline'.padStart(9)}  ratio   target`);
  for (const r of rows) {
    const ratio = r.baseline ? r.value / r.baseline : NaN;
    const target = r.target ? `<= ${r.target}x` : r.unit === 'ms' && (r.what.includes('lateness') || r.what.includes('killing')) ? `<= ${r.baseline} ms` : '';
    console.log(`${r.what.padEnd(width)}  ${`${r.value.toFixed(1)} ${r.unit}`.padStart(9)}  ${`${r.baseline.toFixed(1)} ${r.unit}`.padStart(9)}  ${ratio.toFixed(2).padStart(5)}   ${target}`);
  }
  writeFileSync(join(root, 'build/bench-latest.txt'), rows.map((r) => JSON.stringify(r)).join('\n'));
} finally {
  system.tearDown();
}
