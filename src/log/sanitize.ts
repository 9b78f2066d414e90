/**
 * Caller-controlled text (argv, environment, DNs, paths) must never put a raw newline or other
 * control character into a log line or onto the caller's terminal. C0, DEL, C1 and the Unicode
 * line and paragraph separators are written as visible escapes.
 */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export function escapeControl(text: string): string {
  return text.replace(CONTROL, (char) => {
    const code = char.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).toUpperCase().padStart(2, '0')}` : `\\u${code.toString(16).toUpperCase()}`;
  });
}

/** escapeControl applied to every string inside plain data (objects, arrays). */
export function sanitizeDeep(value: unknown): unknown {
  if (typeof value === 'string') return escapeControl(value);
  if (Array.isArray(value)) return value.map(sanitizeDeep);
  if (value !== null && typeof value === 'object') {
    const copy: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) copy[escapeControl(key)] = sanitizeDeep(inner);
    return copy;
  }
  return value;
}
