'use strict';
// glexec's program as the shim runs it: loads its bundle (glexec-main.js) with V8's code cache,
// which saves compiling it at every start. The cache is written by glexec itself, as root, after
// the first full payload run (so it holds the code a run needs), to a temporary name and renamed
// into place; it is rewritten when V8 rejects it (e.g. a new node). Only root can write this
// directory.
// V8 checks a cache against the source's length only, so the cache's name says which bundle file
// it belongs to: the bundle's device, inode, size, mtime and ctime (nanoseconds), from fstat of the
// descriptor it is read from. Any write to the bundle (an install, an edit in place) changes its
// ctime, which no one can set back, so a cache of another bundle is never even read; the fstat
// costs nothing, where hashing the bundle (SHA-256) cost the load of node:crypto and a pass over it.
// A bundle that changed while it was read (ctime before and after differ) gets no cache.
const {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

// A run's second phase has a bundle of its own (docs/architecture.md). The monitor fills the slots
// --phase=, --plan-fd=, --done-fd= just before the shim's first "--", after which come the
// caller's arguments: no caller input reaches them.
const phase = process.argv[process.argv.indexOf('--', 2) - 3];
const bundleName = phase === '--phase=conclude' ? 'glexec-conclude' : 'glexec-main';
const bundle = join(__dirname, `${bundleName}.js`);
const bundleFd = openSync(bundle, constants.O_RDONLY | constants.O_NOFOLLOW);
const before = fstatSync(bundleFd, { bigint: true });
const source = readFileSync(bundleFd, 'utf8');
const after = fstatSync(bundleFd, { bigint: true });
closeSync(bundleFd);
const key = [before.dev, before.ino, before.size, before.mtimeNs, before.ctimeNs].map((n) => n.toString(16)).join('-');
const cacheFile = after.ctimeNs === before.ctimeNs ? join(__dirname, `${bundleName}.${key}.cache`) : undefined;
let cachedData;
try {
  if (cacheFile !== undefined) cachedData = readFileSync(cacheFile);
} catch {
  // No cache yet.
}
// The bundle's text is a CommonJS module in node:module's wrapper (Module.wrap), which the build
// wrote into the file (scripts/build.mjs): compiled as read, with no copy of it made here.
const script = new Script(source, {
  filename: bundle,
  cachedData,
});
if (cacheFile !== undefined && (cachedData === undefined || script.cachedDataRejected)) {
  process.once('exit', () => {
    if (globalThis[Symbol.for('glexec.completedRun')] !== true) return;
    const temporary = `${cacheFile}.${process.pid}`;
    try {
      const fd = openSync(
        temporary,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o644,
      );
      try {
        writeSync(fd, script.createCachedData());
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, cacheFile);
      // The caches of earlier bundles (or of this one before a chmod) will never be read again; the other phase's stays.
      for (const name of readdirSync(__dirname))
        if (name.startsWith(`${bundleName}.`) && name.endsWith('.cache') && join(__dirname, name) !== cacheFile)
          rmSync(join(__dirname, name), { force: true });
    } catch {
      rmSync(temporary, { force: true });
    }
  });
}
script.runInThisContext()(exports, require, module, __filename, __dirname);
