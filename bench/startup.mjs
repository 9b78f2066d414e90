// Start-up cost of glexec against its baselines, measured in the same run, commands alternated:
//   glexec /bin/true  (installed setuid shim, non-root caller, no epilogue)
//   node -e 0         (the floor any Node program pays)
//   setpriv … /bin/true (what a C identity switch costs)
// Prints medians and the ratio glexec / node -e 0 (target ≤ 1.25). Needs root: it creates a
// throwaway installation with its own users (the end-to-end test helper) and removes it after.
//   npm run bench [-- --runs=N]
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(fileURLToPath(import.meta.url), '../..');
const require = createRequire(import.meta.url);
const runsArg = process.argv.find((arg) => arg.startsWith('--runs='));
const runs = runsArg ? Number(runsArg.slice(7)) : process.argv.includes('--quick') ? 20 : 40;
if (process.getuid() !== 0) {
  console.error('bench: needs root (it installs the setuid shim and creates test users)');
  process.exit(1);
}

const { TestSystem } = require(join(root, 'build/test/helpers/system.js'));
const { TestPki } = require(join(root, 'build/test/helpers/pki-fixtures.js'));

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

function timeOnce(command, args, options) {
  const started = process.hrtime.bigint();
  const result = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', ...options });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return ms;
}

const system = TestSystem.create();
try {
  const pki = TestPki.create(system);
  system.writeConfig(system.standardConfig(['log_level = 3']));
  pki.writeStandardGridMap();
  const env = system.callerEnv({ GLEXEC_CLIENT_CERT: pki.pilotProxy });
  const asPilot = ['--reuid', String(system.pilot.uid), '--regid', String(system.pilot.gid), '--init-groups', '--'];
  const commands = {
    glexec: () => timeOnce('/usr/bin/setpriv', [...asPilot, system.shim, '/bin/true'], { env, cwd: system.scratch }),
    'node -e 0': () => timeOnce('/usr/bin/setpriv', [...asPilot, process.execPath, '-e', '0'], { env, cwd: system.scratch }),
    // As root: the cost of the identity switch alone, in C.
    'setpriv /bin/true': () => timeOnce('/usr/bin/setpriv', ['--reuid', String(system.target.uid), '--regid', String(system.target.gid), '--clear-groups', '--', '/bin/true'], { env, cwd: system.scratch }),
  };
  const samples = Object.fromEntries(Object.keys(commands).map((name) => [name, []]));
  for (const run of Object.values(commands)) run(); // warm the page cache
  for (let i = 0; i < runs; i++) for (const [name, run] of Object.entries(commands)) samples[name].push(run());
  const node = median(samples['node -e 0']);
  console.log(`runs per command: ${runs} (alternated), node ${process.version}`);
  console.log('command               median ms   ratio to node -e 0');
  for (const [name, values] of Object.entries(samples)) {
    console.log(`${name.padEnd(20)} ${median(values).toFixed(1).padStart(9)}   ${(median(values) / node).toFixed(2)}`);
  }
  const ratio = median(samples.glexec) / node;
  console.log(`glexec /bin/true vs node -e 0: ${ratio.toFixed(2)}x (target <= 1.25x)`);
} finally {
  system.tearDown();
}
