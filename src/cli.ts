/**
 * The caller's command line: `glexec [-v | -V] /abs/payload [args…]`, or `glexec` alone (a proxy
 * renewal, which the pipeline accepts only with GLEXEC_SOURCE_PROXY set). toAction() turns it into
 * what to do: a run's command line here, every other one by commander (src/cli-commander.ts, loaded
 * only then). Everything after the payload path passes through unchanged.
 */
import { clientError } from './errors';
import { commanderParser } from './lazy';

export type Action =
  | { readonly kind: 'run'; readonly payload: string; readonly args: readonly string[] }
  /** -v prints the version line only; -V adds the built-in paths. */
  | { readonly kind: 'version'; readonly builtIns: boolean }
  /** No payload: rewrite the target proxy and run nothing. */
  | { readonly kind: 'renew' }
  | { readonly kind: 'check' }
  | { readonly kind: 'help'; readonly text: string };

/** The 201 for a command line without a payload, when it is not a proxy renewal either. */
export const usageError = () =>
  clientError('usage.no_payload', 'usage: glexec /absolute/path/to/payload [arguments...]');

export function toAction(argv: readonly string[]): Action {
  // A run's command line starts with the payload, so no option can follow (they pass through, as
  // commander's passThroughOptions has them): commander, its loading (~1 ms) and its parse, are
  // only for a command line that starts with an option, or is empty; installed, it is a bundle of
  // its own, glexec-cli.js (src/lazy.ts).
  const [first, ...rest] = argv;
  if (first !== undefined && !first.startsWith('-')) return { kind: 'run', payload: first, args: rest };
  return commanderParser().parseWithCommander(argv);
}
