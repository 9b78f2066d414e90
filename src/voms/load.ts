/**
 * The VOMS attributes of a verified proxy: its ACs parsed (src/voms/ac.ts, which loads the ASN.1
 * libraries, so only for a proxy that carries the extension) and judged (src/voms/trust.ts).
 */
import { join } from 'node:path';
import { installedPath } from '../installed';

import type { VerifiedProxy } from '../proxy/verify';
import { type AcJudgement, judgeAcs } from './trust';

export interface VomsReadOptions {
  readonly vomsdir: string;
  readonly certdir: string;
  readonly now: Date;
}

/** Undefined when the proxy has no VOMS extension; an extension that cannot be parsed drops all. */
export function readVomsAttributes(proxy: VerifiedProxy, options: VomsReadOptions): AcJudgement | undefined {
  if (proxy.voms === undefined) return undefined;
  // Loaded here, not imported above: most runs never need the ASN.1 libraries (docs/performance.md).
  // Installed, it is glexec-voms.js next to the bundle, by absolute path (as posix.node).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { AcParseError, parseVomsExtension } = require(
    installedPath('glexec-voms.js', () => join(__dirname, 'ac')),
  ) as typeof import('./ac');
  let acs;
  try {
    acs = parseVomsExtension(proxy.voms.extension);
  } catch (error) {
    if (!(error instanceof AcParseError)) throw error;
    return { trusted: [], dropped: [{ vo: 'unknown', host: 'unknown', reason: error.message }] };
  }
  return judgeAcs(acs, { ...options, eecDer: proxy.voms.eecDer });
}
