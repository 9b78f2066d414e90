'use strict';
// Stands in for `node:diagnostics_channel` in pino's lib/tools.js, which makes one tracing channel
// at load and traces each record through it only while the channel has subscribers. Nothing in
// glexec's process subscribes, so every record is written directly, as pino does without
// subscribers, and node:diagnostics_channel is not loaded at start-up (~0.15 ms).
exports.tracingChannel = function tracingChannel() {
  return { hasSubscribers: false };
};
