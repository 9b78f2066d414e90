/**
 * Whether a VOMS AC is believed, as the VOMS library under LCMAPS decides it: the AC names the
 * proxy's EEC as its holder, is within its validity, and is signed by a VOMS server that the
 * vomsdir vouches for: `<vomsdir>/<vo>/<host>.lsc` lists the DN chain of the certificate the AC
 * carries (checked up to a CA in the certdir), or, without an .lsc, the server's certificate
 * itself lies in the vomsdir. An AC that fails is dropped with its reason; the caller logs it and
 * the DN rules still apply. Every vomsdir file is read under the certdir's root-only rules.
 */
import { X509Certificate, verify as verifySignature } from 'node:crypto';
import { join } from 'node:path';

import { GlexecError, systemError } from '../errors';
import { escapeControl } from '../log/sanitize';
import { Tag, childrenOf, contextTag, readRoot } from '../proxy/der';
import { formatOneline, namesEqual, parseName } from '../proxy/dn';
import { type TrustedServerCertificate, verifyServerCertificate } from '../proxy/verify';
import { FileTooLarge, listDirectory, lstatPath, readCheckedFile } from '../sys/files';
import { type Lstat, requireTrustedPath } from '../trust';
import type { ParsedAc } from './ac';

const MAX_LSC_BYTES = 64 * 1024;
const MAX_VOMSDIR_CERTIFICATE_BYTES = 1024 * 1024;
const MAX_VOMSDIR_ENTRIES = 1024;
const ROOT_ONLY = { trustedUids: [], trustedGids: [] } as const;

/** An AC that passed, as the mapping uses it (its FQANs in the AC's order, the primary first). */
export type TrustedAc = Pick<ParsedAc, 'vo' | 'host' | 'fqans' | 'attributes' | 'notBefore' | 'notAfter'> & {
  readonly serverDn: string;
};

export interface DroppedAc {
  readonly vo: string;
  readonly host: string;
  readonly reason: string;
}

export interface AcJudgement {
  readonly trusted: readonly TrustedAc[];
  readonly dropped: readonly DroppedAc[];
}

export interface VomsTrustOptions {
  readonly vomsdir: string;
  readonly certdir: string;
  readonly now: Date;
  /** DER of the proxy's end-entity certificate, the ACs' holder. */
  readonly eecDer: Uint8Array;
  /** Tests present files under a temporary directory as root's. */
  readonly lstat?: Lstat;
}

class Untrusted extends Error {}

/** Signature algorithms of X.509 (RSA PKCS#1 v1.5, ECDSA) to the digest node:crypto takes. */
const DIGESTS: ReadonlyMap<string, string> = new Map([
  ['1.2.840.113549.1.1.5', 'sha1'],
  ['1.2.840.113549.1.1.11', 'sha256'],
  ['1.2.840.113549.1.1.12', 'sha384'],
  ['1.2.840.113549.1.1.13', 'sha512'],
  ['1.2.840.10045.4.1', 'sha1'],
  ['1.2.840.10045.4.3.2', 'sha256'],
  ['1.2.840.10045.4.3.3', 'sha384'],
  ['1.2.840.10045.4.3.4', 'sha512'],
]);

const serialOf = (hex: string): string => hex.toLowerCase().replace(/^0+(?=.)/, '');

function checkHolder(ac: ParsedAc, eec: X509Certificate): void {
  if (ac.holder === undefined) throw new Untrusted('it names no holder certificate (baseCertificateID)');
  if (serialOf(ac.holder.serialHex) !== serialOf(eec.serialNumber))
    throw new Untrusted(`its holder serial ${ac.holder.serialHex} is not the proxy's end-entity certificate's`);
  const [name, ...more] = ac.holder.names;
  if (name === undefined || more.length > 0 || name.byteLength === 0)
    throw new Untrusted('its holder is not one directory name');
  // As the VOMS library: the name may be the EEC's subject or its issuer.
  const holderName = parseName(name);
  const subject = parseName(nameDerOf(eec, 'subject'));
  const issuer = parseName(nameDerOf(eec, 'issuer'));
  if (!namesEqual(holderName, subject) && !namesEqual(holderName, issuer))
    throw new Untrusted(`its holder ${formatOneline(holderName)} is not the proxy's end-entity certificate`);
}

/** The DER of a certificate's issuer or subject name (node:crypto gives them only as text). */
function nameDerOf(x509: X509Certificate, which: 'subject' | 'issuer'): Uint8Array {
  const [tbs] = childrenOf(readRoot(new Uint8Array(x509.raw), Tag.sequence));
  if (tbs === undefined) throw new Untrusted('a certificate has no TBSCertificate');
  const fields = childrenOf(tbs);
  const first = fields[0]?.tag === contextTag(0, true) ? 1 : 0;
  // serialNumber, signature, issuer, validity, subject
  const name = fields[first + (which === 'issuer' ? 2 : 4)];
  if (name === undefined) throw new Untrusted('a certificate is too short');
  return name.bytes.subarray(name.start, name.end);
}

function checkValidity(ac: ParsedAc, now: Date): void {
  if (now.getTime() < ac.notBefore.getTime())
    throw new Untrusted(`it is not valid before ${ac.notBefore.toISOString()}`);
  if (now.getTime() > ac.notAfter.getTime()) throw new Untrusted(`it expired at ${ac.notAfter.toISOString()}`);
}

function signatureVerifies(ac: ParsedAc, certificate: X509Certificate): boolean {
  const digest = DIGESTS.get(ac.signatureAlgorithm);
  if (digest === undefined) throw new Untrusted(`its signature algorithm ${ac.signatureAlgorithm} is not supported`);
  try {
    return verifySignature(digest, ac.signedBytes, certificate.publicKey, ac.signature);
  } catch {
    return false;
  }
}

/** The trusted read of one vomsdir file; undefined when it does not exist. */
function readVomsdirFile(path: string, maxBytes: number, lstat: Lstat): Buffer | undefined {
  try {
    lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const checked = requireTrustedPath('vomsdir file', path, { ...ROOT_ONLY, finalType: 'file' }, lstat, 'voms.vomsdir');
  try {
    return readCheckedFile(path, checked, maxBytes);
  } catch (error) {
    const why = error instanceof FileTooLarge ? `larger than ${maxBytes} bytes` : (error as Error).message;
    throw systemError('voms.vomsdir', `vomsdir file ${escapeControl(path)} cannot be read: ${why}`, error);
  }
}

/** An .lsc file: DN chains (subject first, up to the root CA) separated by lines of dashes. */
export function parseLsc(text: string): string[][] {
  const chains: string[][] = [[]];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('-')) chains.push([]);
    else chains[chains.length - 1]?.push(line);
  }
  return chains.filter((chain) => chain.length > 0);
}

function verifyServer(der: Uint8Array, options: VomsTrustOptions): TrustedServerCertificate {
  try {
    return verifyServerCertificate(der, { certdir: options.certdir, now: options.now, lstat: options.lstat });
  } catch (error) {
    // A broken certdir is the site's problem (202); an unknown or expired signer only drops the AC.
    if (error instanceof GlexecError && error.exitCode !== 202) throw new Untrusted(error.message);
    throw error;
  }
}

/** The .lsc route: the AC's own certificate, vouched for by its DN chain. */
function signerByLsc(ac: ParsedAc, lsc: Buffer, lscPath: string, options: VomsTrustOptions): string {
  const [der] = ac.certificates;
  if (der === undefined) throw new Untrusted(`it carries no VOMS server certificate, which ${lscPath} needs`);
  const server = verifyServer(der, options);
  const chains = parseLsc(lsc.toString('latin1'));
  const vouched = chains.some(
    (chain) => chain.length === server.chainDns.length && chain.every((dn, i) => dn === server.chainDns[i]),
  );
  if (!vouched)
    throw new Untrusted(`its signer ${server.subjectDn} (issuer ${server.issuerDn}) is not listed in ${lscPath}`);
  if (!namesEqual(parseName(ac.issuerName), server.subject))
    throw new Untrusted(`its issuer ${formatOneline(parseName(ac.issuerName))} is not the certificate it carries`);
  if (!signatureVerifies(ac, server.x509))
    throw new Untrusted(`its signature does not verify with the certificate of ${server.subjectDn}`);
  return server.subjectDn;
}

/** Without an .lsc: a certificate in the vomsdir itself (checked up to the certdir) signed the AC. */
function signerInVomsdir(ac: ParsedAc, options: VomsTrustOptions, lstat: Lstat): string {
  let names: string[];
  try {
    names = listDirectory(options.vomsdir, MAX_VOMSDIR_ENTRIES);
  } catch (error) {
    throw systemError(
      'voms.vomsdir',
      `vomsdir ${escapeControl(options.vomsdir)} cannot be listed: ${(error as Error).message}`,
    );
  }
  const issuer = parseName(ac.issuerName);
  for (const name of names.sort()) {
    const path = join(options.vomsdir, name);
    if (!lstatPath(path).isFile()) continue;
    const text = readVomsdirFile(path, MAX_VOMSDIR_CERTIFICATE_BYTES, lstat)?.toString('latin1') ?? '';
    for (const block of text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)) {
      let candidate: X509Certificate;
      try {
        candidate = new X509Certificate(block[0]);
      } catch {
        continue;
      }
      const der = new Uint8Array(candidate.raw);
      if (!namesEqual(parseName(nameDerOf(candidate, 'subject')), issuer) || !signatureVerifies(ac, candidate))
        continue;
      return verifyServer(der, options).subjectDn;
    }
  }
  throw new Untrusted(
    `no ${ac.vo}/${ac.host}.lsc in ${options.vomsdir} vouches for its signer, and no certificate in the vomsdir signed it`,
  );
}

function judgeOne(ac: ParsedAc, eec: X509Certificate, options: VomsTrustOptions, lstat: Lstat): TrustedAc {
  if (ac.unknownCriticalExtensions.length > 0)
    throw new Untrusted(
      `it has a critical extension glexec does not process (${ac.unknownCriticalExtensions.join(', ')})`,
    );
  if (ac.hasTargets) throw new Untrusted('it is restricted to target hosts, which glexec does not check');
  checkHolder(ac, eec);
  checkValidity(ac, options.now);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(ac.vo) || !/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(ac.host))
    throw new Untrusted(`its VO '${ac.vo}' or host '${ac.host}' cannot name a vomsdir file`);
  // A VO's server vouches for its own VO only (the VOMS library refuses such an AC as malformed).
  const foreign = ac.fqans.find((fqan) => fqan !== `/${ac.vo}` && !fqan.startsWith(`/${ac.vo}/`));
  if (foreign !== undefined) throw new Untrusted(`its FQAN ${foreign} is not of its VO ${ac.vo}`);
  const lscPath = join(options.vomsdir, ac.vo, `${ac.host}.lsc`);
  const lsc = readVomsdirFile(lscPath, MAX_LSC_BYTES, lstat);
  const serverDn = lsc === undefined ? signerInVomsdir(ac, options, lstat) : signerByLsc(ac, lsc, lscPath, options);
  return {
    vo: ac.vo,
    host: ac.host,
    fqans: ac.fqans,
    attributes: ac.attributes,
    notBefore: ac.notBefore,
    notAfter: ac.notAfter,
    serverDn,
  };
}

/**
 * Each AC trusted or dropped with its reason. A vomsdir that others could change is a 202 (as an
 * untrusted certdir is); a missing vomsdir drops every AC.
 */
export function judgeAcs(acs: readonly ParsedAc[], options: VomsTrustOptions): AcJudgement {
  const lstat = options.lstat ?? lstatPath;
  const trusted: TrustedAc[] = [];
  const dropped: DroppedAc[] = [];
  let vomsdirMissing = false;
  try {
    lstat(options.vomsdir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    vomsdirMissing = true;
  }
  if (!vomsdirMissing)
    requireTrustedPath('vomsdir', options.vomsdir, { ...ROOT_ONLY, finalType: 'directory' }, lstat, 'voms.vomsdir');
  const eec = new X509Certificate(options.eecDer);
  for (const ac of acs) {
    try {
      if (vomsdirMissing) throw new Untrusted(`the vomsdir ${options.vomsdir} does not exist`);
      trusted.push(judgeOne(ac, eec, options, lstat));
    } catch (error) {
      if (!(error instanceof Untrusted)) throw error;
      dropped.push({ vo: ac.vo, host: ac.host, reason: error.message });
    }
  }
  return { trusted, dropped };
}

/** What `glexec --check` reports of a vomsdir: its VOs' .lsc files, and those that vouch for nothing. */
export interface VomsdirSummary {
  readonly lscFiles: readonly string[];
  readonly emptyLscFiles: readonly string[];
  readonly certificateFiles: number;
}

/**
 * Reads the vomsdir as a run would (root-only trust, the same caps): a 202 for a vomsdir or file
 * others could change, an ENOENT error when it does not exist.
 */
export function summarizeVomsdir(vomsdir: string, lstat: Lstat = lstatPath): VomsdirSummary {
  lstat(vomsdir);
  requireTrustedPath('vomsdir', vomsdir, { ...ROOT_ONLY, finalType: 'directory' }, lstat, 'voms.vomsdir');
  const lscFiles: string[] = [];
  const emptyLscFiles: string[] = [];
  let certificateFiles = 0;
  for (const name of listDirectory(vomsdir, MAX_VOMSDIR_ENTRIES).sort()) {
    const path = join(vomsdir, name);
    const st = lstat(path);
    if (st.isFile()) {
      const text = readVomsdirFile(path, MAX_VOMSDIR_CERTIFICATE_BYTES, lstat)?.toString('latin1') ?? '';
      if (text.includes('-----BEGIN CERTIFICATE-----')) certificateFiles++;
      continue;
    }
    if (!st.isDirectory()) continue;
    requireTrustedPath('vomsdir', path, { ...ROOT_ONLY, finalType: 'directory' }, lstat, 'voms.vomsdir');
    for (const file of listDirectory(path, MAX_VOMSDIR_ENTRIES)
      .filter((entry) => entry.endsWith('.lsc'))
      .sort()) {
      const lsc = join(path, file);
      const chains = parseLsc(readVomsdirFile(lsc, MAX_LSC_BYTES, lstat)?.toString('latin1') ?? '');
      (chains.some((chain) => chain.length >= 2) ? lscFiles : emptyLscFiles).push(`${name}/${file}`);
    }
  }
  return { lscFiles, emptyLscFiles, certificateFiles };
}
