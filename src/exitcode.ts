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

/** The ending in a wait status as waitpid(2) gives it (the monitor's, for the payload). */
export function endingOfWaitStatus(status: number): Ending {
  const signal = status & 0x7f;
  if (signal === 0) return { code: (status >> 8) & 0xff };
  const name = Object.entries(constants.signals).find(([, number]) => number === signal)?.[0];
  return name === undefined ? { code: 128 + signal } : { signal: name as NodeJS.Signals };
}
