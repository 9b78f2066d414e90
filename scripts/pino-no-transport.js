'use strict';
// Stands in for pino's lib/transport.js in glexec's bundle. pino.transport() starts worker
// threads, which glexec never uses (no threads in the root process); leaving it out also leaves
// out what it loads at start-up (thread-stream, worker threads, assert, the ESM loader).
module.exports = function transport() {
  throw new Error('pino transports are not available in glexec');
};
