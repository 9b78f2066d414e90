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
    return code <= 0xff ? `\\x${code.toString(16).toUpperCase().padStart(2, '0')}` : `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
  });
}

/**
 * Bounds for what one log record may hold: a syslog datagram larger than the socket allows is
 * dropped silently, so a caller with a huge argv could otherwise keep its job out of the log.
 */
export const MAX_LOGGED_STRING = 1024;
export const MAX_LOGGED_ITEMS = 64;

function truncate(text: string): string {
  return text.length <= MAX_LOGGED_STRING ? text : `${text.slice(0, MAX_LOGGED_STRING)}…[${text.length - MAX_LOGGED_STRING} more characters]`;
}

/** escapeControl and the size bounds applied to every string inside plain data (objects, arrays). */
export function sanitizeDeep(value: unknown): unknown {
  if (typeof value === 'string') return escapeControl(truncate(value));
  if (Array.isArray(value)) {
    const kept = value.slice(0, MAX_LOGGED_ITEMS).map(sanitizeDeep);
    return value.length > MAX_LOGGED_ITEMS ? [...kept, `…[${value.length - MAX_LOGGED_ITEMS} more items]`] : kept;
  }
  if (value !== null && typeof value === 'object') {
    const copy: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) copy[escapeControl(key)] = sanitizeDeep(inner);
    return copy;
  }
  return value;
}
