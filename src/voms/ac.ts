/**
 * The VOMS attribute certificates (RFC 3281/5755 ACs) a proxy carries in its extension
 * 1.3.6.1.4.1.8005.100.100.5, parsed with the @peculiar ASN.1 schemas (asn1js underneath). Only
 * parsing happens here; whether an AC is to be believed is src/voms/trust.ts. This module and its
 * libraries are loaded only for a proxy that has the extension (src/voms/load.ts).
 *
 * The extension holds SEQUENCE OF (SEQUENCE OF AttributeCertificate). Inside an AC, the VOMS
 * attribute 1.3.6.1.4.1.8005.100.100.4 is an IetfAttrSyntax whose policyAuthority is the URI
 * `<vo>://<host>:<port>` and whose values are the FQANs, in the order the server gave them.
 */
import { AsnParser, AsnProp, AsnPropTypes, AsnSerializer, AsnType, AsnTypeTypes } from '@peculiar/asn1-schema';
import { GeneralName, type Name } from '@peculiar/asn1-x509';
import { AttributeCertificate } from '@peculiar/asn1-x509-attr';
import * as asn1js from 'asn1js';

const VOMS_ATTRIBUTE_OID = '1.3.6.1.4.1.8005.100.100.4';
const AC_CERTS_OID = '1.3.6.1.4.1.8005.100.100.10';
const AC_GENERIC_ATTRIBUTES_OID = '1.3.6.1.4.1.8005.100.100.11';
const AC_TARGETS_OID = '2.5.29.55';

/** A VOMS extension is a few KiB (the ACs and the server's certificate); far more is not one. */
export const MAX_EXTENSION_BYTES = 128 * 1024;
const MAX_ACS = 16;
const MAX_FQANS = 256;
const MAX_GENERIC_ATTRIBUTES = 256;
const MAX_AC_CERTIFICATES = 8;
const MAX_TEXT_BYTES = 1024;

export class AcParseError extends Error {
  override readonly name = 'AcParseError';
}

export interface GenericAttribute {
  readonly name: string;
  readonly value: string;
  readonly qualifier: string;
}

export interface ParsedAc {
  /** From the policyAuthority `<vo>://<host>:<port>`. */
  readonly vo: string;
  readonly host: string;
  readonly port: string;
  /** The FQANs as the AC holds them, first (the primary) first. */
  readonly fqans: readonly string[];
  readonly attributes: readonly GenericAttribute[];
  /** DER of the issuer name (v2Form issuerName, a directoryName). */
  readonly issuerName: Uint8Array;
  readonly serialHex: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** baseCertificateID: the holder certificate's serial and one directoryName. */
  readonly holder: { readonly serialHex: string; readonly names: readonly Uint8Array[] } | undefined;
  /** The VOMS server certificates the AC carries (DER), the signer first. */
  readonly certificates: readonly Uint8Array[];
  /** Critical extensions glexec does not process (the AC is then dropped). */
  readonly unknownCriticalExtensions: readonly string[];
  readonly hasTargets: boolean;
  /** The exact bytes of acinfo, which the signature covers. */
  readonly signedBytes: Uint8Array;
  readonly signatureAlgorithm: string;
  readonly signature: Uint8Array;
}

// The VOMS-specific structures, declared with the library's decorators applied by hand (the
// project compiles without experimentalDecorators).

/** IetfAttrSyntax as VOMS writes it: the values are OCTET STRINGs. */
class VomsIetfAttr {
  policyAuthority?: GeneralName[];
  values: ArrayBuffer[] = [];
}
AsnType({ type: AsnTypeTypes.Sequence })(VomsIetfAttr);
AsnProp({ type: GeneralName, context: 0, implicit: true, repeated: 'sequence', optional: true })(
  VomsIetfAttr.prototype,
  'policyAuthority',
);
AsnProp({ type: AsnPropTypes.OctetString, repeated: 'sequence' })(VomsIetfAttr.prototype, 'values');

/** One generic attribute: name, value, qualifier. */
class VomsGenericAttribute {
  name = new ArrayBuffer(0);
  value = new ArrayBuffer(0);
  qualifier = new ArrayBuffer(0);
}
AsnType({ type: AsnTypeTypes.Sequence })(VomsGenericAttribute);
for (const field of ['name', 'value', 'qualifier'] as const)
  AsnProp({ type: AsnPropTypes.OctetString })(VomsGenericAttribute.prototype, field);

class VomsGenericAttributeHolder {
  grantor: GeneralName[] = [];
  attributes: VomsGenericAttribute[] = [];
}
AsnType({ type: AsnTypeTypes.Sequence })(VomsGenericAttributeHolder);
AsnProp({ type: GeneralName, repeated: 'sequence' })(VomsGenericAttributeHolder.prototype, 'grantor');
AsnProp({ type: VomsGenericAttribute, repeated: 'sequence' })(VomsGenericAttributeHolder.prototype, 'attributes');

class VomsGenericAttributes {
  holders: VomsGenericAttributeHolder[] = [];
}
AsnType({ type: AsnTypeTypes.Sequence })(VomsGenericAttributes);
AsnProp({ type: VomsGenericAttributeHolder, repeated: 'sequence' })(VomsGenericAttributes.prototype, 'holders');

const fail = (why: string): never => {
  throw new AcParseError(why);
};

const bytesOf = (buffer: ArrayBuffer | ArrayBufferView): Uint8Array =>
  buffer instanceof ArrayBuffer
    ? new Uint8Array(buffer)
    : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);

/** Strict BER decoding of a whole buffer: no trailing bytes. */
function decodeWhole(bytes: Uint8Array, what: string): asn1js.AsnType {
  const decoded = asn1js.fromBER(bytes);
  if (decoded.offset === -1 || decoded.result.error !== '') fail(`${what} is not valid ASN.1`);
  if (decoded.offset !== bytes.byteLength) fail(`${what} has bytes after its end`);
  return decoded.result;
}

/** The elements of a SEQUENCE (as asn1js decoded it), each with its exact encoding. */
function sequenceItems(element: asn1js.AsnType, what: string): asn1js.AsnType[] {
  if (!(element instanceof asn1js.Sequence)) return fail(`${what} is not a SEQUENCE`);
  return element.valueBlock.value;
}

const encodingOf = (element: asn1js.AsnType): Uint8Array => new Uint8Array(element.valueBeforeDecodeView);

function text(octets: ArrayBuffer | Uint8Array, what: string): string {
  const bytes = bytesOf(octets);
  if (bytes.byteLength > MAX_TEXT_BYTES) fail(`${what} is longer than ${MAX_TEXT_BYTES} bytes`);
  // FQANs and attribute names reach logs, records and the epilogue's environment: printable ASCII only.
  for (const byte of bytes) if (byte < 0x20 || byte > 0x7e) fail(`${what} holds a byte that is not printable ASCII`);
  return Buffer.from(bytes).toString('latin1');
}

function parseAuthority(uri: string | undefined): { vo: string; host: string; port: string } {
  const match = /^([^:/]+):\/\/([^:/]+):([0-9]{1,5})$/.exec(uri ?? '');
  if (match === null) return fail(`the policyAuthority '${uri ?? ''}' is not <vo>://<host>:<port>`);
  return { vo: match[1] as string, host: match[2] as string, port: match[3] as string };
}

function parseFqans(ac: AttributeCertificate): { vo: string; host: string; port: string; fqans: string[] } {
  const attributes = ac.acinfo.attributes.filter((attribute) => attribute.type === VOMS_ATTRIBUTE_OID);
  const [attribute, ...more] = attributes;
  if (attribute === undefined) return fail('the AC has no VOMS attribute');
  if (more.length > 0 || attribute.values.length !== 1) fail('the AC has more than one VOMS attribute');
  const syntax = AsnParser.parse(attribute.values[0] as ArrayBuffer, VomsIetfAttr);
  const authority = syntax.policyAuthority;
  if (authority?.length !== 1) fail('the VOMS attribute does not name exactly one policy authority');
  const where = parseAuthority(text(Buffer.from(authority?.[0]?.uniformResourceIdentifier ?? ''), 'the VO URI'));
  if (syntax.values.length === 0) fail('the AC holds no FQAN');
  if (syntax.values.length > MAX_FQANS) fail(`the AC holds more than ${MAX_FQANS} FQANs`);
  const fqans = syntax.values.map((value) => text(value, 'an FQAN'));
  // A comma or blank would make the comma-separated GLEXEC_EPILOG_TARGET_FQANS ambiguous; no VOMS server writes one.
  for (const fqan of fqans)
    if (!/^\/[^\s,]+$/.test(fqan)) fail(`the FQAN '${fqan}' does not start with / or holds a comma or blank`);
  return { ...where, fqans };
}

function parseGenericAttributes(value: ArrayBuffer): GenericAttribute[] {
  const parsed = AsnParser.parse(value, VomsGenericAttributes);
  const attributes = parsed.holders.flatMap((holder) => holder.attributes);
  if (attributes.length > MAX_GENERIC_ATTRIBUTES)
    fail(`the AC holds more than ${MAX_GENERIC_ATTRIBUTES} generic attributes`);
  return attributes.map((attribute) => ({
    name: text(attribute.name, 'a generic attribute name'),
    value: text(attribute.value, 'a generic attribute value'),
    qualifier: text(attribute.qualifier, 'a generic attribute qualifier'),
  }));
}

/** The certificates of the extension 8005.100.100.10: SEQUENCE { SEQUENCE OF Certificate }, exact bytes. */
function parseAcCertificates(value: ArrayBuffer): Uint8Array[] {
  const [inner, ...rest] = sequenceItems(
    decodeWhole(new Uint8Array(value), 'the AC certificates'),
    'the AC certificates',
  );
  if (inner === undefined || rest.length > 0) return fail('the AC certificates are not one SEQUENCE OF');
  const certificates = sequenceItems(inner, 'the AC certificate list');
  if (certificates.length > MAX_AC_CERTIFICATES) fail(`the AC carries more than ${MAX_AC_CERTIFICATES} certificates`);
  // node:crypto's X509Certificate parses each one when the AC is judged (src/voms/trust.ts).
  return certificates.map(encodingOf);
}

function parseOneAc(der: Uint8Array, signedElement: asn1js.AsnType): ParsedAc {
  const ac = AsnParser.parse(der, AttributeCertificate);
  const info = ac.acinfo;
  if (info.version !== 1) fail(`the AC has version ${Number(info.version) + 1}, not 2`);
  const issuerNames = info.issuer.v2Form?.issuerName ?? [];
  const issuerName = issuerNames.length === 1 ? issuerNames[0]?.directoryName : undefined;
  if (issuerName === undefined) return fail('the AC issuer is not one directoryName (v2Form)');
  const base = info.holder.baseCertificateID;
  const holder =
    base === undefined
      ? undefined
      : {
          serialHex: Buffer.from(base.serial).toString('hex'),
          names: Array.from(base.issuer, (name) =>
            name.directoryName === undefined ? new Uint8Array(0) : serializeName(name.directoryName),
          ),
        };
  let certificates: Uint8Array[] = [];
  let attributes: GenericAttribute[] = [];
  let hasTargets = false;
  const unknownCriticalExtensions: string[] = [];
  const seen = new Set<string>();
  for (const extension of info.extensions ?? []) {
    if (seen.has(extension.extnID)) fail(`the AC has the extension ${extension.extnID} twice`);
    seen.add(extension.extnID);
    const value = extension.extnValue.buffer;
    if (extension.extnID === AC_CERTS_OID) certificates = parseAcCertificates(value);
    else if (extension.extnID === AC_GENERIC_ATTRIBUTES_OID) attributes = parseGenericAttributes(value);
    else if (extension.extnID === AC_TARGETS_OID) hasTargets = true;
    else if (extension.critical) unknownCriticalExtensions.push(extension.extnID);
  }
  const { notBeforeTime, notAfterTime } = info.attrCertValidityPeriod;
  if (Number.isNaN(notBeforeTime.getTime()) || Number.isNaN(notAfterTime.getTime()))
    fail('the AC validity is not a valid time');
  return {
    ...parseFqans(ac),
    attributes,
    issuerName: serializeName(issuerName),
    serialHex: Buffer.from(info.serialNumber).toString('hex'),
    notBefore: notBeforeTime,
    notAfter: notAfterTime,
    holder,
    certificates,
    unknownCriticalExtensions,
    hasTargets,
    signedBytes: encodingOf(signedElement),
    signatureAlgorithm: ac.signatureAlgorithm.algorithm,
    signature: bytesOf(ac.signatureValue),
  };
}
const serializeName = (name: Name): Uint8Array => new Uint8Array(AsnSerializer.serialize(name));

/**
 * Every AC of a VOMS extension's value (the OCTET STRING's content), in order. Anything that is
 * not a well-formed VOMS AC throws AcParseError; any other exception from the decoders (a
 * stack overflow on absurd nesting, say) is turned into one too.
 */
export function parseVomsExtension(value: Uint8Array): ParsedAc[] {
  if (value.byteLength > MAX_EXTENSION_BYTES) fail(`the VOMS extension is larger than ${MAX_EXTENSION_BYTES} bytes`);
  try {
    const lists = sequenceItems(decodeWhole(value, 'the VOMS extension'), 'the VOMS extension');
    const acs = lists.flatMap((list) => sequenceItems(list, 'an AC list'));
    if (acs.length === 0) fail('the VOMS extension holds no AC');
    if (acs.length > MAX_ACS) fail(`the VOMS extension holds more than ${MAX_ACS} ACs`);
    return acs.map((element) => {
      const [signed] = sequenceItems(element, 'an AC');
      if (signed === undefined) return fail('an AC is empty');
      return parseOneAc(encodingOf(element), signed);
    });
  } catch (error) {
    if (error instanceof AcParseError) throw error;
    throw new AcParseError(`the VOMS extension cannot be parsed (${error instanceof Error ? error.message : 'error'})`);
  }
}
