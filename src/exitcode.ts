/** How a payload's ending becomes glexec's exit code. */
import { constants } from 'node:os';

export type Ending = { readonly code: number } | { readonly signal: NodeJS.Signals };

/** Its own code; 201..204 become 204 (they would read as glexec's own); a signal N is 128+N. */
export function exitCodeOf(ending: Ending): number {
  if ('signal' in ending) return 128 + (constants.signals[ending.signal] ?? 0);
  return ending.code >= 201 && ending.code <= 204 ? 204 : ending.code;
}

/** The payload's return code as the epilogue and the log see it (signal N → 128+N, unmapped). */
export function rawReturnCode(ending: Ending): number {
  return 'signal' in ending ? 128 + (constants.signals[ending.signal] ?? 0) : ending.code;
}
