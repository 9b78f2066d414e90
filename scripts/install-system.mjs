// Installs glexec (as root):
//   npm run install-system -- --prefix=DIR --config=FILE [--node=PATH]
// DIR/sbin/glexec        the setuid-root shim, compiled here (the only C compiled at install time)
//                        with FILE, the node binary and the program compiled in
// DIR/lib/glexec/        glexec.js (loader), glexec-main.js and glexec-conclude.js (the bundles of a
//                        run's two phases), glexec-cli.js, glexec-check.js, glexec-lcmaps.js and
//                        glexec-voms.js (bundles the first phase loads only when needed: options,
//                        --check, lcmaps.db, VOMS), posix.node (the native addon), flock.node (glexec's
//                        flock(2) addon), start-payload and lcmaps-helper (root-only helpers; these
//                        three from build/c/); glexec writes each bundle's
//                        <bundle>.<dev>-<inode>-<size>-<mtime>-<ctime>.cache (V8's code cache) there
//                        after its first run
// DIR/share/man/         glexec(8) and glexec.conf(5)
// The config file itself is not installed, but its directory is created (root:root 0755) if missing.
// Everything is owned by root and writable by nobody else. The install refuses a prefix, a node
// binary or a config path whose directories someone other than root could change, because the
// shim will run them as root for every caller.
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile, programs, shim as shimProgram } from './c-programs.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fail = (message) => {
  console.error(`install-system: ${message}`);
  process.exit(1);
};

const options = Object.fromEntries(
  process.argv.slice(2).map((arg) => {
    const match = /^--(prefix|config|node)=(.+)$/.exec(arg);
    if (!match)
      fail(`unknown argument '${arg}'; usage: npm run install-system -- --prefix=DIR --config=FILE [--node=PATH]`);
    return [match[1], match[2]];
  }),
);
if (!options.prefix || !options.config)
  fail('usage: npm run install-system -- --prefix=DIR --config=FILE [--node=PATH]');
if (process.getuid() !== 0) fail('must run as root (the shim is installed setuid root)');

const prefix = resolve(options.prefix);
const config = resolve(options.config);
/** The node binary the shim will exec, by its real path: an executable regular file, or one line saying why not. */
function nodeBinary(given) {
  let real;
  try {
    real = realpathSync(given);
  } catch (error) {
    fail(
      `--node=${given}: ${error.code === 'ENOENT' ? 'no such file' : `cannot be resolved (${error.code ?? error.message})`}`,
    );
  }
  const st = statSync(real);
  if (!st.isFile() || !(st.mode & 0o111)) fail(`--node=${given}: ${real} is not an executable file`);
  return real;
}
const node = nodeBinary(options.node ?? process.execPath);
for (const [name, value] of Object.entries({ prefix, config, node })) {
  if (!/^\/[A-Za-z0-9_.+@,/-]*$/.test(value))
    fail(`${name} path '${value}' may only contain letters, digits and _.+@,/-`);
}

/** Every existing component of `path` must be root-owned and not writable by group or others. */
function requireRootOnly(path, what) {
  let current = path;
  const components = [];
  while (true) {
    components.unshift(current);
    if (current === '/') break;
    current = dirname(current);
  }
  for (const component of components) {
    if (!existsSync(component)) continue;
    const st = lstatSync(component);
    if (st.uid !== 0 || st.mode & 0o022) {
      fail(
        `${what}: ${component} must be owned by root and not writable by group or others (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`,
      );
    }
  }
}

const loader = join(root, 'build/dist/glexec.js');
const bundle = join(root, 'build/dist/glexec-main.js');
const concludeBundle = join(root, 'build/dist/glexec-conclude.js');
// Loaded by absolute path only when needed (src/lazy.ts, src/voms/load.ts): options, --check, lcmaps.db, VOMS.
const lazyBundles = ['glexec-cli.js', 'glexec-check.js', 'glexec-lcmaps.js', 'glexec-voms.js'].map((name) => [
  join(root, 'build/dist', name),
  name,
]);
const installedPrograms = programs.filter((program) => program.installMode !== undefined);
if (![loader, bundle, concludeBundle, ...lazyBundles.map(([built]) => built)].every((file) => existsSync(file)))
  fail('build/dist/ is missing: run npm run build first');
for (const { name } of installedPrograms) {
  if (!existsSync(join(root, 'build/c', name))) fail(`build/c/${name} is missing: run npm run build first`);
}
const require = createRequire(import.meta.url);
const addon = require.resolve('posix/build/Release/posix.node');

requireRootOnly(node, 'node binary');
requireRootOnly(prefix, 'prefix');
requireRootOnly(dirname(config), 'config directory');

/** Creates the missing directories above the config file, root-owned and 0755 (the umask aside). */
function makeConfigDirectory(dir) {
  const missing = [];
  for (let current = dir; !existsSync(current); current = dirname(current)) missing.unshift(current);
  for (const made of missing) {
    mkdirSync(made, { mode: 0o755 });
    chownSync(made, 0, 0);
    chmodSync(made, 0o755);
    console.log(`created ${made} (root:root 0755) for the configuration file`);
  }
}
makeConfigDirectory(dirname(config));

const sbin = join(prefix, 'sbin');
const lib = join(prefix, 'lib/glexec');
// A prefix made here gets the same owner and mode as the rest, whatever the admin's umask.
const prefixMade = !existsSync(prefix);
for (const dir of [prefix, sbin, join(prefix, 'lib'), lib]) {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
}
for (const dir of [...(prefixMade ? [prefix] : []), sbin, join(prefix, 'lib'), lib]) {
  chownSync(dir, 0, 0);
  chmodSync(dir, 0o755);
}
const program = join(lib, 'glexec.js');
// Code caches of older bundles are never used (their names carry the bundle file's identity and times): remove them.
if (existsSync(lib))
  for (const name of readdirSync(lib).filter((file) => /^glexec-(main|conclude)\..*\.cache$/.test(file)))
    rmSync(join(lib, name), { force: true });
for (const [from, to] of [
  [loader, program],
  [bundle, join(lib, 'glexec-main.js')],
  [concludeBundle, join(lib, 'glexec-conclude.js')],
  ...lazyBundles.map(([built, name]) => [built, join(lib, name)]),
  [addon, join(lib, 'posix.node')],
]) {
  copyFileSync(from, to);
  chownSync(to, 0, 0);
  chmodSync(to, 0o644);
}

const manPages = [
  ['glexec.8', 'man8'],
  ['glexec.conf.5', 'man5'],
];
for (const [page, section] of manPages) {
  const from = join(root, 'build/man', page);
  if (!existsSync(from)) fail(`build/man/${page} is missing: run npm run build first`);
  const dir = join(prefix, 'share/man', section);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const made of [join(prefix, 'share'), join(prefix, 'share/man'), dir]) {
    chownSync(made, 0, 0);
    chmodSync(made, 0o755);
  }
  copyFileSync(from, join(dir, page));
  chownSync(join(dir, page), 0, 0);
  chmodSync(join(dir, page), 0o644);
}

const shim = join(sbin, 'glexec');
const cString = (text) => `"${text}"`;
try {
  compile(root, shimProgram, shim, [
    `-DGLEXEC_CONFIG_FILE=${cString(config)}`,
    `-DGLEXEC_NODE=${cString(node)}`,
    `-DGLEXEC_PROGRAM=${cString(program)}`,
  ]);
} catch (error) {
  fail(error.message);
}
chownSync(shim, 0, 0);
chmodSync(shim, 0o4755);

// The C helpers as the build made them, e.g. start-payload (cgroup, limits, identity, cwd, exec),
// which only root runs, so root-only. The helper of older versions goes.
rmSync(join(lib, 'into-cgroup'), { force: true });
for (const { name, installMode } of installedPrograms) {
  const installed = join(lib, name);
  // Beside it, then renamed: a run that is executing the old one keeps it (no ETXTBSY), and the
  // name never points to a file with another owner or mode.
  const fresh = `${installed}.new`;
  rmSync(fresh, { force: true });
  copyFileSync(join(root, 'build/c', name), fresh);
  chownSync(fresh, 0, 0);
  chmodSync(fresh, installMode);
  renameSync(fresh, installed);
}

console.log(`installed ${shim} (setuid root; node ${node})`);
console.log(`the shim reads its configuration from ${config} (compiled in; glexec -V shows it)`);
if (!existsSync(config))
  console.log(
    `${config} does not exist yet: install -o root -g root -m 0600 etc/glexec.conf ${config}, edit it, then run glexec --check`,
  );
console.log(
  `installed ${lib}/glexec.js, ${lib}/posix.node and ${installedPrograms.map(({ name }) => `${lib}/${name}`).join(', ')}`,
);
console.log(`installed ${join(prefix, 'share/man')}/man8/glexec.8 and man5/glexec.conf.5`);
