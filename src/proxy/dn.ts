/**
 * X.509 distinguished names: OpenSSL's "oneline" text form (the form grid-mapfiles and LCMAPS use)
 * and OpenSSL's subject hash (the `<hash>.0` file names of a CA directory).
 */

import { isUtf8 } from 'node:buffer';
import { hash } from 'node:crypto';

import {
  DerError,
  type DerElement,
  Tag,
  childrenOf,
  contentOf,
  decodeOid,
  encodingOf,
  expectTag,
  readRoot,
} from './der';

export interface NameAttribute {
  /** Dotted attribute type, e.g. `2.5.4.3`. */
  readonly oid: string;
  /** The attribute type's OBJECT IDENTIFIER TLV, reused verbatim in the canonical encoding. */
  readonly oidEncoding: Uint8Array;
  /** The value's tag (UTF8String, PrintableString, ...). */
  readonly valueTag: number;
  /** The value's content octets. */
  readonly value: Uint8Array;
  /** The value's whole TLV. */
  readonly valueEncoding: Uint8Array;
}

/** One relative distinguished name: usually one attribute, several for a multi-valued RDN. */
export type RelativeName = readonly NameAttribute[];

export interface X509Name {
  readonly rdns: readonly RelativeName[];
  /** Each RDN's DER (its SET TLV), parallel to rdns: for a byte comparison before the canonical one. */
  readonly rdnEncodings: readonly Uint8Array[];
}

/** OpenSSL's short names (OBJ_nid2sn) for the attribute types found in certificate names. */
const shortNames: ReadonlyMap<string, string> = new Map([
  ['2.5.4.3', 'CN'],
  ['2.5.4.4', 'SN'],
  ['2.5.4.5', 'serialNumber'],
  ['2.5.4.6', 'C'],
  ['2.5.4.7', 'L'],
  ['2.5.4.8', 'ST'],
  ['2.5.4.9', 'street'],
  ['2.5.4.10', 'O'],
  ['2.5.4.11', 'OU'],
  ['2.5.4.12', 'title'],
  ['2.5.4.13', 'description'],
  ['2.5.4.15', 'businessCategory'],
  ['2.5.4.16', 'postalAddress'],
  ['2.5.4.17', 'postalCode'],
  ['2.5.4.18', 'postOfficeBox'],
  ['2.5.4.41', 'name'],
  ['2.5.4.42', 'GN'],
  ['2.5.4.43', 'initials'],
  ['2.5.4.44', 'generationQualifier'],
  ['2.5.4.45', 'x500UniqueIdentifier'],
  ['2.5.4.46', 'dnQualifier'],
  ['2.5.4.65', 'pseudonym'],
  ['2.5.4.72', 'role'],
  ['2.5.4.97', 'organizationIdentifier'],
  ['1.2.840.113549.1.9.1', 'emailAddress'],
  ['1.2.840.113549.1.9.2', 'unstructuredName'],
  ['1.2.840.113549.1.9.8', 'unstructuredAddress'],
  ['0.9.2342.19200300.100.1.1', 'UID'],
  ['0.9.2342.19200300.100.1.3', 'mail'],
  ['0.9.2342.19200300.100.1.25', 'DC'],
  ['1.3.6.1.4.1.311.60.2.1.1', 'jurisdictionL'],
  ['1.3.6.1.4.1.311.60.2.1.2', 'jurisdictionST'],
  ['1.3.6.1.4.1.311.60.2.1.3', 'jurisdictionC'],
]);

export const COMMON_NAME_OID = '2.5.4.3';

/** Parses a DER Name (SEQUENCE OF SET OF AttributeTypeAndValue). Throws DerError. */
export function parseName(nameDer: Uint8Array): X509Name {
  return parseNameElement(readRoot(nameDer, Tag.sequence));
}

export function parseNameElement(nameElement: DerElement): X509Name {
  expectTag(nameElement, Tag.sequence);
  const rdnElements = childrenOf(nameElement);
  const rdns = rdnElements.map((rdnElement): RelativeName => {
    expectTag(rdnElement, Tag.set);
    const attributes = childrenOf(rdnElement).map((attributeElement): NameAttribute => {
      expectTag(attributeElement, Tag.sequence);
      const parts = childrenOf(attributeElement);
      const [typeElement, valueElement] = parts;
      if (parts.length !== 2 || typeElement === undefined || valueElement === undefined) {
        throw new DerError(`name attribute at offset ${attributeElement.start} is not a (type, value) pair`);
      }
      return {
        oid: decodeOid(typeElement),
        oidEncoding: encodingOf(typeElement),
        valueTag: valueElement.tag,
        value: contentOf(valueElement),
        valueEncoding: encodingOf(valueElement),
      };
    });
    if (attributes.length === 0) throw new DerError(`empty RDN at offset ${rdnElement.start}`);
    return attributes;
  });
  return { rdns, rdnEncodings: rdnElements.map(encodingOf) };
}

/** The name without its last RDN (a proxy's subject without its proxy CN is its issuer's). */
export const withoutLastRdn = (name: X509Name): X509Name => ({
  rdns: name.rdns.slice(0, -1),
  rdnEncodings: name.rdnEncodings.slice(0, -1),
});

/**
 * Equality as OpenSSL's X509_NAME_cmp sees it: equal canonical encodings. Byte-identical names
 * (the usual case along a chain) are equal without canonicalising.
 */
export function namesEqual(a: X509Name, b: X509Name): boolean {
  const sameBytes =
    a.rdnEncodings.length === b.rdnEncodings.length &&
    a.rdnEncodings.every((rdn, i) => Buffer.compare(rdn, b.rdnEncodings[i] as Uint8Array) === 0);
  if (sameBytes) return true;
  return canonicalEncoding(a).equals(canonicalEncoding(b));
}

const HEX_DIGITS = '0123456789ABCDEF';

/**
 * OpenSSL 3's X509_NAME_oneline: `/type=value` per RDN, `+` between the attributes of a
 * multi-valued RDN, `/` and `+` inside values escaped with a backslash, and every byte outside
 * printable ASCII (0x20..0x7E) written as `\xHH`. The value's raw content octets are printed
 * whatever the string type, as OpenSSL does (a BMPString shows its zero bytes as `\x00`).
 * The result therefore never contains a control character. Unlike OpenSSL 3.0 (and so LCMAPS),
 * a backslash in a value is escaped as `\\`: otherwise `CN=José` and a CN holding the text
 * `Jos\xC3\xA9` read alike, and the second would map to the first's account. This is the one
 * place glexec's DN differs from OpenSSL's, on purpose (README, LCMAPS differences).
 */
export function formatOneline(name: X509Name): string {
  let text = '';
  for (const rdn of name.rdns) {
    rdn.forEach((attribute, index) => {
      text += index === 0 ? '/' : '+';
      text += shortNames.get(attribute.oid) ?? attribute.oid;
      text += '=';
      text += escapeValue(attribute);
    });
  }
  return text;
}

export const onelineFromDer = (nameDer: Uint8Array): string => formatOneline(parseName(nameDer));

function escapeValue(attribute: NameAttribute): string {
  let text = '';
  for (const byte of attribute.value) {
    if (byte < 0x20 || byte > 0x7e) {
      text += `\\x${HEX_DIGITS[byte >> 4]}${HEX_DIGITS[byte & 0x0f]}`;
    } else {
      if (byte === 0x2f /* / */ || byte === 0x2b /* + */ || byte === 0x5c /* \ */) text += '\\';
      text += String.fromCharCode(byte);
    }
  }
  return text;
}

/**
 * OpenSSL's X509_NAME_hash: the first four bytes of SHA-1 over the canonical encoding, read
 * little-endian, as 8 lowercase hex digits. `nameDer` is the whole Name TLV.
 */
export const subjectHash = (nameDer: Uint8Array): string => nameHash(parseName(nameDer));

export function nameHash(name: X509Name): string {
  const digest = hash('sha1', canonicalEncoding(name), 'buffer');
  return digest.readUInt32LE(0).toString(16).padStart(8, '0');
}

/**
 * OpenSSL's canonical name encoding (x509_name_canon), used both for the hash and for comparing
 * names (X509_NAME_cmp): each RDN re-encoded as a DER SET with string values converted to
 * UTF8String, trimmed, inner whitespace collapsed and ASCII lowercased; the RDNs concatenated
 * without the outer SEQUENCE header.
 */
export function canonicalEncoding(name: X509Name): Buffer {
  let canonical = canonicalCache.get(name);
  if (canonical === undefined) {
    canonical = computeCanonicalEncoding(name);
    canonicalCache.set(name, canonical);
  }
  return canonical;
}

const canonicalCache = new WeakMap<X509Name, Buffer>();

function computeCanonicalEncoding(name: X509Name): Buffer {
  const sets = name.rdns.map((rdn) => {
    const attributes = rdn.map((attribute) =>
      encodeTlv(Tag.sequence, Buffer.concat([attribute.oidEncoding, canonicalValueEncoding(attribute)])),
    );
    // DER orders the members of a SET OF by their encodings; OpenSSL's encoder does the same.
    attributes.sort(Buffer.compare);
    return encodeTlv(Tag.set, Buffer.concat(attributes));
  });
  return Buffer.concat(sets);
}

/** String types that OpenSSL canonicalises; any other value is kept as it is. */
const canonicalisedTags: ReadonlySet<number> = new Set([
  Tag.utf8String,
  Tag.bmpString,
  Tag.universalString,
  Tag.printableString,
  Tag.t61String,
  Tag.ia5String,
  Tag.visibleString,
]);

function canonicalValueEncoding(attribute: NameAttribute): Buffer {
  if (!canonicalisedTags.has(attribute.valueTag)) return Buffer.from(attribute.valueEncoding);
  return encodeTlv(Tag.utf8String, canonicaliseUtf8(toUtf8(attribute)));
}

/** Mirrors ASN1_STRING_to_UTF8: one-byte types are Latin-1, BMP is UCS-2, Universal is UCS-4. */
function toUtf8(attribute: NameAttribute): Buffer {
  const bytes = attribute.value;
  switch (attribute.valueTag) {
    case Tag.utf8String:
      if (!isUtf8(bytes)) throw new DerError('name attribute holds invalid UTF-8');
      return Buffer.from(bytes);
    case Tag.bmpString:
      return codePointsToUtf8(bytes, 2);
    case Tag.universalString:
      return codePointsToUtf8(bytes, 4);
    default:
      return Buffer.from(Buffer.from(bytes).toString('latin1'), 'utf8');
  }
}

function codePointsToUtf8(bytes: Uint8Array, width: 2 | 4): Buffer {
  if (bytes.length % width !== 0) throw new DerError(`name attribute length is not a multiple of ${width}`);
  let text = '';
  for (let i = 0; i < bytes.length; i += width) {
    let codePoint = 0;
    for (let j = 0; j < width; j++) codePoint = codePoint * 256 + (bytes[i + j] as number);
    if (codePoint > 0x10ffff || (codePoint >= 0xd800 && codePoint <= 0xdfff)) {
      throw new DerError('name attribute holds an invalid character');
    }
    text += String.fromCodePoint(codePoint);
  }
  return Buffer.from(text, 'utf8');
}

/** C isspace() in the C locale: space, \t, \n, \v, \f, \r. */
const isAsciiSpace = (byte: number): boolean => byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);

function canonicaliseUtf8(utf8: Buffer): Buffer {
  let start = 0;
  let end = utf8.length;
  while (start < end && isAsciiSpace(utf8[start] as number)) start++;
  while (end > start && isAsciiSpace(utf8[end - 1] as number)) end--;
  const out: number[] = [];
  for (let i = start; i < end;) {
    const byte = utf8[i] as number;
    if (isAsciiSpace(byte)) {
      out.push(0x20);
      while (i < end && isAsciiSpace(utf8[i] as number)) i++;
      continue;
    }
    out.push(byte >= 0x41 && byte <= 0x5a ? byte + 0x20 : byte);
    i++;
  }
  return Buffer.from(out);
}

/** DER TLV with a definite, minimal length. */
function encodeTlv(tag: number, content: Uint8Array): Buffer {
  const length = content.length;
  let header: number[];
  if (length < 0x80) {
    header = [tag, length];
  } else {
    const lengthBytes: number[] = [];
    for (let remaining = length; remaining > 0; remaining = Math.floor(remaining / 256)) {
      lengthBytes.unshift(remaining % 256);
    }
    header = [tag, 0x80 | lengthBytes.length, ...lengthBytes];
  }
  return Buffer.concat([Buffer.from(header), content]);
}
