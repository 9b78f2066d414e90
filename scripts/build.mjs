// Builds everything: the TypeScript (type-checked) into build/, the bundles into build/dist/
// (glexec-main.js, glexec-conclude.js, the lazily loaded glexec-cli.js, glexec-check.js,
// glexec-lcmaps.js and glexec-voms.js) with their loader build/dist/glexec.js
// (bin/glexec.js, what the shim runs), the C programs into build/c/ (scripts/c-programs.mjs) and the man pages into build/man/.
// The shim itself is compiled at install time, because the paths it holds are chosen then.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { compile, programs } from './c-programs.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// A fresh build/: a test file moved or removed in the source leaves no compiled copy behind to run.
rmSync(join(root, 'build'), { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
mkdirSync(join(root, 'build/dist'), { recursive: true });

/** pino's lib/transport.js is replaced by scripts/pino-no-transport.js (see there why). */
const withoutPinoTransports = {
  name: 'glexec-without-pino-transports',
  setup(builder) {
    // pino.js requires './lib/transport', lib/tools.js requires './transport'.
    builder.onResolve({ filter: /^\.\/(lib\/)?transport$/ }, (args) =>
      /[\\/]node_modules[\\/]pino[\\/](pino\.js|lib[\\/]tools\.js)$/.test(args.importer)
        ? { path: join(root, 'scripts/pino-no-transport.js') }
        : undefined,
    );
  },
};
/**
 * What pino, sonic-boom and commander load at start-up but a run does not need, replaced by the
 * files named (see each file why): worker_threads for pino's isMainThread, assert for sonic-boom's
 * close, diagnostics_channel for pino's tracing, on-exit-leak-free and multistream for pino's own
 * destinations, child_process for commander's executable subcommands.
 */
const withoutUnusedBuiltins = {
  name: 'glexec-without-unused-builtins',
  setup(builder) {
    builder.onResolve({ filter: /^worker_threads$/ }, (args) =>
      /[\\/]node_modules[\\/]pino[\\/]lib[\\/]tools\.js$/.test(args.importer)
        ? { path: join(root, 'scripts/pino-main-thread.js') }
        : undefined,
    );
    builder.onResolve({ filter: /^assert$/ }, (args) =>
      /[\\/]node_modules[\\/]sonic-boom[\\/]index\.js$/.test(args.importer)
        ? { path: join(root, 'scripts/lazy-assert.js') }
        : undefined,
    );
    builder.onResolve({ filter: /^node:diagnostics_channel$/ }, (args) =>
      /[\\/]node_modules[\\/]pino[\\/]lib[\\/]tools\.js$/.test(args.importer)
        ? { path: join(root, 'scripts/pino-no-diagnostics.js') }
        : undefined,
    );
    builder.onResolve({ filter: /^on-exit-leak-free$/ }, (args) =>
      /[\\/]node_modules[\\/]pino[\\/]lib[\\/]tools\.js$/.test(args.importer)
        ? { path: join(root, 'scripts/lazy-on-exit.js') }
        : undefined,
    );
    builder.onResolve({ filter: /^\.\/lib\/multistream$/ }, (args) =>
      /[\\/]node_modules[\\/]pino[\\/]pino\.js$/.test(args.importer)
        ? { path: join(root, 'scripts/lazy-multistream.js') }
        : undefined,
    );
    builder.onResolve({ filter: /^node:child_process$/ }, (args) =>
      /[\\/]node_modules[\\/]commander[\\/]lib[\\/]command\.js$/.test(args.importer)
        ? { path: join(root, 'scripts/lazy-child-process.js') }
        : undefined,
    );
  },
};
/**
 * What glexec's own modules import, they import for its exports: a module none of whose exports a
 * bundle uses is left out of it whole (esbuild keeps a CommonJS package or a module with top-level
 * statements otherwise, e.g. commander and the config parser in the second phase's bundle).
 */
const RESOLVING = Symbol('resolving');
const importsWithoutSideEffects = {
  name: 'glexec-imports-without-side-effects',
  setup(builder) {
    builder.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData === RESOLVING || !args.importer.startsWith(join(root, 'src') + '/')) return undefined;
      const { errors, external, path } = await builder.resolve(args.path, {
        importer: args.importer,
        kind: args.kind,
        resolveDir: args.resolveDir,
        pluginData: RESOLVING,
      });
      return errors.length > 0 || external ? undefined : { path, sideEffects: false };
    });
  },
};
/** Around the two bundles bin/glexec.js compiles itself (the lazy ones are require()d as they are). */
const BUNDLE_WRAPPER_START = '(function (exports, require, module, __filename, __dirname) { ';
const BUNDLE_WRAPPER_END = '\n});';
// Two bundles of one code base: glexec-main.js (a run's first phase and every other mode) and
// glexec-conclude.js (a run's second phase, src/main-conclude.ts), which esbuild's tree shaking
// leaves without the first phase's modules; the loader picks one by the monitor's --phase slot.
// Then the parts of the first phase a normal run never executes, each a bundle of its own that
// src/lazy.ts loads by absolute path only when needed (what they share with glexec-main.js: see
// there): commander and the parse of options, --check, the lcmaps.db code. Their entries are
// loaded with require() by path, not imported, so none of them is in glexec-main.js.
const loaded = { byLoader: true, byRequire: false };
for (const [entry, bundle, plugins, byLoader] of [
  ['src/main.ts', 'glexec-main.js', [withoutPinoTransports, withoutUnusedBuiltins], loaded.byLoader],
  [
    'src/main-conclude.ts',
    'glexec-conclude.js',
    [withoutPinoTransports, withoutUnusedBuiltins, importsWithoutSideEffects],
    loaded.byLoader,
  ],
  ['src/cli-commander.ts', 'glexec-cli.js', [withoutUnusedBuiltins, importsWithoutSideEffects], loaded.byRequire],
  [
    'src/check.ts',
    'glexec-check.js',
    [withoutPinoTransports, withoutUnusedBuiltins, importsWithoutSideEffects],
    loaded.byRequire,
  ],
  [
    'src/lcmaps/map-target.ts',
    'glexec-lcmaps.js',
    [withoutPinoTransports, withoutUnusedBuiltins, importsWithoutSideEffects],
    loaded.byRequire,
  ],
]) {
  await build({
    entryPoints: [join(root, entry)],
    outfile: join(root, 'build/dist', bundle),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: true,
    legalComments: 'none',
    define: { GLEXEC_BUNDLED: 'true' },
    // The wrapper of node:module (Module.wrap), written into the file: the loader compiles the file's
    // text as it is read, where adding the wrapper at run time made V8 copy the whole bundle once more.
    ...(byLoader ? { banner: { js: BUNDLE_WRAPPER_START }, footer: { js: BUNDLE_WRAPPER_END } } : {}),
    // Never loaded in the bundle (the addon is required by absolute path there); keeps esbuild quiet.
    external: ['posix', 'posix/*'],
    plugins,
    logLevel: 'warning',
  });
}
// The VOMS AC parser and its ASN.1 libraries, a bundle of its own: only a proxy with VOMS
// attributes loads it (src/voms/load.ts), so other runs neither read nor compile it.
await build({
  entryPoints: [join(root, 'src/voms/ac.ts')],
  outfile: join(root, 'build/dist/glexec-voms.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  // The libraries' ES module builds: esbuild can then leave out the schemas the parser never uses,
  // which cut the bundle's evaluation from about 40 ms to 3 ms (docs/performance.md).
  mainFields: ['module', 'main'],
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
// The program the shim runs: a small loader that runs the bundle with V8's code cache.
copyFileSync(join(root, 'bin/glexec.js'), join(root, 'build/dist/glexec.js'));
mkdirSync(join(root, 'build/c'), { recursive: true });
for (const program of programs) compile(root, program, join(root, 'build/c', program.name));
execFileSync(process.execPath, [join(root, 'scripts/build-man.mjs')], { stdio: 'inherit' });
console.log('built build/, build/dist/glexec.js, build/c/ and build/man/');
