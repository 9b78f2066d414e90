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

/** Each signal number's first name in os.constants.signals (SIGABRT before SIGIOT), made at the first use. */
let signalNames: Map<number, NodeJS.Signals> | undefined;

function signalName(signal: number): NodeJS.Signals | undefined {
  if (signalNames === undefined) {
    signalNames = new Map();
    for (const [name, number] of Object.entries(constants.signals))
      if (!signalNames.has(number)) signalNames.set(number, name as NodeJS.Signals);
  }
  return signalNames.get(signal);
}

/** The ending in a wait status as waitpid(2) gives it (the monitor's, for the payload). */
export function endingOfWaitStatus(status: number): Ending {
  const signal = status & 0x7f;
  if (signal === 0) return { code: (status >> 8) & 0xff };
  const name = signalName(signal);
  return name === undefined ? { code: 128 + signal } : { signal: name };
}
