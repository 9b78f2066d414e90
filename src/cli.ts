/**
 * The caller's command line: `glexec [-v | -V] /abs/payload [args…]`, or `glexec` alone (a proxy
 * renewal, which the pipeline accepts only with GLEXEC_SOURCE_PROXY set). commander parses it;
 * toAction() turns the result into what to do. Everything after the payload path passes through
 * unchanged.
 */
import { clientError } from './errors';

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
  // only for a command line that starts with an option, or is empty.
  const [first, ...rest] = argv;
  if (first !== undefined && !first.startsWith('-')) return { kind: 'run', payload: first, args: rest };
  return parseWithCommander(argv);
}

/** What commander makes of the command line: every form, the run's included (the unit tests compare). */
export function parseWithCommander(argv: readonly string[]): Action {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Command, CommanderError } = require('commander') as typeof import('commander');
  let action: Action | undefined;
  const program = new Command('glexec')
    .usage('[-v | -V | --check] /absolute/path/to/payload [arguments...]')
    .description('Run a payload as the local account that the proxy in GLEXEC_CLIENT_CERT maps to.')
    .option('-v', 'print the version')
    .option('-V, --version', 'print the version and the built-in paths')
    .option('--check', 'check the installation and glexec.conf, change nothing (root only)')
    .argument('[payload]', 'absolute path of the program to run')
    .argument('[args...]', 'its arguments, passed on unchanged')
    .passThroughOptions()
    .helpOption('-h, --help', 'show this help')
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined })
    .action(
      (payload: string | undefined, args: string[], options: { v?: boolean; version?: boolean; check?: boolean }) => {
        if (options.version) action = { kind: 'version', builtIns: true };
        else if (options.v) action = { kind: 'version', builtIns: false };
        else if (options.check && payload !== undefined)
          throw clientError('usage.check_with_payload', '--check takes no payload');
        else if (options.check) action = { kind: 'check' };
        else if (payload === undefined) action = { kind: 'renew' };
        else action = { kind: 'run', payload, args };
      },
    );
  try {
    program.parse([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed') return { kind: 'help', text: program.helpInformation() };
      throw clientError('usage.bad_option', error.message.replace(/^error: /, ''));
    }
    throw error;
  }
  if (action === undefined) throw usageError();
  return action;
}
