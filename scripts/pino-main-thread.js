'use strict';
// Stands in for `worker_threads` where pino's lib/tools.js asks it for `isMainThread` (to register
// an exit flush for asynchronous destinations). glexec's bundle runs only on the main thread of its
// own process and starts no worker (its transports are left out, scripts/pino-no-transport.js), so
// the answer is always true, and node:worker_threads and what it loads stay unloaded (~0.5 ms).
exports.isMainThread = true;
