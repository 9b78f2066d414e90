'use strict';
// Stands in for `on-exit-leak-free` in pino's lib/tools.js, which registers only an asynchronous
// sonic-boom destination of its own (glexec's log is a synchronous stream it gives pino): the
// package is evaluated at that first call, not at start-up. It is the package's own functions.
for (const name of ['register', 'registerBeforeExit', 'unregister'])
  exports[name] = function (...args) {
    return require('on-exit-leak-free')[name](...args);
  };
