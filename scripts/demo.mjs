// A real glexec cycle on this machine, then everything is removed again (run as root):
//   npm run demo
// It installs glexec into a temporary prefix, makes a test CA, a user certificate and an RFC 3820
// proxy, a pilot account and a payload account, runs a payload through the setuid shim as the
// pilot, lets the payload leave a process behind, and shows what the payload printed, what the
// epilogue saw, and the completion record.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, readFileSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(fileURLToPath(import.meta.url), '../..');
const require = createRequire(import.meta.url);
if (process.getuid() !== 0) {
  console.error('demo: run it as root (it creates two accounts and installs a setuid shim in a temporary prefix)');
  process.exit(1);
}
// With nothing but the repository: install the dependencies and build first.
if (!existsSync(join(root, 'node_modules/.package-lock.json')))
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
execFileSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: 'inherit' });
const { TestSystem } = require(join(root, 'build/test/helpers/system.js'));
const { TestPki } = require(join(root, 'build/test/helpers/pki-fixtures.js'));

const step = (text) => console.log(`\n== ${text}`);

/**
 * The example epilogue lists the payload account's processes one second after its SIGKILL. A
 * process listed there may be a zombie: dead, but not yet reaped by its new parent (the payload
 * exited, so it was re-parented, usually to PID 1); a zombie runs nothing and holds no memory.
 * Say which, so that the output does not read as a failed kill.
 */
function explainRemaining(psText) {
  const listed = psText
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((fields) => fields.length >= 4);
  for (const [pid, ppid, stat, command] of listed) {
    const state = stat.startsWith('Z')
      ? `a zombie: killed, but not yet reaped by its new parent (pid ${ppid}); it runs nothing and holds no memory`
      : `still running (state ${stat})`;
    console.log(`    note: pid ${pid} (${command}) listed as remaining above was ${state}`);
  }
}
const system = TestSystem.create();
try {
  step(`installed ${system.shim} (setuid root) with config ${system.configPath}`);
  const pki = TestPki.create(system);
  pki.writeStandardGridMap();
  console.log(
    `pilot account ${system.pilot.name} (uid ${system.pilot.uid}), payload account ${system.target.name} (uid ${system.target.uid})`,
  );
  console.log(`proxy ${pki.pilotProxy} of ${pki.userDn}, mapped by ${system.gridmapPath}`);

  // The epilogue: the Nikhef example (etc/epilogue/nikhef-example.sh), which also saves what it saw.
  const seen = join(system.root, 'epilogue-saw');
  const psAfterKill = join(system.root, 'epilogue-ps');
  const epilogueLog = join(system.root, 'epilogue-log/epilogue.log');
  const example = readFileSync(join(root, 'etc/epilogue/nikhef-example.sh'), 'utf8')
    .replace('LOGFILE=/var/log/glexec/epilogue.log', `LOGFILE=${epilogueLog}`)
    .replace('\n# Some useful variables', `\nenv | grep '^GLEXEC_EPILOG_' | sort > ${seen}\n\n# Some useful variables`)
    // The state of what is still listed after the kill, for the explanation below.
    .replace(
      '\n# Log remaining process IDs',
      `\nps -o pid=,ppid=,stat=,comm= -u "$GLEXEC_EPILOG_TARGET_UID" > ${psAfterKill}\n\n# Log remaining process IDs`,
    );
  mkdirSync(join(system.root, 'epilogues'), { mode: 0o755 });
  const epilogue = join(system.root, 'epilogues/cleanup.sh');
  writeFileSync(epilogue, example, { mode: 0o755 });
  chmodSync(epilogue, 0o755);
  system.writeConfig(system.standardConfig(['log_level = 3', `epilogue = ${epilogue}`, 'epilogue_timeout = 30']));
  console.log(`glexec.conf:\n${readFileSync(system.configPath, 'utf8').replace(/^/gm, '    ')}`);

  step(`as ${system.pilot.name}: GLEXEC_CLIENT_CERT=${pki.pilotProxy} ${system.shim} /bin/sh -c '...'`);
  const payload =
    'echo "payload: $(id)"; echo "payload: pid $$, HOME=$HOME"; /bin/sleep 600 & echo "payload: left /bin/sleep 600 running, pid $!"; exit 7';
  const result = system.run(['/bin/sh', '-c', payload], {
    env: { GLEXEC_CLIENT_CERT: pki.pilotProxy, GLEXEC_ID: 'demo-job-1' },
  });
  process.stdout.write(result.stdout.replace(/^/gm, '    '));
  if (result.stderr) process.stdout.write(result.stderr.replace(/^/gm, '    stderr: '));
  console.log(`glexec exited with ${result.status} (the payload's own exit code)`);

  step('what the epilogue saw (as root, stdio on /dev/null)');
  console.log(readFileSync(seen, 'utf8').replace(/^/gm, '    ').trimEnd());
  step('what the epilogue logged');
  console.log(readFileSync(epilogueLog, 'utf8').replace(/^/gm, '    ').trimEnd());
  explainRemaining(readFileSync(psAfterKill, 'utf8'));
  step(`the completion record in ${system.logFile}`);
  const record = system.logRecords().find((entry) => entry.msg === 'job completed');
  console.log(JSON.stringify(record, null, 2).replace(/^/gm, '    '));
} finally {
  system.tearDown();
  step('removed the accounts, the prefix and every file of the demo');
}
