/**
 * Entry point of the program the setuid shim runs (as root, with all ids 0): a run's first phase,
 * and every other mode (-v, --check, a renewal). Its second phase has its own, smaller bundle
 * (main-conclude.ts).
 */
import { holdSignals } from './linger';

// First of all, so that no signal ends this phase half-way. (SIGUSR1 can no longer open Node's
// inspector before this: the shim gives Node an inspector address that never binds.)
holdSignals();

import { runEntry } from './entry';
import { dispatch } from './pipeline';

runEntry(dispatch);
