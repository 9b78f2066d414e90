import assert from 'node:assert/strict';
import { copyFileSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';

import { GlexecError } from '../../src/errors';
import { type VerifiedProxy, verifyProxyChain } from '../../src/proxy/verify';
import { AcParseError, MAX_EXTENSION_BYTES, type ParsedAc, parseVomsExtension } from '../../src/voms/ac';
import { readVomsAttributes } from '../../src/voms/load';
import { judgeAcs, parseLsc } from '../../src/voms/trust';
import { type Credential, installCa, makeCa, makeUserCert } from '../helpers/pki';
import { missingTool } from '../helpers/tools';
import { makeVomsProxy, makeVomsServer, type VomsServer, writeLsc } from '../helpers/voms';

const HOUR_MS = 3600 * 1000;
const USER = '/C=NL/O=Example/CN=Jane Doe';

let workspace: string;
let certdir: string;
let ca: Credential;
let user: Credential;
let other: Credential;
let server: VomsServer;
let rogueServer: VomsServer;
let counter = 0;

/** The temporary files presented as root's alone (proxy.verify.test.ts shows the real stat refuses them). */
function asRootOnly(path: string): Stats {
  const real = lstatSync(path);
  return Object.assign(Object.create(Object.getPrototypeOf(real) as object) as Stats, real, {
    uid: 0,
    mode: real.mode & ~0o1022,
  });
}

function freshVomsdir(): string {
  const dir = join(workspace, `vomsdir-${++counter}`);
  mkdirSync(dir);
  return dir;
}

function proxyWith(
  options: Parameters<typeof makeVomsProxy>[3],
  signer: VomsServer = server,
  holder: Credential = user,
): VerifiedProxy {
  const out = makeVomsProxy(holder, signer, certdir, options, join(workspace, `proxy-${++counter}.pem`));
  return verifyProxyChain(readFileSync(out, 'latin1'), {
    certdir,
    lstat: asRootOnly,
    now: new Date(),
    requirePrivateKey: true,
  });
}

function extensionOf(proxy: VerifiedProxy): Uint8Array {
  assert.ok(proxy.voms, 'the proxy carries the VOMS extension');
  return proxy.voms.extension;
}

const judge = (proxy: VerifiedProxy, vomsdir: string, now = new Date()) =>
  judgeAcs(parseVomsExtension(extensionOf(proxy)), {
    vomsdir,
    certdir,
    now,
    eecDer: proxy.voms?.eecDer ?? new Uint8Array(0),
    lstat: asRootOnly,
  });

const skip = missingTool('voms-proxy-fake', 'openssl');

describe('VOMS attribute certificates', { skip }, () => {
  let standard: VerifiedProxy;

  before(() => {
    workspace = mkdtempSync(join(tmpdir(), 'glexec-voms-'));
    certdir = join(workspace, 'certificates');
    ca = makeCa(workspace, { subject: '/C=NL/O=Example/CN=Example Test CA' });
    installCa(ca, certdir);
    user = makeUserCert(ca, { subject: USER, keyType: 'rsa' });
    other = makeUserCert(ca, { subject: '/C=NL/O=Example/CN=John Roe', keyType: 'rsa' });
    server = makeVomsServer(ca, 'voms.example.org');
    const rogueCa = makeCa(join(workspace, 'rogue'), { subject: '/C=NL/O=Example/CN=Example Test CA' });
    rogueServer = makeVomsServer(rogueCa, 'voms.example.org');
    standard = proxyWith({
      vo: 'testvo',
      fqans: ['/testvo/Role=pilot', '/testvo', '/testvo/prod/Role=production'],
      attributes: ['nickname=jdoe'],
    });
  });

  after(() => rmSync(workspace, { recursive: true, force: true }));

  test('an AC gives its VO, server, validity, holder, FQANs in order and generic attributes', () => {
    const [ac, ...more] = parseVomsExtension(extensionOf(standard));
    assert.equal(more.length, 0);
    assert.ok(ac);
    assert.equal(ac.vo, 'testvo');
    assert.equal(ac.host, 'voms.example.org');
    assert.equal(ac.port, '15000');
    assert.deepEqual(ac.fqans, ['/testvo/Role=pilot', '/testvo', '/testvo/prod/Role=production']);
    assert.deepEqual(ac.attributes, [{ name: 'nickname', value: 'jdoe', qualifier: 'testvo' }]);
    assert.ok(Math.abs(ac.notBefore.getTime() - Date.now()) < HOUR_MS);
    assert.ok(ac.notAfter.getTime() > Date.now() + 11 * HOUR_MS);
    assert.equal(ac.certificates.length, 1);
    assert.ok(ac.holder);
    assert.match(ac.signatureAlgorithm, /^1\.2\.840\.113549\.1\.1\./);
  });

  test('an AC vouched for by <vo>/<host>.lsc is trusted', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server);
    const { trusted, dropped } = judge(standard, vomsdir);
    assert.deepEqual(dropped, []);
    assert.equal(trusted.length, 1);
    assert.deepEqual(trusted[0]?.fqans, ['/testvo/Role=pilot', '/testvo', '/testvo/prod/Role=production']);
    assert.equal(trusted[0]?.serverDn, '/C=NL/O=Example/CN=voms.example.org');
  });

  test('the VOMS server certificate itself in the vomsdir vouches for its ACs', () => {
    const vomsdir = freshVomsdir();
    copyFileSync(server.credential.certPath, join(vomsdir, 'voms.example.org.pem'));
    const { trusted, dropped } = judge(standard, vomsdir);
    assert.deepEqual(dropped, []);
    assert.equal(trusted.length, 1);
  });

  test('an AC that no .lsc and no certificate vouches for is dropped with the reason', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'othervo', server);
    const { trusted, dropped } = judge(standard, vomsdir);
    assert.equal(trusted.length, 0);
    assert.match(dropped[0]?.reason ?? '', /no testvo\/voms\.example\.org\.lsc in .* vouches for its signer/);
  });

  test('an .lsc that lists another DN chain drops the AC', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server, ['/C=NL/O=Example/CN=other.example.org', server.issuerDn]);
    const { dropped } = judge(standard, vomsdir);
    assert.match(dropped[0]?.reason ?? '', /is not listed in .*voms\.example\.org\.lsc/);
  });

  test('an AC signed by a server whose CA is not in the certdir is dropped, even with the right DNs in the .lsc', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', rogueServer);
    const proxy = proxyWith({ vo: 'testvo', fqans: ['/testvo'] }, rogueServer);
    const { trusted, dropped } = judge(proxy, vomsdir);
    assert.equal(trusted.length, 0);
    assert.match(dropped[0]?.reason ?? '', /not a trusted CA|signature/);
  });

  test("an AC with an FQAN outside its VO is dropped: a VO's server vouches for its own VO only", () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server);
    const proxy = proxyWith({ vo: 'testvo', fqans: ['/testvo', '/atlas/Role=pilot'] });
    const { trusted, dropped } = judge(proxy, vomsdir);
    assert.equal(trusted.length, 0);
    assert.equal(dropped[0]?.reason, 'its FQAN /atlas/Role=pilot is not of its VO testvo');
  });

  test('an expired AC is dropped', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server);
    const { dropped } = judge(standard, vomsdir, new Date(Date.now() + 13 * HOUR_MS));
    assert.match(dropped[0]?.reason ?? '', /^it expired at /);
  });

  test('an AC whose holder is not the proxy\u2019s end-entity certificate is dropped', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server);
    const foreign = proxyWith({ vo: 'testvo', fqans: ['/testvo'] }, server, other);
    const { dropped } = judgeAcs(parseVomsExtension(extensionOf(foreign)), {
      vomsdir,
      certdir,
      now: new Date(),
      eecDer: standard.voms?.eecDer ?? new Uint8Array(0),
      lstat: asRootOnly,
    });
    assert.match(dropped[0]?.reason ?? '', /holder serial .* is not the proxy's end-entity certificate's/);
  });

  test('an AC with a changed FQAN fails its signature and is dropped', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server);
    const [ac] = parseVomsExtension(extensionOf(standard));
    assert.ok(ac);
    const signed = Buffer.from(ac.signedBytes);
    const at = signed.indexOf('/testvo/Role=pilot');
    signed.write('/testvo/Role=admin', at, 'latin1');
    const forged: ParsedAc = { ...ac, fqans: ['/testvo/Role=admin'], signedBytes: signed };
    const { dropped } = judgeAcs([forged], {
      vomsdir,
      certdir,
      now: new Date(),
      eecDer: standard.voms?.eecDer ?? new Uint8Array(0),
      lstat: asRootOnly,
    });
    assert.match(dropped[0]?.reason ?? '', /^its signature does not verify/);
  });

  test('an AC whose issuer is not the server certificate it carries is dropped', () => {
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server);
    const [ac] = parseVomsExtension(extensionOf(standard));
    assert.ok(ac?.holder);
    const renamed: ParsedAc = { ...ac, issuerName: ac.holder.names[0] ?? new Uint8Array(0) };
    const { dropped } = judgeAcs([renamed], {
      vomsdir,
      certdir,
      now: new Date(),
      eecDer: standard.voms?.eecDer ?? new Uint8Array(0),
      lstat: asRootOnly,
    });
    assert.equal(dropped[0]?.reason, `its issuer ${USER} is not the certificate it carries`);
  });

  test('a missing vomsdir drops every AC; a vomsdir others can write is a 202', () => {
    const missing = judge(standard, join(workspace, 'no-such-vomsdir'));
    assert.match(missing.dropped[0]?.reason ?? '', /does not exist/);
    const vomsdir = freshVomsdir();
    writeLsc(vomsdir, 'testvo', server);
    assert.throws(
      () =>
        judgeAcs(parseVomsExtension(extensionOf(standard)), {
          vomsdir,
          certdir,
          now: new Date(),
          eecDer: standard.voms?.eecDer ?? new Uint8Array(0),
        }),
      (error: unknown) => error instanceof GlexecError && error.exitCode === 202 && error.code === 'voms.vomsdir',
    );
  });

  test('readVomsAttributes: undefined without the extension, every AC dropped when it cannot be parsed', () => {
    const plain = { ...standard };
    delete plain.voms;
    assert.equal(readVomsAttributes(plain, { vomsdir: '/nonexistent', certdir, now: new Date() }), undefined);
    const broken: VerifiedProxy = {
      ...standard,
      voms: { extension: new Uint8Array([0x30, 0x03, 0x30, 0x01]), eecDer: new Uint8Array(0) },
    };
    const judgement = readVomsAttributes(broken, { vomsdir: '/nonexistent', certdir, now: new Date() });
    assert.equal(judgement?.trusted.length, 0);
    assert.match(judgement?.dropped[0]?.reason ?? '', /not valid ASN\.1|cannot be parsed/);
  });

  test('parseLsc reads DN chains separated by dashes, skipping comments and blank lines', () => {
    assert.deepEqual(parseLsc('# c\n/CN=a\n/CN=ca\n------ NEXT CHAIN ------\n\n/CN=b\r\n/CN=ca2\n'), [
      ['/CN=a', '/CN=ca'],
      ['/CN=b', '/CN=ca2'],
    ]);
  });

  describe('hostile extensions are refused with AcParseError, never another error', () => {
    const refusedOrParsed = (bytes: Uint8Array): void => {
      try {
        parseVomsExtension(bytes);
      } catch (error) {
        assert.ok(error instanceof AcParseError, `not an AcParseError: ${String(error)}`);
      }
    };

    test('every truncation of a real extension', () => {
      const real = extensionOf(standard);
      for (let length = 0; length < real.byteLength; length++) {
        assert.throws(() => parseVomsExtension(real.subarray(0, length)), AcParseError);
      }
    });

    test('random byte changes of a real extension', () => {
      const real = extensionOf(standard);
      fc.assert(
        fc.property(
          fc.array(fc.tuple(fc.nat({ max: real.byteLength - 1 }), fc.integer({ min: 0, max: 255 })), {
            minLength: 1,
            maxLength: 8,
          }),
          (changes) => {
            const bytes = Uint8Array.from(real);
            for (const [at, value] of changes) bytes[at] = value;
            refusedOrParsed(bytes);
          },
        ),
        { numRuns: 300 },
      );
    });

    test('random bytes and random DER-like structures', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => refusedOrParsed(bytes)),
        { numRuns: 500 },
      );
      const tlv = fc.letrec<{ node: Uint8Array }>((tie) => ({
        node: fc.oneof(
          { depthSize: 'small' },
          fc.uint8Array({ maxLength: 8 }).map((content) => Uint8Array.from([0x04, content.length, ...content])),
          fc.array(tie('node'), { maxLength: 4 }).map((children) => {
            const content = Buffer.concat(children);
            return content.length < 128
              ? Uint8Array.from([0x30, content.length, ...content])
              : Uint8Array.from([0x30, 0x82, content.length >> 8, content.length & 0xff, ...content]);
          }),
        ),
      })).node;
      fc.assert(
        fc.property(tlv, (bytes) => refusedOrParsed(bytes)),
        { numRuns: 500 },
      );
    });

    test('deep nesting, an oversized extension, and lengths past the end', () => {
      const depth = 20000;
      const nested = new Uint8Array(depth * 2);
      for (let i = 0; i < depth; i++) {
        nested[i * 2] = 0x30;
        nested[i * 2 + 1] = 0x80; // indefinite length, never closed
      }
      assert.throws(() => parseVomsExtension(nested), AcParseError);
      assert.throws(() => parseVomsExtension(new Uint8Array(MAX_EXTENSION_BYTES + 1)), /larger than/);
      assert.throws(
        () => parseVomsExtension(Uint8Array.from([0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30])),
        AcParseError,
      );
      const twice = Buffer.concat([extensionOf(standard), extensionOf(standard)]);
      assert.throws(() => parseVomsExtension(twice), /bytes after its end/);
    });
  });
});
