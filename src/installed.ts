/**
 * Where glexec finds its own files (addons, helpers, lazily loaded bundles): installed, next to
 * the bundle that runs, in PREFIX/lib/glexec/ (scripts/build.mjs defines GLEXEC_BUNDLED in every
 * bundle); in tsc's development build, where the caller says. Only by absolute path, never by a
 * search that a caller's environment could steer.
 */
import { join } from 'node:path';

declare const GLEXEC_BUNDLED: boolean | undefined;

/** `name` next to the running bundle when installed, else `development()` (an absolute path). */
export function installedPath(name: string, development: () => string): string {
  return typeof GLEXEC_BUNDLED !== 'undefined' && GLEXEC_BUNDLED ? join(__dirname, name) : development();
}
