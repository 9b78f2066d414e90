'use strict';
// Stands in for `./lib/multistream` in pino.js, which only exports it (pino.multistream; glexec
// never calls it): the module is evaluated at the first call, not at start-up. It is pino's own.
module.exports = function multistream(...args) {
  return require('pino/lib/multistream')(...args);
};
