import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import fc from 'fast-check';

import {
  DerError,
  Tag,
  childrenOf,
  readRoot,
  readElement,
  decodeOid,
  decodeTime,
  encodingOf,
} from '../../src/proxy/der';
import { formatOneline, onelineFromDer, parseName, subjectHash } from '../../src/proxy/dn';
import { makeCa, openssl, subjectHashOf } from '../helpers/pki';

// ---------------------------------------------------------------------------------------------
// A few DER building blocks, to make names that `openssl req` cannot (any string type, any byte).

function tlv(tag: number, ...contents: Uint8Array[]): Buffer {
  const content = Buffer.concat(contents);
  const length = content.length;
  const header =
    length < 0x80 ? [tag, length] : length < 0x100 ? [tag, 0x81, length] : [tag, 0x82, length >> 8, length & 0xff];
  return Buffer.concat([Buffer.from(header), content]);
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const groups = [arc & 0x7f];
    for (let remaining = Math.floor(arc / 128); remaining > 0; remaining = Math.floor(remaining / 128)) {
      groups.unshift((remaining & 0x7f) | 0x80);
    }
    bytes.push(...groups);
  }
  return tlv(Tag.objectIdentifier, Buffer.from(bytes));
}

type Attribute = readonly [type: string, valueTag: number, value: string | Buffer];

const OIDS: Record<string, string> = {
  C: '2.5.4.6',
  O: '2.5.4.10',
  OU: '2.5.4.11',
  CN: '2.5.4.3',
  DC: '0.9.2342.19200300.100.1.25',
  UID: '0.9.2342.19200300.100.1.1',
  emailAddress: '1.2.840.113549.1.9.1',
  serialNumber: '2.5.4.5',
};

/** A Name from RDNs of (type, tag, value); type is a short name from OIDS or a dotted OID. */
function nameDer(...rdns: ReadonlyArray<readonly Attribute[]>): Buffer {
  return tlv(
    Tag.sequence,
    ...rdns.map((rdn) =>
      tlv(
        Tag.set,
        ...rdn.map(([type, valueTag, value]) =>
          tlv(
            Tag.sequence,
            oid(OIDS[type] ?? type),
            tlv(valueTag, typeof value === 'string' ? Buffer.from(value, 'latin1') : value),
          ),
        ),
      ),
    ),
  );
}

const publicKeyInfo = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
  type: 'spki',
  format: 'der',
});

/** A certificate with `name` as subject and issuer and a dummy signature: enough for openssl to print names. */
function certificateWithName(name: Buffer): Buffer {
  const ecdsaWithSha256 = tlv(Tag.sequence, oid('1.2.840.10045.4.3.2'));
  const validity = tlv(
    Tag.sequence,
    tlv(Tag.utcTime, Buffer.from('250101000000Z')),
    tlv(Tag.utcTime, Buffer.from('350101000000Z')),
  );
  const tbs = tlv(
    Tag.sequence,
    tlv(0xa0, tlv(Tag.integer, Buffer.from([2]))),
    tlv(Tag.integer, Buffer.from([1])),
    ecdsaWithSha256,
    name,
    validity,
    name,
    publicKeyInfo,
  );
  const signature = tlv(Tag.sequence, tlv(Tag.integer, Buffer.from([1])), tlv(Tag.integer, Buffer.from([1])));
  return tlv(Tag.sequence, tbs, ecdsaWithSha256, tlv(Tag.bitString, Buffer.from([0]), signature));
}

let workspace: string;
let fileCounter = 0;

/** What OpenSSL itself says: X509_NAME_oneline (via -nameopt compat) and X509_NAME_hash. */
function opensslView(name: Buffer): { oneline: string; hash: string } {
  const base64 = certificateWithName(name).toString('base64').replace(/.{64}/g, '$&\n');
  const path = join(workspace, `name-${++fileCounter}.pem`);
  writeFileSync(path, `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`);
  const [subjectLine = '', hash = ''] = openssl([
    'x509',
    '-in',
    path,
    '-noout',
    '-subject',
    '-nameopt',
    'compat',
    '-subject_hash',
  ]).split('\n');
  return { oneline: subjectLine.replace(/^subject=/, ''), hash };
}

before(() => {
  workspace = mkdtempSync(join(tmpdir(), 'glexec-dn-'));
});
after(() => {
  rmSync(workspace, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('the oneline DN', () => {
  test('a grid DN is written as /type=value per RDN with OpenSSL short names', () => {
    const name = nameDer(
      [['DC', Tag.ia5String, 'org']],
      [['DC', Tag.ia5String, 'example']],
      [['C', Tag.printableString, 'NL']],
      [['O', Tag.utf8String, 'Example']],
      [['CN', Tag.utf8String, 'Jane Doe']],
    );
    assert.equal(onelineFromDer(name), '/DC=org/DC=example/C=NL/O=Example/CN=Jane Doe');
  });

  test('a hostile CN with a newline becomes \\x0A and the DN stays on one line', () => {
    const name = nameDer([['O', Tag.utf8String, 'Example']], [['CN', Tag.utf8String, 'Jane\nDoe\r\t\x7f\x1b[31m']]);
    const oneline = onelineFromDer(name);
    assert.equal(oneline, '/O=Example/CN=Jane\\x0ADoe\\x0D\\x09\\x7F\\x1B[31m');
    assert.equal(oneline, opensslView(name).oneline);
  });

  const cases: ReadonlyArray<readonly [string, Buffer]> = [
    [
      'a multi-valued RDN is joined with +',
      nameDer(
        [['O', Tag.utf8String, 'Example']],
        [
          ['CN', Tag.utf8String, 'Jane'],
          ['UID', Tag.utf8String, 'jdoe'],
        ],
      ),
    ],
    ['slash and plus inside a value are escaped with a backslash', nameDer([['CN', Tag.utf8String, 'a/b+c d=e,f']])],
    ['UTF-8 bytes are written as uppercase \\xHH', nameDer([['CN', Tag.utf8String, Buffer.from('Jörg Ünal', 'utf8')]])],
    [
      'a BMPString shows its zero bytes, as OpenSSL does',
      nameDer([['CN', Tag.bmpString, Buffer.from('\u0000J\u0000\u00f6', 'latin1')]]),
    ],
    ['a T61String byte above 0x7E is escaped', nameDer([['CN', Tag.t61String, 'Jos\xe9']])],
    ['an unknown attribute type is written as a dotted OID', nameDer([['1.3.6.1.4.1.99999.1', Tag.utf8String, 'x']])],
    [
      'emailAddress and UID use OpenSSL short names',
      nameDer([
        ['emailAddress', Tag.ia5String, 'jane@example.org'],
        ['UID', Tag.utf8String, 'jd'],
      ]),
    ],
  ];
  for (const [title, name] of cases) {
    test(`${title} (same as openssl)`, () => {
      assert.equal(onelineFromDer(name), opensslView(name).oneline);
    });
  }

  test('the oneline DN never contains a control character, whatever the value bytes', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 40 }),
        fc.constantFrom(Tag.utf8String, Tag.octetString, Tag.bmpString),
        (bytes, tag) => {
          const oneline = formatOneline(parseName(nameDer([['CN', tag, Buffer.from(bytes)]])));
          // eslint-disable-next-line no-control-regex -- looking for control characters is the point
          assert.doesNotMatch(oneline, /[\x00-\x1f\x7f-\uffff]/);
        },
      ),
    );
  });
});

describe('the subject hash', () => {
  const names: ReadonlyArray<readonly [string, Buffer]> = [
    [
      'a plain grid DN',
      nameDer([['DC', Tag.ia5String, 'org']], [['DC', Tag.ia5String, 'example']], [['CN', Tag.utf8String, 'Test CA']]),
    ],
    [
      'mixed case and extra spaces',
      nameDer([['O', Tag.printableString, '  Example   Org ']], [['CN', Tag.utf8String, 'TEST\t \nCa  ']]),
    ],
    [
      'a multi-valued RDN in unsorted order',
      nameDer([
        ['CN', Tag.utf8String, 'zeta'],
        ['UID', Tag.utf8String, 'Alpha'],
      ]),
    ],
    [
      'emailAddress as IA5String',
      nameDer([
        ['CN', Tag.utf8String, 'x'],
        ['emailAddress', Tag.ia5String, 'CA@Example.ORG'],
      ]),
    ],
    ['a T61String with a Latin-1 byte', nameDer([['CN', Tag.t61String, 'Jos\xe9 GARC\xcdA']])],
    [
      'a BMPString',
      nameDer([['CN', Tag.bmpString, Buffer.from('\u0000J\u0000\u00d6\u0000 \u0000 \u0000X', 'latin1')]]),
    ],
    ['a UniversalString', nameDer([['CN', Tag.universalString, Buffer.from([0, 0, 0, 0x41, 0, 1, 0xf6, 0x00])]])],
    [
      'non-ASCII capitals, which are not lowercased',
      nameDer([['CN', Tag.utf8String, Buffer.from('ÜBER Straße', 'utf8')]]),
    ],
    ['a NumericString, which is hashed as it is', nameDer([['serialNumber', Tag.numericString, ' 12  34 ']])],
    ['a value of only spaces', nameDer([['CN', Tag.utf8String, '   ']])],
    ['an empty name', nameDer()],
    [
      'a long name (two-byte lengths)',
      nameDer(
        ...Array.from({ length: 12 }, (_, i): Attribute[] => [['OU', Tag.utf8String, `Organisational Unit ${i}`]]),
      ),
    ],
  ];
  for (const [title, name] of names) {
    test(`the hash of ${title} equals openssl's`, () => {
      assert.equal(subjectHash(name), opensslView(name).hash);
    });
  }

  test('the hash of names made by openssl req equals openssl x509 -subject_hash', () => {
    const subjects = [
      '/DC=org/DC=Example/C=NL/O=Example/CN=Test CA',
      '/C=NL/O=EXAMPLE   Org/CN=  Mixed Case CA  ',
      '/DC=ch/DC=cern/OU=Organic Units/CN=Multi+UID=value',
      '/C=DE/O=GermanGrid/CN=GridKa-CA/emailAddress=GridKa-CA@Example.DE',
    ];
    for (const subject of subjects) {
      const ca = makeCa(workspace, { subject });
      assert.equal(subjectHash(subjectNameOf(ca.certPem)), subjectHashOf(ca.certPath), subject);
      assert.equal(onelineFromDer(subjectNameOf(ca.certPem)), opensslOneline(ca.certPath), subject);
    }
  });

  test('invalid UTF-8 in a UTF8String is refused rather than hashed', () => {
    assert.throws(() => subjectHash(nameDer([['CN', Tag.utf8String, Buffer.from([0xc3, 0x28])]])), DerError);
  });
});

describe('the DER reader', () => {
  test('indefinite, non-minimal and overlong lengths are refused', () => {
    assert.throws(() => readElement(Buffer.from([0x30, 0x80, 0x00, 0x00])), DerError);
    assert.throws(() => readElement(Buffer.from([0x04, 0x81, 0x05, 1, 2, 3, 4, 5])), DerError);
    assert.throws(
      () => readElement(Buffer.from([0x04, 0x82, 0x00, 0x81, ...new Array<number>(0x81).fill(0)])),
      DerError,
    );
    assert.throws(() => readElement(Buffer.from([0x04, 0x05, 1, 2])), DerError);
    assert.throws(() => readRoot(Buffer.from([0x05, 0x00, 0x00])), DerError);
  });

  test('an OID and a time decode to their usual forms', () => {
    assert.equal(decodeOid(readRoot(oid('1.3.6.1.5.5.7.1.14'))), '1.3.6.1.5.5.7.1.14');
    assert.equal(decodeOid(readRoot(oid('2.999.1'))), '2.999.1');
    assert.equal(
      decodeTime(readRoot(tlv(Tag.utcTime, Buffer.from('491231235959Z')))).toISOString(),
      '2049-12-31T23:59:59.000Z',
    );
    assert.equal(
      decodeTime(readRoot(tlv(Tag.utcTime, Buffer.from('500101000000Z')))).toISOString(),
      '1950-01-01T00:00:00.000Z',
    );
    assert.equal(
      decodeTime(readRoot(tlv(Tag.generalizedTime, Buffer.from('20510101000000Z')))).toISOString(),
      '2051-01-01T00:00:00.000Z',
    );
    assert.throws(() => decodeTime(readRoot(tlv(Tag.utcTime, Buffer.from('250230000000Z')))), DerError);
    assert.throws(() => decodeTime(readRoot(tlv(Tag.utcTime, Buffer.from('2501010000Z')))), DerError);
  });

  test('random bytes either parse or fail with DerError, never otherwise', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          parseName(Buffer.from(bytes));
        } catch (error) {
          assert.ok(error instanceof DerError, String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------

/** The subject Name TLV of a PEM certificate. */
function subjectNameOf(certPem: string): Buffer {
  const der = new X509Certificate(certPem).raw;
  const [tbs] = childrenOf(readRoot(der, Tag.sequence));
  assert.ok(tbs);
  const fields = childrenOf(tbs);
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[offset + 4]; // serialNumber, signature, issuer, validity, subject
  assert.ok(subject);
  return Buffer.from(encodingOf(subject));
}

function opensslOneline(certPath: string): string {
  return openssl(['x509', '-in', certPath, '-noout', '-subject', '-nameopt', 'compat'])
    .replace(/^subject=/, '')
    .replace(/\n$/, '');
}

describe('backslashes in the oneline form (issue 10 item 9)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glexec-dn-backslash-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** A self-signed certificate whose subject openssl -subj builds from `subject` (`\\` is one backslash). */
  const subjectOf = (name: string, subject: string): { ours: string; openssl: string; der: Buffer } => {
    const path = join(dir, `${name}.pem`);
    openssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(dir, `${name}.key`),
      '-out',
      path,
      '-subj',
      subject,
      '-utf8',
      '-days',
      '1',
    ]);
    const der = new X509Certificate(openssl(['x509', '-in', path])).raw;
    const subjectLine = openssl(['x509', '-in', path, '-noout', '-subject', '-nameopt', 'compat'])
      .trim()
      .replace(/^subject=/, '');
    return { ours: onelineFromDer(subjectDerOf(der)), openssl: subjectLine, der };
  };

  test('a backslash in a value is escaped as \\\\, unlike OpenSSL 3, so José and the literal text Jos\\xC3\\xA9 never read alike', () => {
    const utf8 = subjectOf('utf8', '/C=NL/CN=José');
    const literal = subjectOf('literal', '/C=NL/CN=Jos\\\\xC3\\\\xA9');
    const slash = subjectOf('slash', '/C=NL/CN=a\\\\b\\/c');
    // Without a backslash in the value, glexec and openssl agree.
    assert.equal(utf8.ours, utf8.openssl);
    assert.equal(utf8.ours, '/C=NL/CN=Jos\\xC3\\xA9');
    // OpenSSL prints both alike; glexec does not.
    assert.equal(literal.openssl, utf8.openssl);
    assert.equal(literal.ours, '/C=NL/CN=Jos\\\\xC3\\\\xA9');
    assert.notEqual(literal.ours, utf8.ours);
    assert.equal(slash.openssl, '/C=NL/CN=a\\b\\/c');
    assert.equal(slash.ours, '/C=NL/CN=a\\\\b\\/c');
  });
});

/** The subject Name TLV of a DER certificate. */
function subjectDerOf(certificateDer: Buffer): Uint8Array {
  const [tbs] = childrenOf(readRoot(certificateDer, Tag.sequence));
  if (tbs === undefined) throw new Error('no tbsCertificate');
  const fields = childrenOf(tbs);
  // version [0] is present in v3 certificates: version, serial, signature, issuer, validity, subject.
  const subject = fields[fields[0]?.tag === 0xa0 ? 5 : 4];
  if (subject === undefined) throw new Error('no subject');
  return encodingOf(subject);
}
