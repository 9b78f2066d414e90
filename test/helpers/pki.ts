/**
 * A test PKI made with the `openssl` command (OpenSSL 3.0): CAs, user certificates and grid proxies
 * (RFC 3820 and legacy GT2), installed CA directories and proxy files in the usual layout.
 *
 * Every certificate is signed with `openssl ca`, because that is the OpenSSL 3.0 command that sets
 * arbitrary validity dates (`-startdate`/`-enddate`), so expired and not-yet-valid certificates
 * are made directly. Keys are made in-process with node:crypto (EC P-256 by default: fast).
 *
 *   const ca = makeCa(dir, { subject: '/DC=org/DC=example/CN=Test CA' });
 *   installCa(ca, certdir);                                   // certdir/<hash>.0
 *   const user = makeUserCert(ca, { subject: '/DC=org/DC=example/CN=Jane Doe' });
 *   const proxy = makeProxy(user, { kind: 'rfc3820' });
 *   writeProxyFile(path, proxy);                              // proxy cert, proxy key, user cert
 *
 * Subjects use `openssl req -subj` syntax: `/type=value` per RDN, `+` for a multi-valued RDN,
 * backslash to escape `/` or `+` inside a value.
 */

import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTools } from './tools';

export type KeyType = 'ec' | 'rsa';
/** `pkcs8` writes `PRIVATE KEY`; `traditional` writes `EC PRIVATE KEY` or `RSA PRIVATE KEY`. */
export type KeyFormat = 'pkcs8' | 'traditional';
export type ProxyKind = 'rfc3820' | 'legacy' | 'limited' | 'legacy-limited' | 'independent';

/** A certificate with its private key, as files and as text. */
export interface Credential {
  /** The `-subj` string it was made with. */
  readonly subject: string;
  readonly certPem: string;
  readonly keyPem: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The credential that signed this one; undefined for a self-signed CA. */
  readonly issuer: Credential | undefined;
  /** Directory in which this credential's files (and those it signs) live. */
  readonly dir: string;
  /** Root of the test PKI (the `dir` given to makeCa). */
  readonly workspace: string;
}

export interface ValidityOptions {
  /** Start of validity; default: 5 minutes ago (for proxies: see ProxyOptions). */
  readonly notBefore?: Date;
  /** Lifetime in days from notBefore; default 365. */
  readonly days?: number;
}

export interface KeyOptions {
  readonly keyType?: KeyType;
  readonly keyFormat?: KeyFormat;
  /** Reuse this private key (PEM) instead of making one, e.g. for a CA renewed with the same key. */
  readonly keyPem?: string;
}

export interface CaOptions extends ValidityOptions, KeyOptions {
  readonly subject: string;
  /** basicConstraints pathlen. */
  readonly pathLen?: number;
  /** Leave out basicConstraints CA:TRUE (a certificate that signs but is no CA). */
  readonly notACa?: boolean;
}

export interface UserCertOptions extends ValidityOptions, KeyOptions {
  readonly subject: string;
  /** Mark the user certificate CA:TRUE (it must then be refused as an end-entity certificate). */
  readonly markAsCa?: boolean;
  /** keyUsage value for the extension; default `critical,digitalSignature,keyEncipherment`. */
  readonly keyUsage?: string;
  /** More extension lines in openssl config syntax, e.g. `1.2.3.4 = critical,DER:05:00`. */
  readonly extraExtensions?: readonly string[];
}

export interface ProxyOptions extends KeyOptions {
  /** `limited`/`legacy-limited` make limited proxies; `independent` an RFC 3820 independent proxy. */
  readonly kind: ProxyKind;
  /** Lifetime in hours; default 12. */
  readonly hours?: number;
  /** Start of validity relative to now, in hours; default -0.1 (a few minutes ago). */
  readonly startOffsetHours?: number;
  /** RFC 3820 pcPathLenConstraint. */
  readonly pathLen?: number;
  /** The CN added to the issuer's subject; default a random number (RFC 3820) or the GT2 name. */
  readonly commonName?: string;
  /** Make proxyCertInfo non-critical (RFC 3820 requires critical: must be refused). */
  readonly nonCritical?: boolean;
  /** Use this whole subject instead of the issuer's subject plus one CN (to make bad proxies). */
  readonly subject?: string;
  /** More extension lines in openssl config syntax, e.g. `1.2.3.4 = critical,DER:05:00`. */
  readonly extraExtensions?: readonly string[];
}

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

let sequence = 0;

/** Runs openssl; on failure the error says which command and what openssl printed. */
export function openssl(args: readonly string[], input?: string): string {
  requireTools('openssl');
  try {
    return execFileSync('openssl', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args.join(' ')} failed: ${stderr.trim()}`, { cause: error });
  }
}

/** A self-signed root CA in a fresh directory under `dir`. */
export function makeCa(dir: string, options: CaOptions): Credential {
  const caDir = newCredentialDir(dir, 'ca');
  const key = writeKey(caDir, options);
  const extensions = caExtensions(options);
  const validity = validityFrom(options);
  const certPath = join(caDir, 'cert.pem');
  const csrPath = makeRequest(caDir, key.path, options.subject);
  const config = writeCaConfig(caDir, extensions);
  openssl([
    'ca',
    '-batch',
    '-config',
    config,
    '-selfsign',
    '-keyfile',
    key.path,
    '-in',
    csrPath,
    '-out',
    certPath,
    ...dateArguments(validity),
    '-preserveDN',
    '-rand_serial',
    '-extensions',
    'ext',
    '-notext',
    '-md',
    'sha256',
  ]);
  return credential(options.subject, caDir, dir, certPath, key, validity, undefined);
}

/** An intermediate CA signed by `parent`. */
export function makeIntermediateCa(parent: Credential, options: CaOptions): Credential {
  return issue(parent, 'ca', options.subject, caExtensions(options), validityFrom(options), options);
}

/** An end-entity (user) certificate signed by `ca`. */
export function makeUserCert(ca: Credential, options: UserCertOptions): Credential {
  const extensions = [
    `basicConstraints = critical,CA:${options.markAsCa === true ? 'TRUE' : 'FALSE'}`,
    `keyUsage = ${options.keyUsage ?? 'critical,digitalSignature,keyEncipherment'}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    ...(options.extraExtensions ?? []),
  ];
  return issue(ca, 'user', options.subject, extensions, validityFrom(options), options);
}

/** A proxy of `issuer` (a user certificate or another proxy): subject = issuer's subject + one CN. */
export function makeProxy(issuer: Credential, options: ProxyOptions): Credential {
  const legacy = options.kind === 'legacy' || options.kind === 'legacy-limited';
  const defaultName =
    options.kind === 'legacy' ? 'proxy' : options.kind === 'legacy-limited' ? 'limited proxy' : String(randomSerial());
  const subject = options.subject ?? `${issuer.subject}/CN=${options.commonName ?? defaultName}`;
  const extensions = ['keyUsage = critical,digitalSignature,keyEncipherment'];
  if (!legacy) {
    const language = {
      rfc3820: 'id-ppl-inheritAll',
      limited: '1.3.6.1.4.1.3536.1.1.1.9',
      independent: 'id-ppl-independent',
    }[options.kind as 'rfc3820' | 'limited' | 'independent'];
    const pathLen = options.pathLen === undefined ? '' : `,pathlen:${options.pathLen}`;
    extensions.push(`proxyCertInfo = ${options.nonCritical === true ? '' : 'critical,'}language:${language}${pathLen}`);
  }
  extensions.push(...(options.extraExtensions ?? []));
  const notBefore = new Date(Date.now() + (options.startOffsetHours ?? -0.1) * HOUR_MS);
  const notAfter = new Date(notBefore.getTime() + (options.hours ?? 12) * HOUR_MS);
  return issue(issuer, 'proxy', subject, extensions, { notBefore, notAfter }, options);
}

/**
 * Installs `ca` into `certdir` as `<subject hash>.<n>` (the first free n), as a copy or as a
 * symlink to the CA's file. Returns the path written.
 */
export function installCa(ca: Credential, certdir: string, options: { symlink?: boolean } = {}): string {
  mkdirSync(certdir, { recursive: true });
  const hash = subjectHashOf(ca.certPath);
  let index = 0;
  while (existsSync(join(certdir, `${hash}.${index}`))) index++;
  const target = join(certdir, `${hash}.${index}`);
  if (options.symlink === true) symlinkSync(ca.certPath, target);
  else copyFileSync(ca.certPath, target);
  return target;
}

/** `openssl x509 -noout -subject_hash` of a PEM certificate file. */
export function subjectHashOf(certPath: string): string {
  return openssl(['x509', '-noout', '-subject_hash', '-in', certPath]).trim();
}

/** The issuers of `credential` up to, but not including, the self-signed root: what a proxy file carries. */
export function chainOf(credential: Credential): Credential[] {
  const chain: Credential[] = [];
  for (let issuer = credential.issuer; issuer?.issuer !== undefined; issuer = issuer.issuer) chain.push(issuer);
  return chain;
}

export interface ProxyFileOptions {
  /** Certificates after the proxy's key; default chainOf(proxy). */
  readonly chain?: readonly Credential[];
  /** The key written after the proxy certificate; default the proxy's own, null for none. */
  readonly keyPem?: string | null;
}

/** Proxy file text in the usual layout: proxy certificate, its private key, then the chain. */
export function proxyFileText(proxy: Credential, options: ProxyFileOptions = {}): string {
  const chain = options.chain ?? chainOf(proxy);
  const keyPem = options.keyPem === undefined ? proxy.keyPem : options.keyPem;
  return [proxy.certPem, keyPem ?? '', ...chain.map((credential) => credential.certPem)].join('');
}

/** Writes proxyFileText(proxy, options) to `path` with mode 0600 and returns the text. */
export function writeProxyFile(path: string, proxy: Credential, options: ProxyFileOptions = {}): string {
  const text = proxyFileText(proxy, options);
  writeFileSync(path, text, { mode: 0o600 });
  return text;
}

// ---------------------------------------------------------------------------------------------

interface KeyFile {
  readonly path: string;
  readonly pem: string;
}

interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

function issue(
  issuer: Credential,
  label: string,
  subject: string,
  extensions: readonly string[],
  validity: Validity,
  keyOptions: KeyOptions,
): Credential {
  const credentialDir = newCredentialDir(issuer.workspace, label);
  const key = writeKey(credentialDir, keyOptions);
  const csrPath = makeRequest(credentialDir, key.path, subject);
  const certPath = join(credentialDir, 'cert.pem');
  const config = writeCaConfig(issuer.dir, extensions);
  openssl([
    'ca',
    '-batch',
    '-config',
    config,
    '-cert',
    issuer.certPath,
    '-keyfile',
    issuer.keyPath,
    '-in',
    csrPath,
    '-out',
    certPath,
    ...dateArguments(validity),
    '-preserveDN',
    '-rand_serial',
    '-extensions',
    'ext',
    '-notext',
    '-md',
    'sha256',
  ]);
  return credential(subject, credentialDir, issuer.workspace, certPath, key, validity, issuer);
}

function credential(
  subject: string,
  dir: string,
  workspace: string,
  certPath: string,
  key: KeyFile,
  validity: Validity,
  issuer: Credential | undefined,
): Credential {
  return {
    subject,
    certPem: readFileSync(certPath, 'utf8'),
    keyPem: key.pem,
    certPath,
    keyPath: key.path,
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
    issuer,
    dir,
    workspace,
  };
}

function caExtensions(options: CaOptions): string[] {
  if (options.notACa === true) {
    return ['basicConstraints = critical,CA:FALSE', 'subjectKeyIdentifier = hash'];
  }
  const pathLen = options.pathLen === undefined ? '' : `,pathlen:${options.pathLen}`;
  return [
    `basicConstraints = critical,CA:TRUE${pathLen}`,
    'keyUsage = critical,keyCertSign,cRLSign',
    'subjectKeyIdentifier = hash',
  ];
}

function validityFrom(options: ValidityOptions): Validity {
  const notBefore = options.notBefore ?? new Date(Date.now() - 5 * 60 * 1000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + (options.days ?? 365) * DAY_MS) };
}

/** `openssl ca` takes YYYYMMDDHHMMSSZ and stores it as UTCTime before 2050, as RFC 5280 asks. */
function dateArguments(validity: Validity): string[] {
  const format = (date: Date): string => `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
  return ['-startdate', format(validity.notBefore), '-enddate', format(validity.notAfter)];
}

function newCredentialDir(workspace: string, label: string): string {
  sequence += 1;
  const dir = join(workspace, `${label}-${process.pid}-${sequence}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function writeKey(dir: string, options: KeyOptions): KeyFile {
  const path = join(dir, 'key.pem');
  if (options.keyPem !== undefined) {
    writeFileSync(path, options.keyPem, { mode: 0o600 });
    return { path, pem: options.keyPem };
  }
  const format = options.keyFormat ?? 'pkcs8';
  const { privateKey } =
    options.keyType === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const type = format === 'pkcs8' ? 'pkcs8' : options.keyType === 'rsa' ? 'pkcs1' : 'sec1';
  const pem = privateKey.export({ type, format: 'pem' }) as string;
  writeFileSync(path, pem, { mode: 0o600 });
  return { path, pem };
}

function makeRequest(dir: string, keyPath: string, subject: string): string {
  const csrPath = join(dir, 'request.csr');
  const config = join(dir, 'req.cnf');
  // Our own config, so the host's openssl.cnf cannot change the string types.
  writeFileSync(config, '[ req ]\ndistinguished_name = dn\nstring_mask = utf8only\n[ dn ]\n');
  openssl(['req', '-new', '-config', config, '-utf8', '-key', keyPath, '-subj', subject, '-out', csrPath]);
  return csrPath;
}

/** The `openssl ca` configuration of a signing credential, with this certificate's extensions. */
function writeCaConfig(signerDir: string, extensions: readonly string[]): string {
  const database = join(signerDir, 'index.txt');
  if (!existsSync(database)) writeFileSync(database, '');
  sequence += 1;
  const config = join(signerDir, `ca-${sequence}.cnf`);
  writeFileSync(
    config,
    [
      '[ ca ]',
      'default_ca = signer',
      '[ signer ]',
      `database = ${database}`,
      `new_certs_dir = ${signerDir}`,
      `serial = ${join(signerDir, 'serial')}`,
      'policy = policy_any',
      'unique_subject = no',
      'email_in_dn = yes',
      '[ policy_any ]',
      'commonName = optional',
      '[ ext ]',
      ...extensions,
      '',
    ].join('\n'),
  );
  return config;
}

function randomSerial(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
