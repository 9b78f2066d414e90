/**
 * Caller-controlled text (argv, environment, DNs, paths) must never put a raw newline or other
 * control character into a log line or onto the caller's terminal. C0, DEL, C1, the Unicode line
 * and paragraph separators and the format characters (bidi overrides, zero-width ones, which can
 * make a log line read otherwise than it is) are written as visible escapes.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]|\p{Cf}/gu;

export function escapeControl(text: string): string {
  return text.replace(CONTROL, (char) => {
    const code = char.codePointAt(0) ?? 0;
    return code <= 0xff
      ? `\\x${code.toString(16).toUpperCase().padStart(2, '0')}`
      : `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
  });
}

/**
 * Bounds for what one log record may hold: a syslog datagram larger than the socket allows is
 * dropped silently, so a caller with a huge argv could otherwise keep its job out of the log.
 * Strings are cut after escaping (an escaped control character takes four or six characters), and
 * the whole record is then held to MAX_RECORD_BYTES by tighter bounds (boundRecord).
 */
export const MAX_LOGGED_STRING = 1024;
export const MAX_LOGGED_ITEMS = 64;
/** Characters of a record's message (after escaping): it may quote a path the caller chose. */
const MAX_LOGGED_MESSAGE = 512;
/** The most one record may take, as JSON (pino adds about 80 bytes of time, level and pid). */
export const MAX_RECORD_BYTES = 4096;

export interface Bounds {
  /** Characters of a string, counted after escaping. */
  readonly chars: number;
  /** Items of an array. */
  readonly items: number;
}

/** What bounding left out: strings cut and array items dropped. */
export interface Cuts {
  strings: number;
  items: number;
}

/** Tried in turn until the record fits; the last one always keeps the record small. */
const TIGHTER_BOUNDS: readonly Bounds[] = [
  { chars: MAX_LOGGED_STRING, items: MAX_LOGGED_ITEMS },
  { chars: 256, items: 16 },
  { chars: 64, items: 8 },
  { chars: 16, items: 4 },
];
/** Room kept for pino's own fields and for the `truncated` counts. */
const RECORD_OVERHEAD_BYTES = 160;

/** An escaped string cut to `chars`, never inside an escape sequence (\xHH, \uHHHH) or a surrogate pair. */
function cutEscaped(escaped: string, chars: number): string {
  let end = chars;
  const escapeStart = escaped.lastIndexOf('\\', end - 1);
  if (escapeStart >= 0 && escapeStart > end - 6) {
    const sequence = /^\\(x[0-9A-F]{2}|u[0-9A-F]{4})/.exec(escaped.slice(escapeStart))?.[0] ?? '';
    if (escapeStart + sequence.length > end) end = escapeStart;
  }
  const last = escaped.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return escaped.slice(0, end);
}

/** escapeControl and the size bounds applied to every string inside plain data (objects, arrays). */
export function sanitizeDeep(
  value: unknown,
  bounds: Bounds = TIGHTER_BOUNDS[0] ?? { chars: MAX_LOGGED_STRING, items: MAX_LOGGED_ITEMS },
  cuts: Cuts = { strings: 0, items: 0 },
): unknown {
  if (typeof value === 'string') {
    const escaped = escapeControl(value);
    if (escaped.length <= bounds.chars) return escaped;
    cuts.strings += 1;
    const kept = cutEscaped(escaped, bounds.chars);
    return `${kept}…[${escaped.length - kept.length} more characters]`;
  }
  if (Array.isArray(value)) {
    const kept = value.slice(0, bounds.items).map((item) => sanitizeDeep(item, bounds, cuts));
    if (value.length <= bounds.items) return kept;
    cuts.items += value.length - bounds.items;
    return [...kept, `…[${value.length - bounds.items} more items]`];
  }
  if (value !== null && typeof value === 'object') {
    const copy: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) copy[escapeControl(key)] = sanitizeDeep(inner, bounds, cuts);
    return copy;
  }
  return value;
}

/**
 * One log record's message and fields, escaped and bounded so that the record takes at most
 * MAX_RECORD_BYTES: the bounds get tighter until it fits, and a record that was cut says how much
 * (`truncated`: strings cut, array items left out). Numbers and booleans are never cut; if even
 * the tightest bounds are too loose, only they are kept.
 */
export function boundRecord(
  msg: string,
  fields: Record<string, unknown> | undefined,
): { msg: string; fields: Record<string, unknown> } {
  const message = sanitizeDeep(msg, { chars: MAX_LOGGED_MESSAGE, items: 0 }) as string;
  const size = (record: Record<string, unknown>): number =>
    Buffer.byteLength(JSON.stringify({ msg: message, ...record })) + RECORD_OVERHEAD_BYTES;
  let bytes = 0;
  for (const bounds of TIGHTER_BOUNDS) {
    const cuts: Cuts = { strings: 0, items: 0 };
    const bounded = sanitizeDeep(fields ?? {}, bounds, cuts) as Record<string, unknown>;
    const record = cuts.strings + cuts.items > 0 ? { ...bounded, truncated: cuts } : bounded;
    bytes = size(record);
    if (bytes <= MAX_RECORD_BYTES) return { msg: message, fields: record };
  }
  const scalars = Object.fromEntries(
    Object.entries(fields ?? {})
      .filter(([, value]) => typeof value === 'number' || typeof value === 'boolean')
      .slice(0, MAX_LOGGED_ITEMS),
  );
  return { msg: message, fields: { ...scalars, truncated: { recordBytes: bytes } } };
}
