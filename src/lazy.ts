/**
 * The parts of glexec that a normal run (`glexec /abs/payload` with a grid-mapfile) never
 * executes, each loaded only when needed. Installed, each is a bundle of its own next to
 * glexec-main.js, required by absolute path (as glexec-voms.js in src/voms/load.ts), so a run
 * neither reads nor compiles them (docs/performance.md); in the development build (tsc's build/src)
 * it is the module itself. scripts/build.mjs builds the bundles from the same entries.
 *
 * What they share with the bundle that loads them: nothing but the arguments they are called with
 * and what they return or throw. Each lazy bundle holds its own copy of every module it imports, so
 * module-level state is never shared; none of it needs to be:
 * - GlexecError: the one class whose instances cross over (thrown by the lazy code, looked at by
 *   src/entry.ts and pipeline.ts with `instanceof`); its `instanceof` asks for a mark that every
 *   copy sets (src/errors.ts). No other class crosses: each copy of trust.ts, lock.ts, db.ts, …
 *   throws and catches its own errors within its own bundle.
 * - The config and the log: passed as arguments (mapWithLcmaps); --check reads glexec.conf itself.
 * - The caller's stderr (src/sys/stderr.ts, set by entry.ts): only entry.ts writes to it, and no
 *   lazy code does (commander's output is switched off, --check's report is returned).
 * - Caches (posix.node and flock.node, which Node's require cache returns once per path; the DN
 *   cache of proxy/dn.ts; signal names; the boot time): a second copy only computes them again.
 * They are built with GLEXEC_BUNDLED, so their own absolute paths (posix.node, lcmaps-helper,
 * glexec-voms.js) are the installed ones next to them.
 */
import { join } from 'node:path';
import { installedPath } from './installed';

/** `bundle` next to this bundle when installed, else `module` (a path relative to src/). */
function load(bundle: string, module: string): unknown {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(installedPath(bundle, () => join(__dirname, module)));
}

/** commander and the parse of a command line that starts with an option (src/cli.ts). */
export const commanderParser = (): typeof import('./cli-commander') =>
  load('glexec-cli.js', 'cli-commander') as typeof import('./cli-commander');

/** `glexec --check`. */
export const checkCode = (): typeof import('./check') => load('glexec-check.js', 'check') as typeof import('./check');

/** The lcmaps.db parser, its plug-ins and pool accounts, and the LCMAPS library backend. */
export const lcmapsCode = (): typeof import('./lcmaps/map-target') =>
  load('glexec-lcmaps.js', 'lcmaps/map-target') as typeof import('./lcmaps/map-target');
