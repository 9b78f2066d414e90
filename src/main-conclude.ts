/**
 * Entry point of a run's second phase (`--phase=conclude`, docs/architecture.md): its own bundle,
 * glexec-conclude.js, holding only what the stages after the payload use, so that this phase
 * neither reads nor evaluates the code of the first (proxy verification, mapping, config parsing).
 */
import { holdSignals } from './linger';

holdSignals();

import { runEntry } from './entry';
import { concludeRun } from './pipeline';

runEntry(concludeRun);
