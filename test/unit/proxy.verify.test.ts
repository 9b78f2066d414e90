import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, rmSync, type Stats, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { GlexecError } from '../../src/errors';
import { type VerifiedProxy, verifyProxyChain } from '../../src/proxy/verify';
import {
  type Credential,
  installCa,
  makeCa,
  makeIntermediateCa,
  makeProxy,
  makeUserCert,
  proxyFileText,
} from '../helpers/pki';

const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

const CA_SUBJECT = '/DC=org/DC=example/C=NL/O=Example/CN=Example Test CA';
const USER_SUBJECT = '/DC=org/DC=example/C=NL/O=Example/OU=People/CN=Jane Doe';

let workspace: string;
let certdir: string;
let ca: Credential;
let user: Credential;

before(() => {
  workspace = mkdtempSync(join(tmpdir(), 'glexec-proxy-'));
  certdir = join(workspace, 'certificates');
  ca = makeCa(workspace, { subject: CA_SUBJECT });
  installCa(ca, certdir);
  user = makeUserCert(ca, { subject: USER_SUBJECT });
});

after(() => {
  rmSync(workspace, { recursive: true, force: true });
});

/**
 * The test's files live under a temporary directory that is not root's alone; this stat presents
 * them as root-owned and writable by root only, so the trust walk passes (a test below shows that
 * the real stat refuses them).
 */
function asRootOnly(path: string): Stats {
  const real = lstatSync(path);
  return Object.assign(Object.create(Object.getPrototypeOf(real) as object) as Stats, real, {
    uid: 0,
    mode: real.mode & ~0o1022,
  });
}

function verify(
  text: string,
  options: { certdir?: string; now?: Date; requirePrivateKey?: boolean } = {},
): VerifiedProxy {
  return verifyProxyChain(text, {
    lstat: asRootOnly,
    certdir: options.certdir ?? certdir,
    now: options.now ?? new Date(),
    requirePrivateKey: options.requirePrivateKey ?? true,
  });
}

/** Asserts a GlexecError with this exit code and code, whose message is one line and includes `mentions`. */
function assertRefused(run: () => unknown, exitCode: number, code: string, ...mentions: string[]): GlexecError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof GlexecError, `expected a GlexecError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.exitCode, exitCode, caught.message);
  // eslint-disable-next-line no-control-regex -- looking for control characters is the point
  assert.doesNotMatch(caught.message, /[\x00-\x1f]/, 'the message must be one line without control characters');
  for (const mention of mentions)
    assert.ok(caught.message.includes(mention), `message "${caught.message}" should mention "${mention}"`);
  return caught;
}

describe('accepted proxies', () => {
  test('a valid RFC 3820 proxy yields the identity, proxy and issuer DNs', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820', hours: 12 });
    const result = verify(proxyFileText(proxy));
    assert.equal(result.identityDn, USER_SUBJECT);
    assert.equal(result.proxyDn, proxy.subject);
    assert.match(result.proxyDn, /^\/DC=org\/DC=example\/C=NL\/O=Example\/OU=People\/CN=Jane Doe\/CN=\d+$/);
    assert.equal(result.issuerDn, CA_SUBJECT);
    assert.equal(result.chainLength, 2);
    assert.equal(result.proxyDepth, 1);
    assert.equal(result.limited, false);
    assert.equal(result.kind, 'rfc3820');
    assert.equal(result.notAfter.getTime(), Math.floor(proxy.notAfter.getTime() / 1000) * 1000);
  });

  test('a legacy GT2 proxy (CN=proxy) is accepted as legacy', () => {
    const proxy = makeProxy(user, { kind: 'legacy' });
    const result = verify(proxyFileText(proxy));
    assert.equal(result.kind, 'legacy');
    assert.equal(result.proxyDn, `${USER_SUBJECT}/CN=proxy`);
    assert.equal(result.identityDn, USER_SUBJECT);
    assert.equal(result.limited, false);
  });

  test('an RFC 3820 limited proxy is accepted and reported as limited', () => {
    const result = verify(proxyFileText(makeProxy(user, { kind: 'limited' })));
    assert.equal(result.kind, 'rfc3820');
    assert.equal(result.limited, true);
  });

  test('a legacy limited proxy (CN=limited proxy) is accepted and reported as limited', () => {
    const result = verify(proxyFileText(makeProxy(user, { kind: 'legacy-limited' })));
    assert.equal(result.kind, 'legacy');
    assert.equal(result.limited, true);
    assert.equal(result.proxyDn, `${USER_SUBJECT}/CN=limited proxy`);
  });

  test('a proxy of a proxy is accepted with proxy depth 2 and the user as identity', () => {
    const first = makeProxy(user, { kind: 'rfc3820' });
    const second = makeProxy(first, { kind: 'rfc3820' });
    const result = verify(proxyFileText(second));
    assert.equal(result.proxyDepth, 2);
    assert.equal(result.chainLength, 3);
    assert.equal(result.identityDn, USER_SUBJECT);
    assert.equal(result.proxyDn, second.subject);
  });

  test('a limited proxy made from a full proxy is limited', () => {
    const full = makeProxy(user, { kind: 'rfc3820' });
    const result = verify(proxyFileText(makeProxy(full, { kind: 'limited' })));
    assert.equal(result.limited, true);
  });

  test('notAfter is the earliest end of validity along the chain', () => {
    const shortLived = makeProxy(user, { kind: 'rfc3820', hours: 2 });
    const longer = makeProxy(shortLived, { kind: 'rfc3820', hours: 10 });
    const result = verify(proxyFileText(longer));
    assert.equal(result.notAfter.getTime(), Math.floor(shortLived.notAfter.getTime() / 1000) * 1000);
  });

  test('the key may come last in the file, and RSA and EC keys in traditional PEM are read', () => {
    const rsaProxy = makeProxy(user, { kind: 'rfc3820', keyType: 'rsa', keyFormat: 'traditional' });
    assert.match(rsaProxy.keyPem, /BEGIN RSA PRIVATE KEY/);
    const keyLast = rsaProxy.certPem + user.certPem + rsaProxy.keyPem;
    assert.equal(verify(keyLast).identityDn, USER_SUBJECT);
    const ecProxy = makeProxy(user, { kind: 'rfc3820', keyFormat: 'traditional' });
    assert.match(ecProxy.keyPem, /BEGIN EC PRIVATE KEY/);
    assert.equal(verify(proxyFileText(ecProxy)).identityDn, USER_SUBJECT);
  });

  test('a proxy file with CRLF line ends is accepted', () => {
    const text = proxyFileText(makeProxy(user, { kind: 'rfc3820' })).replace(/\n/g, '\r\n');
    assert.equal(verify(text).identityDn, USER_SUBJECT);
  });

  test('without requirePrivateKey a file without a key is accepted', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    assert.equal(verify(proxyFileText(proxy, { keyPem: null }), { requirePrivateKey: false }).identityDn, USER_SUBJECT);
  });
});

describe('CA paths', () => {
  test('an intermediate CA carried in the file leads to the anchor in the certdir', () => {
    const root = makeCa(workspace, { subject: '/C=NL/O=Example/CN=Example Root CA' });
    const certdirWithRoot = join(workspace, 'certdir-root-only');
    installCa(root, certdirWithRoot);
    const intermediate = makeIntermediateCa(root, { subject: '/C=NL/O=Example/CN=Example Issuing CA' });
    const leafUser = makeUserCert(intermediate, { subject: '/C=NL/O=Example/CN=Iris Intermediate' });
    const proxy = makeProxy(leafUser, { kind: 'rfc3820' });
    const text = proxyFileText(proxy); // proxy, key, user, intermediate
    const result = verify(text, { certdir: certdirWithRoot });
    assert.equal(result.identityDn, '/C=NL/O=Example/CN=Iris Intermediate');
    assert.equal(result.issuerDn, '/C=NL/O=Example/CN=Example Issuing CA');
    assert.equal(result.chainLength, 3);

    const withoutIntermediate = proxyFileText(proxy, { chain: [leafUser] });
    assertRefused(
      () => verify(withoutIntermediate, { certdir: certdirWithRoot }),
      203,
      'proxy.unknown_ca',
      'Example Issuing CA',
    );
  });

  test('an intermediate CA installed in the certdir is a trust anchor by itself', () => {
    const root = makeCa(workspace, { subject: '/C=NL/O=Example/CN=Untrusted Root' });
    const intermediate = makeIntermediateCa(root, { subject: '/C=NL/O=Example/CN=Trusted Intermediate' });
    const certdirWithIntermediate = join(workspace, 'certdir-intermediate-only');
    installCa(intermediate, certdirWithIntermediate);
    const proxy = makeProxy(makeUserCert(intermediate, { subject: '/C=NL/O=Example/CN=Ivo' }), { kind: 'rfc3820' });
    assert.equal(
      verify(proxyFileText(proxy), { certdir: certdirWithIntermediate }).identityDn,
      '/C=NL/O=Example/CN=Ivo',
    );
  });

  test('a self-signed root carried in the file is not trusted unless it is in the certdir', () => {
    const rogueRoot = makeCa(workspace, { subject: '/C=NL/O=Rogue/CN=Rogue CA' });
    const rogueUser = makeUserCert(rogueRoot, { subject: USER_SUBJECT.replace('Jane Doe', 'Mallory') });
    const proxy = makeProxy(rogueUser, { kind: 'rfc3820' });
    assertRefused(
      () => verify(proxyFileText(proxy, { chain: [rogueUser, rogueRoot] })),
      203,
      'proxy.unknown_ca',
      '/C=NL/O=Rogue/CN=Rogue CA',
    );
  });

  test('a CA with the same subject as the trusted one but another key is not trusted', () => {
    const impostor = makeCa(workspace, { subject: CA_SUBJECT });
    const victim = makeUserCert(impostor, { subject: USER_SUBJECT });
    const proxy = makeProxy(victim, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(proxy)), 203, 'proxy.unknown_ca', CA_SUBJECT);
    assertRefused(() => verify(proxyFileText(proxy, { chain: [victim, impostor] })), 203, 'proxy.unknown_ca');
  });

  test('anchors are looked up as <hash>.0, <hash>.1, … so a hash collision or an old CA at .0 does not hide the right one', () => {
    const subject = '/C=NL/O=Example/CN=Rolled Over CA';
    const oldCa = makeCa(workspace, { subject });
    const newCa = makeCa(workspace, { subject });
    const rolloverCertdir = join(workspace, 'certdir-rollover');
    assert.match(installCa(oldCa, rolloverCertdir), /\.0$/);
    assert.match(installCa(newCa, rolloverCertdir, { symlink: true }), /\.1$/);
    const proxy = makeProxy(makeUserCert(newCa, { subject: '/C=NL/O=Example/CN=Rita' }), { kind: 'rfc3820' });
    assert.equal(verify(proxyFileText(proxy), { certdir: rolloverCertdir }).issuerDn, subject);
  });

  test('of two anchors with the same key, the one valid now is used', () => {
    const subject = '/C=NL/O=Example/CN=Renewed CA';
    const expired = makeCa(workspace, { subject, notBefore: new Date(Date.now() - 800 * DAY_MS), days: 400 });
    const renewed = makeCa(workspace, { subject, keyPem: expired.keyPem });
    const renewalCertdir = join(workspace, 'certdir-renewal');
    installCa(expired, renewalCertdir);
    const proxy = makeProxy(makeUserCert(renewed, { subject: '/C=NL/O=Example/CN=Rene' }), { kind: 'rfc3820' });
    assertRefused(
      () => verify(proxyFileText(proxy), { certdir: renewalCertdir }),
      201,
      'proxy.expired',
      `CA certificate ${subject}`,
    );
    installCa(renewed, renewalCertdir);
    assert.equal(verify(proxyFileText(proxy), { certdir: renewalCertdir }).issuerDn, subject);
  });

  test('an issuer without basicConstraints CA:TRUE cannot issue the user certificate', () => {
    const root = makeCa(workspace, { subject: '/C=NL/O=Example/CN=Root For NotACa' });
    const notACa = makeIntermediateCa(root, { subject: '/C=NL/O=Example/CN=Not A CA', notACa: true });
    const proxy = makeProxy(makeUserCert(notACa, { subject: '/C=NL/O=Example/CN=Nora' }), { kind: 'rfc3820' });
    const rootCertdir = join(workspace, 'certdir-not-a-ca');
    installCa(root, rootCertdir);
    assertRefused(
      () => verify(proxyFileText(proxy), { certdir: rootCertdir }),
      203,
      'proxy.not_a_ca',
      '/C=NL/O=Example/CN=Not A CA',
    );
  });

  test('a root with pathlen 0 may not have an intermediate CA under it', () => {
    const root = makeCa(workspace, { subject: '/C=NL/O=Example/CN=Pathlen Zero Root', pathLen: 0 });
    const intermediate = makeIntermediateCa(root, { subject: '/C=NL/O=Example/CN=Forbidden Intermediate' });
    const proxy = makeProxy(makeUserCert(intermediate, { subject: '/C=NL/O=Example/CN=Pat' }), { kind: 'rfc3820' });
    const rootCertdir = join(workspace, 'certdir-pathlen');
    installCa(root, rootCertdir);
    assertRefused(
      () => verify(proxyFileText(proxy), { certdir: rootCertdir }),
      203,
      'proxy.path_length',
      'Pathlen Zero Root',
    );
  });

  test('an end-entity certificate marked as a CA is refused', () => {
    const caUser = makeUserCert(ca, { subject: '/DC=org/DC=example/CN=Carl', markAsCa: true });
    assertRefused(
      () => verify(proxyFileText(makeProxy(caUser, { kind: 'rfc3820' }))),
      203,
      'proxy.eec_is_ca',
      '/DC=org/DC=example/CN=Carl',
    );
  });

  test('an end-entity certificate whose keyUsage lacks digitalSignature may not sign a proxy', () => {
    const encipherOnly = makeUserCert(ca, {
      subject: '/DC=org/DC=example/CN=Kim',
      keyUsage: 'critical,keyEncipherment',
    });
    assertRefused(
      () => verify(proxyFileText(makeProxy(encipherOnly, { kind: 'rfc3820' }))),
      203,
      'proxy.key_usage',
      '/DC=org/DC=example/CN=Kim',
    );
  });
});

describe('refused proxies', () => {
  test('an expired proxy is refused with 201 and names the certificate', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820', startOffsetHours: -48, hours: 24 });
    const error = assertRefused(
      () => verify(proxyFileText(proxy)),
      201,
      'proxy.expired',
      `proxy certificate ${proxy.subject} expired at `,
    );
    assert.match(error.message, /expired at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
  });

  test('an expired end-entity certificate is refused with 201', () => {
    const oldUser = makeUserCert(ca, {
      subject: '/DC=org/DC=example/CN=Old Timer',
      notBefore: new Date(Date.now() - 30 * DAY_MS),
      days: 10,
    });
    const proxy = makeProxy(oldUser, { kind: 'rfc3820' });
    assertRefused(
      () => verify(proxyFileText(proxy)),
      201,
      'proxy.expired',
      'end-entity certificate /DC=org/DC=example/CN=Old Timer expired at',
    );
  });

  test('a proxy that is not yet valid is refused with 201', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820', startOffsetHours: 2 });
    assertRefused(
      () => verify(proxyFileText(proxy)),
      201,
      'proxy.not_yet_valid',
      `proxy certificate ${proxy.subject} is not valid before`,
    );
  });

  test('validity is judged at the given time, not at the clock', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820', hours: 12 });
    assert.equal(verify(proxyFileText(proxy), { now: new Date(Date.now() + 11 * HOUR_MS) }).proxyDepth, 1);
    assertRefused(
      () => verify(proxyFileText(proxy), { now: new Date(Date.now() + 13 * HOUR_MS) }),
      201,
      'proxy.expired',
    );
  });

  test('an invalid current time is refused rather than passing every validity check', () => {
    const expired = makeProxy(user, { kind: 'rfc3820', startOffsetHours: -48, hours: 24 });
    assertRefused(() => verify(proxyFileText(expired), { now: new Date(Number.NaN) }), 202, 'proxy.clock');
  });

  test('a plain user certificate without a proxy is refused with 203 not_a_proxy', () => {
    const text = user.certPem + user.keyPem;
    assertRefused(() => verify(text), 203, 'proxy.not_a_proxy', `certificate ${USER_SUBJECT} is not a proxy`);
  });

  test('a proxy signed by a different key with the same issuer name is refused with 203', () => {
    const twin = makeUserCert(ca, { subject: USER_SUBJECT }); // same name, other key
    const forged = makeProxy(twin, { kind: 'rfc3820' });
    assertRefused(
      () => verify(proxyFileText(forged, { chain: [user] })),
      203,
      'proxy.bad_signature',
      forged.subject,
      USER_SUBJECT,
    );
  });

  test('a certificate from a CA that is not in the certdir is refused with 203', () => {
    const otherCa = makeCa(workspace, { subject: '/C=XX/O=Elsewhere/CN=Unknown CA' });
    const stranger = makeUserCert(otherCa, { subject: '/C=XX/O=Elsewhere/CN=Stranger' });
    const proxy = makeProxy(stranger, { kind: 'rfc3820' });
    assertRefused(
      () => verify(proxyFileText(proxy)),
      203,
      'proxy.unknown_ca',
      '/C=XX/O=Elsewhere/CN=Unknown CA',
      '/C=XX/O=Elsewhere/CN=Stranger',
    );
  });

  test('an independent proxy is refused with 203', () => {
    const proxy = makeProxy(user, { kind: 'independent' });
    assertRefused(() => verify(proxyFileText(proxy)), 203, 'proxy.independent', proxy.subject);
  });

  test('a proxy with a non-critical proxyCertInfo is refused', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820', nonCritical: true });
    assertRefused(() => verify(proxyFileText(proxy)), 203, 'proxy.invalid_proxy', 'not critical');
  });

  test('an RFC 3820 proxy whose subject is not its issuer plus one CN is refused', () => {
    const proxy = makeProxy(user, {
      kind: 'rfc3820',
      subject: '/DC=org/DC=example/C=NL/O=Example/OU=People/CN=Someone Else/CN=123',
    });
    assertRefused(() => verify(proxyFileText(proxy)), 203, 'proxy.invalid_proxy', 'CN=Someone Else');
  });

  test('a pre-RFC (GT3 draft) proxy is refused as not a proxy, with the reason', () => {
    const draft = makeProxy(user, {
      kind: 'legacy',
      commonName: '12345',
      extraExtensions: ['1.3.6.1.4.1.3536.1.222 = critical,DER:30:00'],
    });
    assertRefused(() => verify(proxyFileText(draft)), 203, 'proxy.not_a_proxy', 'draft');
  });

  test('an unknown critical extension anywhere on the path is refused, a non-critical one is ignored', () => {
    const strict = makeUserCert(ca, {
      subject: '/DC=org/DC=example/CN=Stella',
      extraExtensions: ['1.3.6.1.4.1.99999.7 = critical,DER:05:00'],
    });
    assertRefused(
      () => verify(proxyFileText(makeProxy(strict, { kind: 'rfc3820' }))),
      203,
      'proxy.unsupported_extension',
      '1.3.6.1.4.1.99999.7',
      'CN=Stella',
    );
    const relaxed = makeUserCert(ca, {
      subject: '/DC=org/DC=example/CN=Rex',
      extraExtensions: ['1.3.6.1.4.1.99999.7 = DER:05:00'],
    });
    assert.equal(
      verify(
        proxyFileText(
          makeProxy(relaxed, { kind: 'rfc3820', extraExtensions: ['1.3.6.1.4.1.8005.100.100.5 = DER:30:00'] }),
        ),
      ).identityDn,
      '/DC=org/DC=example/CN=Rex',
    );
  });

  test('a proxy made from a proxy with pathlen 0 is refused, pathlen 1 allows it', () => {
    const noMore = makeProxy(user, { kind: 'rfc3820', pathLen: 0 });
    const tooDeep = makeProxy(noMore, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(tooDeep)), 203, 'proxy.path_length', noMore.subject);
    const oneMore = makeProxy(user, { kind: 'rfc3820', pathLen: 1 });
    assert.equal(verify(proxyFileText(makeProxy(oneMore, { kind: 'rfc3820' }))).proxyDepth, 2);
    assert.equal(verify(proxyFileText(noMore)).proxyDepth, 1);
  });

  test('a limited proxy may not sign a full proxy', () => {
    const limited = makeProxy(user, { kind: 'limited' });
    const widened = makeProxy(limited, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(widened)), 203, 'proxy.limited_signs_unlimited', widened.subject);
    const legacyLimited = makeProxy(user, { kind: 'legacy-limited' });
    assertRefused(
      () => verify(proxyFileText(makeProxy(legacyLimited, { kind: 'legacy' }))),
      203,
      'proxy.limited_signs_unlimited',
    );
  });

  test('a chain that mixes legacy and RFC 3820 proxies is refused', () => {
    const rfc = makeProxy(user, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(makeProxy(rfc, { kind: 'legacy' }))), 203, 'proxy.mixed_kinds');
  });

  test('a proxy whose issuer is missing from the file is refused', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(proxy, { chain: [] })), 203, 'proxy.incomplete_chain', USER_SUBJECT);
  });

  test('a hostile CN with a newline is escaped in the message', () => {
    const proxy = makeProxy(user, {
      kind: 'rfc3820',
      commonName: 'evil\nglexec[1]: accepted',
      startOffsetHours: -30,
      hours: 1,
    });
    const error = assertRefused(
      () => verify(proxyFileText(proxy)),
      201,
      'proxy.expired',
      '/CN=evil\\x0Aglexec[1]: accepted',
    );
    assert.ok(!error.message.includes('\n'));
  });
});

describe('the private key', () => {
  test('a proxy file without a private key is refused with 201', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(proxy, { keyPem: null })), 201, 'proxy.no_private_key', proxy.subject);
  });

  test('a private key that belongs to another certificate is refused with 201', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    assertRefused(
      () => verify(proxyFileText(proxy, { keyPem: user.keyPem })),
      201,
      'proxy.key_mismatch',
      proxy.subject,
    );
  });

  test('two private keys are refused with 201', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(proxy) + proxy.keyPem), 201, 'proxy.multiple_private_keys');
  });

  test('an encrypted private key is refused with 201', () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const encrypted = privateKey.export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'secret',
    }) as string;
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    assertRefused(() => verify(proxyFileText(proxy, { keyPem: encrypted })), 201, 'proxy.encrypted_key');
  });
});

describe('malformed input and the certdir', () => {
  test('a file without any certificate is refused with 201', () => {
    assertRefused(() => verify(user.keyPem), 201, 'proxy.no_certificate');
    assertRefused(() => verify(''), 201, 'proxy.no_certificate');
  });

  test('broken PEM is refused with 201 malformed', () => {
    const proxyText = proxyFileText(makeProxy(user, { kind: 'rfc3820' }));
    assertRefused(() => verify(proxyText.replace(/-----END CERTIFICATE-----\n/, '')), 201, 'proxy.malformed');
    assertRefused(() => verify(proxyText.replace(/^(-----BEGIN CERTIFICATE-----\n)M/, '$1*')), 201, 'proxy.malformed');
    assertRefused(
      () => verify('-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n'),
      201,
      'proxy.malformed',
    );
    assertRefused(
      () => verify(`-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n${proxyText}`),
      201,
      'proxy.malformed',
      'X509 CRL',
    );
  });

  test('a file with too many certificates is refused', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    const text = proxyFileText(proxy, { chain: Array.from({ length: 16 }, () => user) });
    assertRefused(() => verify(text), 201, 'proxy.malformed', '17 certificates');
  });

  test('a missing certdir is a system error (202)', () => {
    const proxy = makeProxy(user, { kind: 'rfc3820' });
    assertRefused(
      () => verify(proxyFileText(proxy), { certdir: join(workspace, 'no-such-dir') }),
      202,
      'proxy.certdir',
      'no-such-dir',
    );
  });

  test('a certdir that is a file is a system error (202)', () => {
    const file = join(workspace, 'not-a-directory');
    writeFileSync(file, '');
    assertRefused(
      () => verify(proxyFileText(makeProxy(user, { kind: 'rfc3820' })), { certdir: file }),
      202,
      'proxy.certdir',
    );
  });

  test('a certdir that someone other than root could change is a system error (202), and the real stat sees that', () => {
    const text = proxyFileText(makeProxy(user, { kind: 'rfc3820' }));
    assert.throws(
      () => verifyProxyChain(text, { certdir, now: new Date(), requirePrivateKey: true }),
      (error: unknown) =>
        error instanceof GlexecError &&
        error.exitCode === 202 &&
        error.code === 'proxy.certdir' &&
        /is not trusted: .* is (world-writable|owned by uid|writable by group)/.test(error.message),
    );
  });

  test('a CA file that someone other than root could change is a system error (202)', () => {
    const openCertdir = join(workspace, 'certdir-open-file');
    const anchorPath = installCa(ca, openCertdir);
    const asRootOnlyExceptAnchor = (path: string): Stats => {
      const st = asRootOnly(path);
      return path === anchorPath
        ? Object.assign(Object.create(Object.getPrototypeOf(st) as object) as Stats, st, { mode: st.mode | 0o002 })
        : st;
    };
    assert.throws(
      () =>
        verifyProxyChain(proxyFileText(makeProxy(user, { kind: 'rfc3820' })), {
          certdir: openCertdir,
          now: new Date(),
          requirePrivateKey: true,
          lstat: asRootOnlyExceptAnchor,
        }),
      (error: unknown) =>
        error instanceof GlexecError &&
        error.code === 'proxy.certdir' &&
        error.message.includes(`${anchorPath} is world-writable`),
    );
  });

  test('an unreadable anchor file in the certdir is a system error (202)', () => {
    const brokenCertdir = join(workspace, 'certdir-broken');
    const anchorPath = installCa(ca, brokenCertdir);
    rmSync(anchorPath);
    mkdirSync(anchorPath); // <hash>.0 is a directory now
    assertRefused(
      () => verify(proxyFileText(makeProxy(user, { kind: 'rfc3820' })), { certdir: brokenCertdir }),
      202,
      'proxy.certdir',
    );
  });
});
