/**
 * A minimal reader for DER (the X.509 binary encoding): just enough to walk a certificate's
 * TBSCertificate, names and extensions. node:crypto's X509Certificate has already parsed each
 * certificate with OpenSSL before we get here; this reader is strict anyway (definite, minimal
 * lengths; nothing past the end of its parent), because it looks at attacker-supplied bytes.
 */

/** Universal tags (class, constructed bit and number in one identifier byte). */
export const Tag = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  objectIdentifier: 0x06,
  utf8String: 0x0c,
  numericString: 0x12,
  printableString: 0x13,
  t61String: 0x14,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  visibleString: 0x1a,
  universalString: 0x1c,
  bmpString: 0x1e,
  sequence: 0x30,
  set: 0x31,
} as const;

/** Identifier byte of a context-specific tag [n]: constructed for EXPLICIT, primitive for IMPLICIT. */
export const contextTag = (tagNumber: number, constructed: boolean): number =>
  0x80 | (constructed ? 0x20 : 0) | tagNumber;

export class DerError extends Error {
  override readonly name = 'DerError';
}

/** One TLV inside `bytes`; offsets are absolute so elements can be sliced without copying. */
export interface DerElement {
  readonly bytes: Uint8Array;
  /** The identifier byte. High tag numbers (≥ 31) are refused: X.509 never uses them. */
  readonly tag: number;
  /** Offset of the identifier byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just past the last content byte. */
  readonly end: number;
}

const isConstructed = (tag: number): boolean => (tag & 0x20) !== 0;

/** Reads the element starting at `offset`, which must end at or before `limit`. */
export function readElement(bytes: Uint8Array, offset = 0, limit: number = bytes.length): DerElement {
  if (offset + 2 > limit) throw new DerError(`truncated element at offset ${offset}`);
  const tag = bytes[offset] as number;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`high tag number at offset ${offset}`);
  const firstLengthByte = bytes[offset + 1] as number;
  let contentStart = offset + 2;
  let length: number;
  if (firstLengthByte < 0x80) {
    length = firstLengthByte;
  } else {
    const lengthBytes = firstLengthByte & 0x7f;
    // 0x80 is BER's indefinite length (not DER); more than 4 length bytes is never a certificate.
    if (lengthBytes === 0 || lengthBytes > 4) throw new DerError(`bad length at offset ${offset}`);
    if (contentStart + lengthBytes > limit) throw new DerError(`truncated length at offset ${offset}`);
    length = 0;
    for (let i = 0; i < lengthBytes; i++) length = length * 256 + (bytes[contentStart + i] as number);
    contentStart += lengthBytes;
    // DER: the shortest form only.
    if (length < 0x80 || bytes[offset + 2] === 0) throw new DerError(`non-minimal length at offset ${offset}`);
  }
  const end = contentStart + length;
  if (end > limit) throw new DerError(`element at offset ${offset} runs past its container`);
  return { bytes, tag, start: offset, contentStart, end };
}

/** Reads `bytes` as exactly one element (of `expectedTag` if given), with nothing after it. */
export function readRoot(bytes: Uint8Array, expectedTag?: number): DerElement {
  const element = readElement(bytes, 0);
  if (expectedTag !== undefined) expectTag(element, expectedTag);
  if (element.end !== bytes.length) throw new DerError('trailing bytes after the outer element');
  return element;
}

export function expectTag(element: DerElement, expectedTag: number): DerElement {
  if (element.tag !== expectedTag) {
    throw new DerError(
      `expected tag 0x${expectedTag.toString(16)} at offset ${element.start}, found 0x${element.tag.toString(16)}`,
    );
  }
  return element;
}

/** The elements directly inside a constructed element, in order. */
export function childrenOf(parent: DerElement): DerElement[] {
  if (!isConstructed(parent.tag)) throw new DerError(`primitive element at offset ${parent.start} has no children`);
  const children: DerElement[] = [];
  let offset = parent.contentStart;
  while (offset < parent.end) {
    const child = readElement(parent.bytes, offset, parent.end);
    children.push(child);
    offset = child.end;
  }
  return children;
}

export const contentOf = (element: DerElement): Uint8Array => element.bytes.subarray(element.contentStart, element.end);

/** The whole TLV, header included. */
export const encodingOf = (element: DerElement): Uint8Array => element.bytes.subarray(element.start, element.end);

/** Dotted-decimal form of an OBJECT IDENTIFIER, e.g. `1.3.6.1.5.5.7.1.14`. */
export function decodeOid(element: DerElement): string {
  expectTag(element, Tag.objectIdentifier);
  const content = contentOf(element);
  if (content.length === 0) throw new DerError(`empty OID at offset ${element.start}`);
  const arcs: number[] = [];
  let value = 0;
  let arcStarted = false;
  for (const byte of content) {
    // A leading 0x80 would be a non-minimal arc encoding.
    if (!arcStarted && byte === 0x80) throw new DerError(`non-minimal OID arc at offset ${element.start}`);
    arcStarted = true;
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError(`OID arc too large at offset ${element.start}`);
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
      arcStarted = false;
    }
  }
  if (arcStarted) throw new DerError(`truncated OID at offset ${element.start}`);
  const first = arcs[0] as number;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

export function decodeBoolean(element: DerElement): boolean {
  expectTag(element, Tag.boolean);
  const content = contentOf(element);
  // DER: exactly one byte, 0x00 or 0xFF.
  if (content.length !== 1 || (content[0] !== 0x00 && content[0] !== 0xff)) {
    throw new DerError(`bad BOOLEAN at offset ${element.start}`);
  }
  return content[0] === 0xff;
}

/** A non-negative INTEGER small enough for a JavaScript number (path lengths, versions). */
export function decodeSmallUnsignedInteger(element: DerElement): number {
  expectTag(element, Tag.integer);
  const content = contentOf(element);
  if (content.length === 0 || content.length > 6) throw new DerError(`unsupported INTEGER at offset ${element.start}`);
  if (((content[0] as number) & 0x80) !== 0) throw new DerError(`negative INTEGER at offset ${element.start}`);
  if (content.length > 1 && content[0] === 0 && ((content[1] as number) & 0x80) === 0) {
    throw new DerError(`non-minimal INTEGER at offset ${element.start}`);
  }
  let value = 0;
  for (const byte of content) value = value * 256 + byte;
  return value;
}

/** A BIT STRING's unused-bit count and payload. */
export function decodeBitString(element: DerElement): { unusedBits: number; bits: Uint8Array } {
  expectTag(element, Tag.bitString);
  const content = contentOf(element);
  const unusedBits = content[0];
  if (unusedBits === undefined || unusedBits > 7 || (content.length === 1 && unusedBits !== 0)) {
    throw new DerError(`bad BIT STRING at offset ${element.start}`);
  }
  return { unusedBits, bits: content.subarray(1) };
}

/** UTCTime or GeneralizedTime in the RFC 5280 profile: `YYMMDDHHMMSSZ` / `YYYYMMDDHHMMSSZ`. */
export function decodeTime(element: DerElement): Date {
  const text = Buffer.from(contentOf(element)).toString('latin1');
  let match: RegExpExecArray | null;
  let year: number;
  if (element.tag === Tag.utcTime) {
    match = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (match === null) throw new DerError(`bad UTCTime at offset ${element.start}`);
    const yy = Number(match[1]);
    year = yy < 50 ? 2000 + yy : 1900 + yy; // RFC 5280 §4.1.2.5.1
  } else if (element.tag === Tag.generalizedTime) {
    match = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text);
    if (match === null) throw new DerError(`bad GeneralizedTime at offset ${element.start}`);
    year = Number(match[1]);
  } else {
    throw new DerError(`expected a time at offset ${element.start}`);
  }
  const [month, day, hour, minute, second] = match.slice(2, 7).map(Number) as [number, number, number, number, number];
  const millis = Date.UTC(year, month - 1, day, hour, minute, second);
  const date = new Date(millis);
  // Date.UTC silently rolls over (month 13, day 32); a real calendar date must round-trip.
  if (
    date.getUTCFullYear() !== year ||
    date.getUTCMonth() !== month - 1 ||
    date.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    throw new DerError(`impossible date at offset ${element.start}`);
  }
  return date;
}
