/**
 * Proxies with real VOMS attribute certificates, made by Debian's `voms-proxy-fake` (voms-clients)
 * at set-up: a test VOMS server certificate signed by the test CA signs the ACs. Nothing is stored.
 *
 *   const server = makeVomsServer(ca, 'voms.example.org');
 *   writeLsc(vomsdir, 'testvo', server);                  // vomsdir/testvo/voms.example.org.lsc
 *   const path = makeVomsProxy(user, server, certdir, { vo: 'testvo', fqans: ['/testvo'] }, out);
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Credential, makeUserCert, openssl } from './pki';
import { requireTools } from './tools';

export interface VomsServer {
  readonly host: string;
  readonly credential: Credential;
  /** The oneline subject and issuer DNs, as an .lsc file lists them. */
  readonly dn: string;
  readonly issuerDn: string;
}

/** A VOMS server's host certificate (RSA, as voms-proxy-fake needs) from `ca`. */
export function makeVomsServer(ca: Credential, host: string, subjectPrefix = '/C=NL/O=Example'): VomsServer {
  const credential = makeUserCert(ca, { subject: `${subjectPrefix}/CN=${host}`, keyType: 'rsa' });
  const oneline = (flag: string): string =>
    openssl(['x509', '-noout', flag, '-nameopt', 'compat', '-in', credential.certPath])
      .trim()
      .replace(/^(subject|issuer)=/, '');
  return { host, credential, dn: oneline('-subject'), issuerDn: oneline('-issuer') };
}

/** `<vomsdir>/<vo>/<host>.lsc` with the server's DN chain (root-owned, as glexec requires). */
export function writeLsc(vomsdir: string, vo: string, server: VomsServer, lines?: readonly string[]): string {
  mkdirSync(join(vomsdir, vo), { recursive: true, mode: 0o755 });
  const path = join(vomsdir, vo, `${server.host}.lsc`);
  writeFileSync(path, `${(lines ?? [server.dn, server.issuerDn]).join('\n')}\n`, { mode: 0o644 });
  return path;
}

export interface VomsProxyOptions {
  readonly vo: string;
  /** In order; the first is the primary FQAN. */
  readonly fqans: readonly string[];
  /** Start the AC's validity this many seconds in the past (with acHours, an expired AC). */
  readonly pastAcSeconds?: number;
  /** Hours the AC is valid (voms-proxy-fake -vomslife); default 12. */
  readonly acHours?: number;
  /** Generic attributes `name=value`. */
  readonly attributes?: readonly string[];
  /** `-target` hosts. */
  readonly targets?: readonly string[];
  readonly port?: number;
}

/**
 * An RFC 3820 proxy of `user` (which must be an RSA credential) carrying one AC signed by
 * `server`, written to `out` with its key, mode 0600. Returns `out`.
 */
export function makeVomsProxy(
  user: Credential,
  server: VomsServer,
  certdir: string,
  options: VomsProxyOptions,
  out: string,
): string {
  requireTools('voms-proxy-fake');
  const args = [
    '-q',
    '-rfc',
    '-bits',
    '2048',
    '-cert',
    user.certPath,
    '-key',
    user.keyPath,
    '-certdir',
    certdir,
    '-hostcert',
    server.credential.certPath,
    '-hostkey',
    server.credential.keyPath,
    '-voms',
    options.vo,
    '-uri',
    `${server.host}:${options.port ?? 15000}`,
    '-out',
    out,
    ...options.fqans.flatMap((fqan) => ['-fqan', fqan]),
    ...(options.pastAcSeconds === undefined ? [] : ['-pastac', String(options.pastAcSeconds)]),
    ...(options.acHours === undefined ? [] : ['-vomslife', String(options.acHours)]),
    ...(options.attributes ?? []).flatMap((attribute) => ['-ga', attribute]),
    ...(options.targets ?? []).flatMap((target) => ['-target', target]),
  ];
  chmodSync(user.keyPath, 0o600);
  chmodSync(server.credential.keyPath, 0o600);
  try {
    // voms-proxy-fake seeds OpenSSL's random state from $HOME/.rnd: a throwaway HOME keeps root's clean.
    execFileSync('voms-proxy-fake', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: user.dir },
    });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`voms-proxy-fake ${args.join(' ')} failed: ${stderr.trim()}`, { cause: error });
  }
  chmodSync(out, 0o600);
  return out;
}
