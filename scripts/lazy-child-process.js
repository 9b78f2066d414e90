'use strict';
// Stands in for `node:child_process` in commander, which spawns only to run a subcommand that is
// a program of its own (glexec has none): node:child_process, with the node:net and node:stream it
// loads (~3 ms), is loaded at that first spawn, not at start-up. It is node:child_process's spawn.
exports.spawn = function spawn(...args) {
  return require('node:child_process').spawn(...args);
};
