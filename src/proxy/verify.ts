/**
 * Verifying a grid proxy file: the proxy chain (RFC 3820 or legacy Globus GT2 proxies), the
 * end-entity certificate (EEC) under it, and the CA path from the EEC up to a trust anchor in the
 * certificate directory. node:crypto's X509Certificate parses and checks signatures; der.ts reads
 * the fields it does not expose (extensions, raw names, validity).
 *
 * Order of checks: the file's syntax, then the private key, then trust (signatures, proxy rules,
 * CA path), then validity times. Validity comes last so that an "expired" message only ever names
 * certificates that are known to chain to a trusted CA.
 */

import { X509Certificate, type KeyObject, createPrivateKey } from 'node:crypto';
import { join } from 'node:path';

import { authorizationError, clientError, systemError } from '../errors';
import { escapeControl } from '../log/sanitize';
import { lstatPath, readCheckedFile, realPath } from '../sys/files';
import { type Lstat, requireTrustedPath } from '../trust';
import {
  DerError,
  type DerElement,
  Tag,
  childrenOf,
  contentOf,
  contextTag,
  decodeBitString,
  decodeBoolean,
  decodeOid,
  decodeSmallUnsignedInteger,
  decodeTime,
  expectTag,
  readRoot,
} from './der';
import {
  COMMON_NAME_OID,
  type X509Name,
  formatOneline,
  nameHash,
  namesEqual,
  parseNameElement,
  withoutLastRdn,
} from './dn';

export interface VerifiedProxy {
  /** Oneline DN of the first non-proxy (end-entity) certificate. */
  identityDn: string;
  /** Oneline DN of the proxy (first certificate). */
  proxyDn: string;
  /** Oneline DN of the EEC's issuer (CA). */
  issuerDn: string;
  /** Certificates in the file. */
  chainLength: number;
  /** Number of proxy certificates above the EEC. */
  proxyDepth: number;
  /** Any proxy in the chain is limited (legacy `CN=limited proxy` or the RFC 3820 limited policy). */
  limited: boolean;
  kind: 'rfc3820' | 'legacy';
  /** Earliest notAfter of the verified path, trust anchor included. */
  notAfter: Date;
  /** The leaf proxy (the first certificate) is limited. */
  leafLimited: boolean;
  /** Validity of each proxy: the first delegation after the EEC (LCMAPS level 0) first, the leaf last. */
  proxyValidity: { notBefore: Date; notAfter: Date }[];
  /** The file holds a private key. */
  hasPrivateKey: boolean;
  /**
   * The VOMS extension's value (src/voms/) of the proxy nearest the leaf that carries one, with
   * the DER of the EEC, which the ACs must name as their holder.
   */
  voms?: { readonly extension: Uint8Array; readonly eecDer: Uint8Array };
}

export interface VerifyOptions {
  /** Directory of trusted CA certificates, named `<subject hash>.<n>`. */
  certdir: string;
  /**
   * The stat used for the certdir's trust walk. Only tests pass one (to present files under a
   * temporary directory as root's); glexec uses lstat.
   */
  lstat?: Lstat;
  now: Date;
  requirePrivateKey: boolean;
}

/** Longer than any proxy file seen in practice (a few KiB, a VOMS proxy some 10 KiB). */
const MAX_PROXY_TEXT_LENGTH = 1024 * 1024;
/** Certificates in the proxy file. */
const MAX_CERTIFICATES_IN_FILE = 16;
/** PEM blocks of any kind in one file: refuses a flood of tiny blocks early. */
const MAX_PEM_BLOCKS = 64;
/** Certificates on the path from the proxy to the anchor, anchor excluded. */
const MAX_PATH_LENGTH = 10;
/** `<hash>.0` … `<hash>.15`: hash collisions plus CA key roll-overs, with room to spare. */
const MAX_ANCHOR_FILES_PER_HASH = 16;
const MAX_ANCHOR_FILE_BYTES = 1024 * 1024;

const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  proxyCertInfo: '1.3.6.1.5.5.7.1.14',
  /** The pre-RFC (Globus GT3 draft) proxyCertInfo; such proxies are not supported. */
  draftProxyCertInfo: '1.3.6.1.4.1.3536.1.222',
  policyInheritAll: '1.3.6.1.5.5.7.21.1',
  policyIndependent: '1.3.6.1.5.5.7.21.2',
  policyLimited: '1.3.6.1.4.1.3536.1.1.1.9',
  /** VOMS attribute certificates (parsed by src/voms/ac.ts only when present). */
  vomsAttributeCertificates: '1.3.6.1.4.1.8005.100.100.5',
} as const;

/**
 * Critical extensions we accept. The ones not listed as handled above carry no trust decision
 * here (names, key identifiers, revocation pointers, policies); anything else that is critical,
 * notably nameConstraints, refuses the certificate, as RFC 5280 §4.2 requires of a verifier
 * that does not process it.
 */
const ACCEPTED_CRITICAL_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.basicConstraints,
  OID.keyUsage,
  OID.proxyCertInfo,
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.17', // subjectAltName
  '2.5.29.18', // issuerAltName
  '2.5.29.37', // extKeyUsage
  '2.5.29.31', // cRLDistributionPoints
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
  '2.5.29.32', // certificatePolicies
  '2.5.29.36', // policyConstraints
  '2.5.29.54', // inhibitAnyPolicy
  '2.16.840.1.113730.1.1', // Netscape certificate type
]);

/** keyUsage bit numbers (RFC 5280 §4.2.1.3). */
const KeyUsageBit = { digitalSignature: 0, keyCertSign: 5 } as const;

const PRIVATE_KEY_LABELS: ReadonlySet<string> = new Set([
  'RSA PRIVATE KEY',
  'PRIVATE KEY',
  'EC PRIVATE KEY',
  'ENCRYPTED PRIVATE KEY',
]);

interface ProxyCertInfo {
  readonly critical: boolean;
  readonly pathLength: number | undefined;
  readonly policyLanguage: string;
}

interface Certificate {
  readonly x509: X509Certificate;
  readonly subject: X509Name;
  readonly issuer: X509Name;
  /** Oneline forms, made on demand (for the result and for messages). */
  readonly subjectDn: string;
  readonly issuerDn: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly basicConstraints: { readonly ca: boolean; readonly pathLength: number | undefined } | undefined;
  /** The keyUsage bits, or undefined when the extension is absent (every use allowed). */
  readonly keyUsage: ((bit: number) => boolean) | undefined;
  readonly proxyCertInfo: ProxyCertInfo | undefined;
  readonly unacceptedCriticalExtensions: readonly string[];
  /** The content of the VOMS extension's OCTET STRING, undecoded. */
  readonly vomsExtension: Uint8Array | undefined;
}

type ProxyKind = VerifiedProxy['kind'];

interface ProxyLink {
  readonly certificate: Certificate;
  readonly kind: ProxyKind;
  readonly limited: boolean;
}

interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
  readonly encrypted: boolean;
}

export function verifyProxyChain(pem: string, opts: VerifyOptions): VerifiedProxy {
  const { now, requirePrivateKey } = opts;
  const certdir: Certdir = { path: opts.certdir, lstat: opts.lstat ?? lstatPath };
  // An Invalid Date compares false both ways and would let every validity check pass.
  if (Number.isNaN(now.getTime())) throw systemError('proxy.clock', 'the current time is not a valid date');
  checkCertdir(certdir);
  const blocks = parsePem(pem);
  const certificates = parseFileCertificates(blocks);
  const leaf = certificates[0] as Certificate;
  if (requirePrivateKey) checkPrivateKey(blocks, leaf);

  const proxies = verifyProxyLinks(certificates);
  const eec = certificates[proxies.length] as Certificate;
  checkEndEntity(eec);
  const caPath = verifyCaPath(certificates, proxies.length, certdir, now);
  const path = [...proxies.map((link) => link.certificate), eec, ...caPath];
  for (const certificate of path) checkCriticalExtensions(certificate);
  checkValidity(path, proxies.length, now);

  return {
    identityDn: eec.subjectDn,
    proxyDn: leaf.subjectDn,
    issuerDn: eec.issuerDn,
    chainLength: certificates.length,
    proxyDepth: proxies.length,
    limited: proxies.some((link) => link.limited),
    kind: (proxies[0] as ProxyLink).kind,
    notAfter: new Date(Math.min(...path.map((certificate) => certificate.notAfter.getTime()))),
    leafLimited: (proxies[0] as ProxyLink).limited,
    proxyValidity: [...proxies]
      .reverse()
      .map(({ certificate }) => ({ notBefore: certificate.notBefore, notAfter: certificate.notAfter })),
    hasPrivateKey: blocks.some((block) => PRIVATE_KEY_LABELS.has(block.label)),
    ...vomsOf(proxies, eec),
  };
}

function vomsOf(proxies: readonly ProxyLink[], eec: Certificate): Pick<VerifiedProxy, 'voms'> {
  const extension = proxies.find((link) => link.certificate.vomsExtension !== undefined)?.certificate.vomsExtension;
  return extension === undefined ? {} : { voms: { extension, eecDer: new Uint8Array(eec.x509.raw) } };
}

/** A certificate that verify.ts checked up to a trust anchor of the certdir. */
export interface TrustedServerCertificate {
  readonly x509: X509Certificate;
  readonly subject: X509Name;
  readonly issuer: X509Name;
  readonly subjectDn: string;
  readonly issuerDn: string;
  /** Subject DNs from the certificate up to the anchor, as an .lsc file lists them. */
  readonly chainDns: readonly string[];
}

/**
 * A server's certificate (a VOMS server's, from its AC) verified as the EEC of a proxy is: a CA
 * path to the certdir, every certificate valid at `now`, no critical extension left unprocessed.
 * Throws a GlexecError saying why not.
 */
export function verifyServerCertificate(
  der: Uint8Array,
  opts: Pick<VerifyOptions, 'certdir' | 'lstat' | 'now'>,
): TrustedServerCertificate {
  const certdir: Certdir = { path: opts.certdir, lstat: opts.lstat ?? lstatPath };
  checkCertdir(certdir);
  const certificate = parseCertificate(Buffer.from(der));
  if (certificate === undefined) throw clientError('voms.server_certificate', 'the certificate cannot be parsed');
  const path = [certificate, ...verifyCaPath([certificate], 0, certdir, opts.now)];
  for (const member of path) checkCriticalExtensions(member);
  checkValidity(path, 0, opts.now);
  return Object.assign(certificate, { chainDns: path.map((member) => member.subjectDn) });
}

// ---------------------------------------------------------------------------------------------
// The file

/** The trust anchors are only as good as the directory: only root may be able to change it. */
interface Certdir {
  readonly path: string;
  readonly lstat: Lstat;
}

function checkCertdir(certdir: Certdir): void {
  requireTrustedPath(
    'certificate directory',
    certdir.path,
    { trustedUids: [], trustedGids: [], finalType: 'directory' },
    certdir.lstat,
    'proxy.certdir',
  );
}

/**
 * Splits PEM text into blocks (indexOf scanning: linear time on hostile input). Text outside
 * blocks is ignored, as OpenSSL does; inside a block only base64 and whitespace are allowed,
 * apart from the RFC 1421 headers of a legacy encrypted key, which are noted.
 */
function parsePem(text: string, describe = 'the proxy file'): PemBlock[] {
  const malformed = (why: string): never => {
    throw clientError('proxy.malformed', `${describe} is not valid PEM: ${why}`);
  };
  if (text.length > MAX_PROXY_TEXT_LENGTH) malformed(`it is longer than ${MAX_PROXY_TEXT_LENGTH} characters`);
  const blocks: PemBlock[] = [];
  for (let position = 0; ;) {
    const begin = text.indexOf('-----BEGIN ', position);
    const end = text.indexOf('-----END ', position);
    if (end !== -1 && (begin === -1 || end < begin)) malformed('an END line without BEGIN');
    if (begin === -1) return blocks;
    const lineEnd = text.indexOf('\n', begin);
    const beginLine = /^-----BEGIN ([A-Z0-9 ]{1,40})-----\s*$/.exec(
      text.slice(begin, lineEnd === -1 ? undefined : lineEnd),
    );
    if (beginLine === null || lineEnd === -1 || end === -1) return malformed('a BEGIN line without a block');
    const label = beginLine[1] as string;
    if (blocks.length === MAX_PEM_BLOCKS) malformed(`it holds more than ${MAX_PEM_BLOCKS} PEM blocks`);
    const endLine = `-----END ${label}-----`;
    if (!text.startsWith(endLine, end)) malformed(`the ${label} block is not closed by its END line`);
    let body = text.slice(lineEnd + 1, end);
    if (body.includes('-----')) malformed(`the ${label} block holds another BEGIN line`);
    // RFC 1421 headers ("Proc-Type: 4,ENCRYPTED", "DEK-Info: ...") only appear on encrypted keys.
    const encrypted = /^Proc-Type:.*ENCRYPTED/m.test(body);
    if (body.includes(':'))
      body = body
        .split('\n')
        .filter((line) => !line.includes(':'))
        .join('');
    blocks.push({ label, der: decodeBase64(body.replace(/\s+/g, ''), label, malformed), encrypted });
    position = end + endLine.length;
  }
}

function decodeBase64(body: string, label: string, malformed: (why: string) => never): Buffer {
  if (body.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(body))
    return malformed(`the ${label} block is not base64`);
  const der = Buffer.from(body, 'base64');
  if (der.length === 0) return malformed(`the ${label} block is empty`);
  return der;
}

function parseFileCertificates(blocks: readonly PemBlock[]): Certificate[] {
  for (const block of blocks) {
    if (block.label !== 'CERTIFICATE' && !PRIVATE_KEY_LABELS.has(block.label)) {
      throw clientError('proxy.malformed', `the proxy file holds an unexpected PEM block: ${block.label}`);
    }
  }
  const certificateBlocks = blocks.filter((block) => block.label === 'CERTIFICATE');
  if (certificateBlocks.length === 0) throw clientError('proxy.no_certificate', 'the proxy file holds no certificate');
  if (certificateBlocks.length > MAX_CERTIFICATES_IN_FILE) {
    throw clientError(
      'proxy.malformed',
      `the proxy file holds ${certificateBlocks.length} certificates; at most ${MAX_CERTIFICATES_IN_FILE} are accepted`,
    );
  }
  return certificateBlocks.map((block, index) => {
    const certificate = parseCertificate(block.der);
    if (certificate === undefined) {
      throw clientError('proxy.malformed', `certificate ${index + 1} in the proxy file cannot be parsed`);
    }
    return certificate;
  });
}

function checkPrivateKey(blocks: readonly PemBlock[], leaf: Certificate): void {
  const keyBlocks = blocks.filter((block) => PRIVATE_KEY_LABELS.has(block.label));
  if (keyBlocks.length === 0) {
    throw clientError(
      'proxy.no_private_key',
      `the proxy file holds no private key for proxy certificate ${leaf.subjectDn}`,
    );
  }
  if (keyBlocks.length > 1) {
    throw clientError(
      'proxy.multiple_private_keys',
      `the proxy file holds ${keyBlocks.length} private keys; it must hold one`,
    );
  }
  const block = keyBlocks[0] as PemBlock;
  if (block.encrypted || block.label === 'ENCRYPTED PRIVATE KEY') {
    throw clientError('proxy.encrypted_key', 'the private key in the proxy file is encrypted; a proxy key must not be');
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey({ key: toPem(block), format: 'pem' });
  } catch (error) {
    throw clientError('proxy.malformed', `the private key (${block.label}) in the proxy file cannot be read`, error);
  }
  // X509_check_private_key: the certificate's public key equals the key's public half.
  if (!leaf.x509.checkPrivateKey(privateKey)) {
    throw clientError(
      'proxy.key_mismatch',
      `the private key in the proxy file does not belong to proxy certificate ${leaf.subjectDn}`,
    );
  }
}

function toPem(block: PemBlock): string {
  const lines = block.der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${block.label}-----\n${lines.join('\n')}\n-----END ${block.label}-----\n`;
}

// ---------------------------------------------------------------------------------------------
// Certificates

/** Undefined when OpenSSL or our reader cannot parse the DER. */
function parseCertificate(der: Buffer): Certificate | undefined {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch {
    return undefined;
  }
  let fields: TbsFields;
  try {
    fields = parseTbsCertificate(der);
  } catch (error) {
    if (error instanceof DerError) return undefined;
    throw error;
  }
  return {
    x509,
    ...fields,
    get subjectDn() {
      return formatOneline(fields.subject);
    },
    get issuerDn() {
      return formatOneline(fields.issuer);
    },
  };
}

type TbsFields = Omit<Certificate, 'x509' | 'subjectDn' | 'issuerDn'>;

function parseTbsCertificate(der: Buffer): TbsFields {
  const [tbsElement] = childrenOf(readRoot(der, Tag.sequence));
  if (tbsElement === undefined) throw new DerError('empty certificate');
  const fields = childrenOf(expectTag(tbsElement, Tag.sequence));
  let next = 0;
  const take = (): DerElement => {
    const element = fields[next++];
    if (element === undefined) throw new DerError('TBSCertificate is too short');
    return element;
  };
  if (fields[0]?.tag === contextTag(0, true)) next++; // version
  expectTag(take(), Tag.integer); // serialNumber
  expectTag(take(), Tag.sequence); // signature algorithm
  const issuer = parseNameElement(take());
  const validity = childrenOf(expectTag(take(), Tag.sequence));
  const subject = parseNameElement(take());
  expectTag(take(), Tag.sequence); // subjectPublicKeyInfo
  let extensionsElement: DerElement | undefined;
  for (const element of fields.slice(next)) {
    if (element.tag === contextTag(3, true)) extensionsElement = element;
  }
  const [notBeforeElement, notAfterElement] = validity;
  if (validity.length !== 2 || notBeforeElement === undefined || notAfterElement === undefined) {
    throw new DerError('bad validity');
  }
  return {
    subject,
    issuer,
    notBefore: decodeTime(notBeforeElement),
    notAfter: decodeTime(notAfterElement),
    ...parseExtensions(extensionsElement),
  };
}

type ExtensionFields = Pick<
  TbsFields,
  'basicConstraints' | 'keyUsage' | 'proxyCertInfo' | 'unacceptedCriticalExtensions' | 'vomsExtension'
>;

function parseExtensions(wrapper: DerElement | undefined): ExtensionFields {
  const result: {
    -readonly [K in keyof ExtensionFields]: ExtensionFields[K];
  } = {
    basicConstraints: undefined,
    keyUsage: undefined,
    proxyCertInfo: undefined,
    unacceptedCriticalExtensions: [],
    vomsExtension: undefined,
  };
  if (wrapper === undefined) return result;
  const [list, ...extra] = childrenOf(wrapper);
  if (list === undefined || extra.length > 0) throw new DerError('bad extensions wrapper');
  const seen = new Set<string>();
  const unaccepted: string[] = [];
  for (const extension of childrenOf(expectTag(list, Tag.sequence))) {
    const parts = childrenOf(expectTag(extension, Tag.sequence));
    const [oidElement, second, third] = parts;
    if (oidElement === undefined || second === undefined) throw new DerError('short extension');
    const oid = decodeOid(oidElement);
    const critical = parts.length === 3 ? decodeBoolean(second) : false;
    const valueElement = parts.length === 3 ? third : second;
    if (valueElement === undefined || parts.length > 3) throw new DerError('bad extension');
    // RFC 5280 §4.2: at most one instance of an extension; two could say different things.
    if (seen.has(oid)) throw new DerError(`duplicate extension ${oid}`);
    seen.add(oid);
    // Only the extensions we act on are decoded; others (a VOMS attribute certificate, say) are skipped.
    const value = (): DerElement => readRoot(contentOf(expectTag(valueElement, Tag.octetString)));
    switch (oid) {
      case OID.basicConstraints:
        result.basicConstraints = parseBasicConstraints(value());
        break;
      case OID.keyUsage:
        result.keyUsage = parseKeyUsage(value());
        break;
      case OID.proxyCertInfo:
        result.proxyCertInfo = { critical, ...parseProxyCertInfo(value()) };
        break;
      case OID.vomsAttributeCertificates:
        result.vomsExtension = contentOf(expectTag(valueElement, Tag.octetString));
        break;
    }
    if (critical && !ACCEPTED_CRITICAL_EXTENSIONS.has(oid)) unaccepted.push(oid);
  }
  result.unacceptedCriticalExtensions = unaccepted;
  return result;
}

/** BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL } */
function parseBasicConstraints(value: DerElement): { ca: boolean; pathLength: number | undefined } {
  const parts = childrenOf(expectTag(value, Tag.sequence));
  const caElement = parts[0]?.tag === Tag.boolean ? parts.shift() : undefined;
  const pathLengthElement = parts.shift();
  if (parts.length > 0) throw new DerError('bad basicConstraints');
  return {
    ca: caElement === undefined ? false : decodeBoolean(caElement),
    pathLength: pathLengthElement === undefined ? undefined : decodeSmallUnsignedInteger(pathLengthElement),
  };
}

function parseKeyUsage(value: DerElement): (bit: number) => boolean {
  const { bits } = decodeBitString(value);
  return (bit) => (((bits[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) === 1;
}

/** ProxyCertInfo ::= SEQUENCE { pCPathLenConstraint INTEGER OPTIONAL, proxyPolicy SEQUENCE { policyLanguage OID, policy OCTET STRING OPTIONAL } } */
function parseProxyCertInfo(value: DerElement): Omit<ProxyCertInfo, 'critical'> {
  const parts = childrenOf(expectTag(value, Tag.sequence));
  let pathLength: number | undefined;
  let policyElement = parts[0];
  if (policyElement?.tag === Tag.integer) {
    pathLength = decodeSmallUnsignedInteger(policyElement);
    policyElement = parts[1];
  }
  if (policyElement === undefined || parts.length > (pathLength === undefined ? 1 : 2)) {
    throw new DerError('bad proxyCertInfo');
  }
  const [languageElement] = childrenOf(expectTag(policyElement, Tag.sequence));
  if (languageElement === undefined) throw new DerError('proxyPolicy without a language');
  return { pathLength, policyLanguage: decodeOid(languageElement) };
}

// ---------------------------------------------------------------------------------------------
// Proxies

/** What a certificate looks like: a proxy of its issuer (and of which kind), or not a proxy. */
function classifyProxy(certificate: Certificate): { kind: ProxyKind; limited: boolean } | undefined {
  const info = certificate.proxyCertInfo;
  if (info !== undefined) return { kind: 'rfc3820', limited: info.policyLanguage === OID.policyLimited };
  // GT2 proxies are recognised by their subject alone: the issuer's subject plus CN=proxy.
  const lastValue = proxyCommonName(certificate);
  if (lastValue !== 'proxy' && lastValue !== 'limited proxy') return undefined;
  if (!subjectExtendsIssuer(certificate)) return undefined;
  return { kind: 'legacy', limited: lastValue === 'limited proxy' };
}

/** The value of the last RDN if it is a single CN attribute. */
function proxyCommonName(certificate: Certificate): string | undefined {
  const last = certificate.subject.rdns.at(-1);
  const attribute = last?.[0];
  if (last === undefined || last.length !== 1 || attribute === undefined || attribute.oid !== COMMON_NAME_OID)
    return undefined;
  return Buffer.from(attribute.value).toString('latin1');
}

/** Subject = the certificate's issuer name + one more RDN (compared as OpenSSL does, canonically). */
function subjectExtendsIssuer(certificate: Certificate): boolean {
  return certificate.subject.rdns.length >= 2 && namesEqual(withoutLastRdn(certificate.subject), certificate.issuer);
}

/** Walks the proxies from certificates[0] down to the first non-proxy, checking each link. */
function verifyProxyLinks(certificates: readonly Certificate[]): ProxyLink[] {
  const leaf = certificates[0] as Certificate;
  if (classifyProxy(leaf) === undefined) {
    const draft = leaf.unacceptedCriticalExtensions.includes(OID.draftProxyCertInfo)
      ? ' (pre-RFC 3820 draft proxies are not supported)'
      : '';
    throw authorizationError('proxy.not_a_proxy', `certificate ${leaf.subjectDn} is not a proxy certificate${draft}`);
  }
  const links: ProxyLink[] = [];
  for (let index = 0; ; index++) {
    const certificate = certificates[index];
    if (certificate === undefined) break;
    const classified = classifyProxy(certificate);
    if (classified === undefined) break;
    if (links.length >= MAX_PATH_LENGTH) {
      throw authorizationError('proxy.path_length', `the proxy chain is longer than ${MAX_PATH_LENGTH} certificates`);
    }
    const link = { certificate, ...classified };
    const previous = links.at(-1);
    if (previous !== undefined && previous.kind !== link.kind) {
      throw authorizationError(
        'proxy.mixed_kinds',
        `proxy certificate ${previous.certificate.subjectDn} is ${describeKind(previous.kind)}, but its issuer ${certificate.subjectDn} is ${describeKind(link.kind)}`,
      );
    }
    checkProxyRules(link);
    if (previous !== undefined) checkLimitedInheritance(link, previous);
    const issuer = certificates[index + 1];
    if (issuer === undefined) {
      throw authorizationError(
        'proxy.incomplete_chain',
        `the proxy file ends at proxy certificate ${certificate.subjectDn}; its issuer ${certificate.issuerDn} is missing`,
      );
    }
    checkIssuedBy(certificate, issuer, 'proxy');
    if (issuer.keyUsage !== undefined && !issuer.keyUsage(KeyUsageBit.digitalSignature)) {
      throw authorizationError(
        'proxy.key_usage',
        `certificate ${issuer.subjectDn} may not sign proxies: its keyUsage lacks digitalSignature`,
      );
    }
    links.push(link);
  }
  checkProxyPathLengths(links);
  return links;
}

const describeKind = (kind: ProxyKind): string => (kind === 'rfc3820' ? 'an RFC 3820 proxy' : 'a legacy (GT2) proxy');

function checkProxyRules({ certificate, kind }: ProxyLink): void {
  const dn = certificate.subjectDn;
  const invalid = (why: string): never => {
    throw authorizationError('proxy.invalid_proxy', `proxy certificate ${dn} ${why}`);
  };
  const info = certificate.proxyCertInfo;
  if (kind === 'rfc3820' && info !== undefined) {
    if (!info.critical) invalid('has a proxyCertInfo extension that is not critical');
    if (info.policyLanguage === OID.policyIndependent) {
      throw authorizationError(
        'proxy.independent',
        `proxy certificate ${dn} is an independent proxy, which is not accepted`,
      );
    }
    if (info.policyLanguage !== OID.policyInheritAll && info.policyLanguage !== OID.policyLimited) {
      throw authorizationError(
        'proxy.unsupported_policy',
        `proxy certificate ${dn} has an unsupported proxy policy ${info.policyLanguage}`,
      );
    }
    if (proxyCommonName(certificate) === undefined || !subjectExtendsIssuer(certificate)) {
      invalid("does not have its issuer's subject plus one CN as its subject");
    }
  }
  if (certificate.basicConstraints?.ca === true) invalid('is marked as a CA');
  if (certificate.keyUsage?.(KeyUsageBit.keyCertSign) === true) invalid('has keyCertSign in its keyUsage');
}

/** A limited proxy may only sign limited proxies (rights never widen down the chain). */
function checkLimitedInheritance(issuerLink: ProxyLink, link: ProxyLink): void {
  if (issuerLink.limited && !link.limited) {
    throw authorizationError(
      'proxy.limited_signs_unlimited',
      `proxy certificate ${link.certificate.subjectDn} is not limited, but its issuer ${issuerLink.certificate.subjectDn} is a limited proxy`,
    );
  }
}

/** pcPathLenConstraint N: at most N proxies made from this one. links[0] is the leaf. */
function checkProxyPathLengths(links: readonly ProxyLink[]): void {
  links.forEach((link, proxiesMadeFromIt) => {
    const allowed = link.certificate.proxyCertInfo?.pathLength;
    if (allowed !== undefined && proxiesMadeFromIt > allowed) {
      throw authorizationError(
        'proxy.path_length',
        `proxy certificate ${link.certificate.subjectDn} allows ${allowed} more proxies to be made from it, but ${proxiesMadeFromIt} were`,
      );
    }
  });
}

/** Name chaining and signature. `role` names the subject certificate in messages. */
function checkIssuedBy(certificate: Certificate, issuer: Certificate, role: string): void {
  if (!namesEqual(certificate.issuer, issuer.subject)) {
    throw authorizationError(
      'proxy.incomplete_chain',
      `${role} certificate ${certificate.subjectDn} was issued by ${certificate.issuerDn}, but the next certificate in the proxy file is ${issuer.subjectDn}`,
    );
  }
  if (!signedBy(certificate, issuer)) {
    throw authorizationError(
      'proxy.bad_signature',
      `the signature of ${role} certificate ${certificate.subjectDn} does not verify with the key of ${issuer.subjectDn}`,
    );
  }
}

function signedBy(certificate: Certificate, issuer: Certificate): boolean {
  try {
    return certificate.x509.verify(issuer.x509.publicKey);
  } catch {
    return false; // an issuer key OpenSSL cannot use for this signature
  }
}

// ---------------------------------------------------------------------------------------------
// The end-entity certificate and its CA path

function checkEndEntity(eec: Certificate): void {
  if (eec.basicConstraints?.ca === true) {
    throw authorizationError(
      'proxy.eec_is_ca',
      `the end-entity certificate ${eec.subjectDn} under the proxy is a CA certificate`,
    );
  }
}

/**
 * From the EEC (certificates[eecIndex]) up to a trust anchor. At each step a CA in the certdir is
 * preferred; otherwise the next certificate of the file must be the issuing (intermediate) CA.
 * Returns the CAs in order, the anchor last.
 */
function verifyCaPath(
  certificates: readonly Certificate[],
  eecIndex: number,
  certdir: Certdir,
  now: Date,
): Certificate[] {
  const cas: Certificate[] = [];
  let current = certificates[eecIndex] as Certificate;
  let role = 'end-entity';
  for (let nextIndex = eecIndex + 1; ; nextIndex++) {
    if (eecIndex + 1 + cas.length > MAX_PATH_LENGTH) {
      throw authorizationError(
        'proxy.path_length',
        `the certificate path is longer than ${MAX_PATH_LENGTH} certificates`,
      );
    }
    const anchor = findAnchor(certdir, current, now);
    if (anchor !== undefined) {
      checkCa(anchor, current, cas);
      cas.push(anchor);
      return cas;
    }
    const intermediate = certificates[nextIndex];
    if (intermediate === undefined || !namesEqual(current.issuer, intermediate.subject)) {
      throw authorizationError(
        'proxy.unknown_ca',
        `the issuer ${current.issuerDn} of ${role} certificate ${current.subjectDn} is not a trusted CA`,
      );
    }
    checkIssuedBy(current, intermediate, role);
    checkCa(intermediate, current, cas);
    cas.push(intermediate);
    current = intermediate;
    role = 'CA';
  }
}

/** `ca` issued `subject`; `below` are the CAs already on the path under it. */
function checkCa(ca: Certificate, subject: Certificate, below: readonly Certificate[]): void {
  if (ca.basicConstraints?.ca !== true) {
    throw authorizationError(
      'proxy.not_a_ca',
      `certificate ${ca.subjectDn} issued ${subject.subjectDn} but is not a CA (basicConstraints CA:TRUE)`,
    );
  }
  if (ca.keyUsage !== undefined && !ca.keyUsage(KeyUsageBit.keyCertSign)) {
    throw authorizationError(
      'proxy.not_a_ca',
      `CA certificate ${ca.subjectDn} may not sign certificates: its keyUsage lacks keyCertSign`,
    );
  }
  // RFC 5280 pathLenConstraint counts the non-self-issued intermediate CAs below.
  const allowed = ca.basicConstraints.pathLength;
  const intermediatesBelow = below.filter((certificate) => !namesEqual(certificate.subject, certificate.issuer)).length;
  if (allowed !== undefined && intermediatesBelow > allowed) {
    throw authorizationError(
      'proxy.path_length',
      `CA certificate ${ca.subjectDn} allows ${allowed} intermediate CAs below it, but has ${intermediatesBelow}`,
    );
  }
}

/**
 * The certdir CA that issued `certificate`: files `<hash>.0`, `.1`, … until the first missing one,
 * where the subject matches and the signature verifies. Among several (a CA certificate renewed
 * with the same key), one valid at `now` wins.
 */
function findAnchor(certdir: Certdir, certificate: Certificate, now: Date): Certificate | undefined {
  const hash = nameHash(certificate.issuer);
  let expiredMatch: Certificate | undefined;
  for (let index = 0; index < MAX_ANCHOR_FILES_PER_HASH; index++) {
    const path = join(certdir.path, `${hash}.${index}`);
    const text = readAnchorFile(path, certdir.lstat);
    if (text === undefined) break;
    for (const candidate of parseAnchorFile(text, path)) {
      if (!namesEqual(candidate.subject, certificate.issuer) || !signedBy(certificate, candidate)) continue;
      if (isValidAt(candidate, now)) return candidate;
      expiredMatch ??= candidate;
    }
  }
  return expiredMatch;
}

/**
 * The file's text, or undefined if it does not exist. Symlinks are followed (the usual layout),
 * but the file they lead to, and every directory above it, must be root's alone; it is opened
 * without following anything further and compared with what was checked.
 */
export function readAnchorFile(path: string, lstat: Lstat = lstatPath): string | undefined {
  let real: string;
  try {
    real = realPath(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw systemError(
      'proxy.certdir',
      `CA file ${escapeControl(path)} cannot be resolved (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      error,
    );
  }
  const checked = requireTrustedPath(
    'CA file',
    real,
    { trustedUids: [], trustedGids: [], finalType: 'file' },
    lstat,
    'proxy.certdir',
  );
  if (checked.size > MAX_ANCHOR_FILE_BYTES)
    throw systemError('proxy.certdir', `CA file ${escapeControl(path)} is larger than ${MAX_ANCHOR_FILE_BYTES} bytes`);
  try {
    return readCheckedFile(real, checked, MAX_ANCHOR_FILE_BYTES).toString('latin1');
  } catch (error) {
    throw systemError(
      'proxy.certdir',
      `CA file ${escapeControl(path)} cannot be read (${(error as Error).message})`,
      error,
    );
  }
}

/** A broken file in the certdir is the site's to fix, hence 202. */
function parseAnchorFile(text: string, path: string): Certificate[] {
  let blocks: PemBlock[];
  try {
    blocks = parsePem(text, `CA file ${escapeControl(path)}`);
  } catch (error) {
    throw systemError(
      'proxy.certdir',
      error instanceof Error ? error.message : `CA file ${escapeControl(path)} is not valid PEM`,
      error,
    );
  }
  return blocks
    .filter((block) => block.label === 'CERTIFICATE')
    .map((block) => {
      const certificate = parseCertificate(block.der);
      if (certificate === undefined)
        throw systemError('proxy.certdir', `CA file ${escapeControl(path)} holds a certificate that cannot be parsed`);
      return certificate;
    });
}

// ---------------------------------------------------------------------------------------------
// Times and extensions

const isValidAt = (certificate: Certificate, now: Date): boolean =>
  certificate.notBefore.getTime() <= now.getTime() && now.getTime() <= certificate.notAfter.getTime();

/** `path` runs from the proxy to the anchor; the first `proxyCount` entries are proxies. */
function checkValidity(path: readonly Certificate[], proxyCount: number, now: Date): void {
  path.forEach((certificate, index) => {
    const role = index < proxyCount ? 'proxy' : index === proxyCount ? 'end-entity' : 'CA';
    if (now.getTime() < certificate.notBefore.getTime()) {
      throw clientError(
        'proxy.not_yet_valid',
        `${role} certificate ${certificate.subjectDn} is not valid before ${certificate.notBefore.toISOString()}`,
      );
    }
    if (now.getTime() > certificate.notAfter.getTime()) {
      throw clientError(
        'proxy.expired',
        `${role} certificate ${certificate.subjectDn} expired at ${certificate.notAfter.toISOString()}`,
      );
    }
  });
}

function checkCriticalExtensions(certificate: Certificate): void {
  const [unaccepted] = certificate.unacceptedCriticalExtensions;
  if (unaccepted !== undefined) {
    throw authorizationError(
      'proxy.unsupported_extension',
      `certificate ${certificate.subjectDn} has a critical extension ${unaccepted} that glexec does not process`,
    );
  }
}
