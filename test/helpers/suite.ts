/** The hooks every end-to-end suite shares: one throwaway install, reset before each test. */
import { after, before, beforeEach } from 'node:test';
import { TestPki } from './pki-fixtures';
import { TestSystem } from './system';

/**
 * Makes one install (accounts, test CA, proxies) for the suite and removes it after; before each
 * test, the standard glexec.conf and grid-mapfile, and (unless `keepLog`) an empty log.
 * `use` receives them once they exist.
 */
export function installForSuite(
  use: (system: TestSystem, pki: TestPki) => void,
  options: { keepLog?: boolean } = {},
): void {
  let system: TestSystem | undefined;
  let pki: TestPki | undefined;
  before(() => {
    system = TestSystem.create();
    pki = TestPki.create(system);
    use(system, pki);
  });
  after(() => system?.tearDown());
  beforeEach(() => {
    system?.writeConfig(system.standardConfig());
    pki?.writeStandardGridMap();
    if (options.keepLog !== true) system?.clearLog();
  });
}
