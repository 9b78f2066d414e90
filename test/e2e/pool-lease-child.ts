/**
 * A separate process that leases one pool account, for pool.test.ts's concurrency tests. It is
 * forked with an IPC channel: it receives the lease request, says 'ready', waits for 'go' (so
 * all children lease at the same moment), leases, reports and exits. Run any other way (the test
 * runner picks up every file under test/), it does nothing.
 */
import { GlexecError } from '../../src/errors';
import { leasePoolAccount } from '../../src/mapping/pool';

export interface LeaseRequest {
  readonly gridmapdir: string;
  readonly pool: string;
  readonly dn: string;
  /** False when the test runs without root: the gridmapdir cannot be root-owned then. */
  readonly checkTrust: boolean;
}

export type LeaseReport =
  { readonly account: string } | { readonly code: string; readonly exitCode: number; readonly message: string };

if (process.send !== undefined) {
  let request: LeaseRequest | undefined;
  process.on('message', (message: LeaseRequest | 'go') => {
    if (message !== 'go') {
      request = message;
      process.send?.('ready');
      return;
    }
    if (request === undefined) throw new Error('go before the request');
    let report: LeaseReport;
    try {
      const options = request.checkTrust ? {} : { checkGridmapdir: () => undefined };
      report = { account: leasePoolAccount(request.gridmapdir, request.pool, request.dn, options) };
    } catch (error) {
      if (!(error instanceof GlexecError)) throw error;
      report = { code: error.code, exitCode: error.exitCode, message: error.message };
    }
    process.send?.(report, () => process.disconnect());
  });
}
