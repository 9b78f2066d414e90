/**
 * The credentials the end-to-end tests use, made once per test file with the test PKI: a CA in
 * the test certdir, Jane Doe's user certificate, and proxy files owned by the pilot account.
 */
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Credential, installCa, makeCa, makeProxy, makeUserCert, type ProxyOptions, writeProxyFile } from './pki';
import type { TestSystem } from './system';

export const USER_DN = '/C=NL/O=Example/CN=Jane Doe';

export class TestPki {
  private constructor(
    private readonly system: TestSystem,
    private readonly ca: Credential,
    readonly userDn: string,
    /** RFC 3820 proxy of Jane Doe, owned by the pilot, mode 0600. */
    readonly pilotProxy: string,
    readonly legacyProxy: string,
    readonly expiredProxy: string,
    /** Jane Doe's own certificate and key: not a proxy. */
    readonly plainCertificate: string,
    /** A proxy whose CA is not in certdir. */
    readonly unknownCaProxy: string,
  ) {}

  static create(system: TestSystem): TestPki {
    const dir = join(system.root, 'pki');
    mkdirSync(dir, { mode: 0o700, recursive: true });
    const ca = makeCa(join(dir, 'ca'), { subject: '/C=NL/O=Example/CN=Example Test CA' });
    installCa(ca, system.certdir);
    const user = makeUserCert(ca, { subject: USER_DN });
    const rogueCa = makeCa(join(dir, 'rogue'), { subject: '/C=NL/O=Example/CN=Rogue CA' });
    const rogueUser = makeUserCert(rogueCa, { subject: USER_DN });

    const pilotFile = (name: string, write: (path: string) => void): string => {
      const path = join(system.scratch, name);
      write(path);
      chownSync(path, system.pilot.uid, system.pilot.gid);
      chmodSync(path, 0o600);
      return path;
    };
    return new TestPki(
      system,
      ca,
      USER_DN,
      pilotFile('proxy.pem', (path) => writeProxyFile(path, makeProxy(user, { kind: 'rfc3820' }))),
      pilotFile('legacy.pem', (path) => writeProxyFile(path, makeProxy(user, { kind: 'legacy' }))),
      pilotFile('expired.pem', (path) =>
        writeProxyFile(path, makeProxy(user, { kind: 'rfc3820', startOffsetHours: -48, hours: 12 })),
      ),
      pilotFile('usercert.pem', (path) => writeFileSync(path, user.certPem + user.keyPem)),
      pilotFile('rogue.pem', (path) => writeProxyFile(path, makeProxy(rogueUser, { kind: 'rfc3820' }))),
    );
  }

  /**
   * A new user certificate for `subject` from the test CA, and a proxy of it in a file owned by
   * the pilot (mode 0600). Returns the file's path.
   */
  proxyFor(
    name: string,
    subject: string,
    options: Omit<ProxyOptions, 'kind'> & { kind?: ProxyOptions['kind'] } = {},
  ): string {
    const user = makeUserCert(this.ca, { subject });
    const path = join(this.system.scratch, name);
    writeProxyFile(path, makeProxy(user, { kind: 'rfc3820', ...options }));
    chownSync(path, this.system.pilot.uid, this.system.pilot.gid);
    chmodSync(path, 0o600);
    return path;
  }

  /** A copy of the pilot's proxy with another owner or mode. */
  copyProxy(name: string, uid: number, mode: number): string {
    const path = join(this.system.scratch, name);
    writeFileSync(path, readFileSync(this.pilotProxy));
    chownSync(path, uid, 0);
    chmodSync(path, mode);
    return path;
  }

  /** Jane Doe maps to the test's payload account. */
  writeStandardGridMap(): void {
    this.system.writeGridMap(['# test grid-mapfile', `"${this.userDn}" ${this.system.target.name}`]);
  }
}
