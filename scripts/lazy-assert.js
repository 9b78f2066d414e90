'use strict';
// Stands in for `assert` in sonic-boom (pino's file destination), which calls it only when the
// destination is closed: node:assert and what it loads (~0.8 ms) are loaded at that first call,
// not at start-up. It is node:assert itself, so it behaves exactly as sonic-boom expects.
module.exports = function assert(...args) {
  return require('node:assert')(...args);
};
