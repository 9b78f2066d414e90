/**
 * The caller's command line: `glexec [-V] /abs/payload [args…]`. commander parses it; toAction()
 * turns the result into what to do. Everything after the payload path passes through unchanged.
 */
import { Command, CommanderError } from 'commander';
import { clientError } from './errors';

export type Action =
  | { readonly kind: 'run'; readonly payload: string; readonly args: readonly string[] }
  | { readonly kind: 'version' }
  | { readonly kind: 'check' }
  | { readonly kind: 'help'; readonly text: string };

export function toAction(argv: readonly string[]): Action {
  let action: Action | undefined;
  const program = new Command('glexec')
    .usage('[-V | --check] /absolute/path/to/payload [arguments...]')
    .description('Run a payload as the local account that the proxy in GLEXEC_CLIENT_CERT maps to.')
    .option('-V, --version', 'print the version and the built-in paths')
    .option('--check', 'check the installation and glexec.conf, change nothing (root only)')
    .argument('[payload]', 'absolute path of the program to run')
    .argument('[args...]', 'its arguments, passed on unchanged')
    .passThroughOptions()
    .helpOption('-h, --help', 'show this help')
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined })
    .action((payload: string | undefined, args: string[], options: { version?: boolean; check?: boolean }) => {
      if (options.version) action = { kind: 'version' };
      else if (options.check && payload !== undefined) throw clientError('usage.check_with_payload', '--check takes no payload');
      else if (options.check) action = { kind: 'check' };
      else if (payload === undefined) throw clientError('usage.no_payload', 'usage: glexec /absolute/path/to/payload [arguments...]');
      else action = { kind: 'run', payload, args };
    });
  try {
    program.parse([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.code === 'commander.helpDisplayed') return { kind: 'help', text: program.helpInformation() };
      throw clientError('usage.bad_option', error.message.replace(/^error: /, ''));
    }
    throw error;
  }
  if (action === undefined) throw clientError('usage.no_payload', 'usage: glexec /absolute/path/to/payload [arguments...]');
  return action;
}
