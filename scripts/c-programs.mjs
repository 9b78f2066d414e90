// The C programs, and the one set of flags every one of them is compiled with. `npm run build`
// compiles them into build/c/; install-system copies what it installs from there. Only the shim
// is compiled again at install time, because the node, program and config paths are compiled
// into it (so no caller input can choose them). Adding a program is one line in `programs`.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/** Hardening for every program; warnings fail the build in CI only (CI=true), not at a site. */
export const hardeningFlags = [
  '-std=c11',
  '-O2',
  '-Wall',
  '-Wextra',
  '-D_FORTIFY_SOURCE=2',
  '-fstack-protector-strong',
  '-Wl,-z,relro,-z,now',
  ...(process.env.CI === 'true' ? ['-Werror'] : []),
];

/** A position-independent executable linked against the shared libc. */
const pie = ['-fPIE', '-pie'];
/** Static, so that no LD_* variable of the environment is read while it runs as root, and no library is loaded. */
const staticPie = ['-static-pie'];

/**
 * The directory of Node's own C headers (node_api.h) for the node that runs the build: its
 * prefix's include/node (Debian and nodesource: /usr/include/node), else node-gyp's download.
 */
export function nodeHeaders() {
  const candidates = [
    join(process.config.variables.node_prefix ?? '/usr', 'include/node'),
    join(dirname(dirname(process.execPath)), 'include/node'),
    '/usr/include/node',
    join(homedir(), '.cache/node-gyp', process.versions.node, 'include/node'),
  ];
  const found = candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
  if (found === undefined)
    throw new Error(`Node's headers (node_api.h) are not in ${candidates.join(', ')}: install node's headers`);
  return found;
}

/** A Node addon: a shared object whose napi_* symbols node itself provides when it loads it. */
const nodeAddon = () => ['-fPIC', '-shared', `-I${nodeHeaders()}`];

/**
 * name: the file in build/c/; source: relative to the repository; link: linking flags;
 * defines: its own -D flags; libraries: after the source; installMode: install-system puts it in PREFIX/lib/glexec/ with
 * that mode, owned by root. Test fixtures are built here too, so no test runs gcc.
 */
export const programs = [
  { name: 'start-payload', source: 'shim/start-payload.c', link: staticPie, installMode: 0o700 },
  // The bridge to the real LCMAPS (lcmaps_backend = library, and the tests' oracle): it dlopens the
  // library at run time, so it builds whether or not LCMAPS is installed.
  { name: 'lcmaps-helper', source: 'shim/lcmaps-helper.c', link: pie, libraries: ['-ldl'], installMode: 0o700 },
  // flock(2) for the locks of the proxies and the registry (src/sys/lock.ts), instead of flock(1).
  { name: 'flock.node', source: 'shim/flock-addon.c', link: nodeAddon, installMode: 0o644 },
  { name: 'caller-state', source: 'test/fixtures/caller-state.c', link: pie },
  { name: 'zombie-leader', source: 'test/fixtures/zombie-leader.c', link: pie, libraries: ['-lpthread'] },
  { name: 'stall-stderr', source: 'test/fixtures/stall-stderr.c', link: pie },
  { name: 'forge-comm', source: 'test/fixtures/forge-comm.c', link: pie },
  { name: 'print-euid', source: 'test/fixtures/print-euid.c', link: pie },
  { name: 'no-clone3', source: 'test/fixtures/no-clone3.c', link: pie },
  // The monitor's plan parser on its own (it includes shim/monitor.c).
  {
    name: 'plan-check',
    source: 'test/fixtures/plan-check.c',
    extraSources: ['shim/start-payload.c'],
    link: pie,
    defines: ['-DSTART_PAYLOAD_IN_MONITOR'],
  },
];

/** The setuid shim: built by install-system, with the installed paths as `defines`. */
export const shim = {
  name: 'glexec',
  source: 'shim/glexec-shim.c',
  // The monitor (the glexec process while the payload runs), its epilogue, its removal of the proxy copy and its conclusion of a run with nothing
  // to conclude are part of the shim's binary.
  // start-payload.c too: the monitor's child runs its steps itself, then execs the payload.
  // Static like start-payload: a setuid-root program with no dynamic loader and no shared library
  // at all, and 1-2 ms less at every start (docs/performance.md).
  extraSources: ['shim/monitor.c', 'shim/conclusion.c', 'shim/epilogue.c', 'shim/proxy-copy.c', 'shim/start-payload.c'],
  link: staticPie,
  defines: ['-DSTART_PAYLOAD_IN_MONITOR'],
};

/** Compiles `program` (one of the above) from the repository at `root` into `output`. */
export function compile(root, program, output, defines = []) {
  const args = [
    ...hardeningFlags,
    ...(typeof program.link === 'function' ? program.link() : program.link),
    ...(program.defines ?? []),
    ...defines,
    '-o',
    output,
    join(root, program.source),
    ...(program.extraSources ?? []).map((source) => join(root, source)),
    ...(program.libraries ?? []),
  ];
  try {
    execFileSync('gcc', args, { stdio: 'inherit' });
  } catch (error) {
    if (error.code === 'ENOENT')
      throw new Error('gcc is not installed: apt-get install gcc libc6-dev', { cause: error });
    throw new Error(`gcc could not compile ${program.source} (its messages are above)`, { cause: error });
  }
}
