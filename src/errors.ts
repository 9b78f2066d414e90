/**
 * The one error class of glexec. Every refusal carries the exit code class a pilot framework
 * sees (gLExec's 201/202/203/126 scheme) and a stable code string for logs and tests.
 * Only the entry point (src/main.ts) catches it, prints the message and exits.
 */

export const ExitCode = {
  /** The caller must fix something: no proxy, bad proxy mode, missing payload. */
  client: 201,
  /** The site must fix something: glexec.conf, trust of files, internal failures. */
  system: 202,
  /** Not authorized: caller not white-listed, proxy not acceptable, no mapping. */
  authorization: 203,
  /** The payload (or the epilogue) itself exited with a code in 201..204. */
  overlap: 204,
  /** The payload could not be executed by the target account. */
  cannotExecute: 126,
} as const;

export type GlexecExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * What kind of site problem an error is, so that `glexec --check` can say how to fix it without
 * reading the message. `path` is the component the problem is at (not always the file named).
 */
export type Problem =
  | { readonly kind: 'missing'; readonly path: string }
  | { readonly kind: 'symlink'; readonly path: string }
  | { readonly kind: 'writable'; readonly path: string }
  | { readonly kind: 'owner'; readonly path: string }
  | { readonly kind: 'not-canonical'; readonly path: string }
  | { readonly kind: 'wrong-type'; readonly path: string; readonly expected: 'file' | 'directory' }
  | { readonly kind: 'syntax'; readonly file: string; readonly line?: number; readonly expected: string };

/** Marks a GlexecError of any copy of this module (src/lazy.ts: each lazily loaded bundle has one). */
const GLEXEC_ERROR = Symbol.for('glexec.GlexecError');

export class GlexecError extends Error {
  override readonly name = 'GlexecError';

  /**
   * `instanceof GlexecError` asks for the mark, not for this copy of the class: an error thrown in
   * a lazily loaded bundle (glexec-cli.js, glexec-check.js, glexec-lcmaps.js) is made by that
   * bundle's own copy of this module, and the entry point must still see its exit code.
   */
  static override [Symbol.hasInstance](value: unknown): value is GlexecError {
    return typeof value === 'object' && value !== null && GLEXEC_ERROR in value;
  }

  /** On the prototype (not an own property): what `instanceof` looks for. */
  get [GLEXEC_ERROR](): true {
    return true;
  }

  constructor(
    readonly exitCode: GlexecExitCode,
    /** Stable, dotted identifier, e.g. `config.unknown_key`; never reworded. */
    readonly code: string,
    message: string,
    options?: { cause?: unknown; problem?: Problem },
  ) {
    super(message, options);
    this.problem = options?.problem;
  }

  /** Set where the kind of problem decides its fix (trust walks, syntax errors). */
  readonly problem: Problem | undefined;
}

export const clientError = (code: string, message: string, cause?: unknown): GlexecError =>
  new GlexecError(ExitCode.client, code, message, { cause });
export const systemError = (code: string, message: string, cause?: unknown, problem?: Problem): GlexecError =>
  new GlexecError(ExitCode.system, code, message, { cause, ...(problem ? { problem } : {}) });
export const authorizationError = (code: string, message: string, cause?: unknown): GlexecError =>
  new GlexecError(ExitCode.authorization, code, message, { cause });
