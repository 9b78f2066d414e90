'use strict';
// glexec's program as the shim runs it: loads its bundle (glexec-main.js) with V8's code cache,
// which saves compiling it at every start. The cache is written by glexec itself, as root, after
// the first full payload run (so it holds the code a run needs), to a temporary name and renamed
// into place; it is rewritten when V8 rejects it (e.g. a new node). Its name carries the
// bundle's SHA-256, because V8 checks a cache against the source's length only: a cache of
// another bundle is never even read. Only root can write this directory.
const { createHash } = require('node:crypto');
const { closeSync, constants, openSync, readFileSync, renameSync, rmSync, writeSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');
const { wrap } = require('node:module');

// A run's second phase has a bundle of its own (docs/architecture.md). The monitor fills the slot
// two before the shim's first "--", after which come the caller's arguments: no caller input
// reaches it.
const phase = process.argv[process.argv.indexOf('--', 2) - 2];
const name = phase === '--phase=conclude' ? 'glexec-conclude' : 'glexec-main';
const bundle = join(__dirname, `${name}.js`);
const source = readFileSync(bundle, 'utf8');
const cacheFile = join(__dirname, `${name}.${createHash('sha256').update(source).digest('hex').slice(0, 32)}.cache`);
let cachedData;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // No cache yet.
}
const script = new Script(wrap(source), { filename: bundle, cachedData });
if (cachedData === undefined || script.cachedDataRejected) {
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
    } catch {
      rmSync(temporary, { force: true });
    }
  });
}
script.runInThisContext()(exports, require, module, __filename, __dirname);
