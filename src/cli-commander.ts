/**
 * What commander makes of glexec's command line (src/cli.ts uses it for a command line that starts
 * with an option, or is empty). Installed, this module and commander are a bundle of their own,
 * glexec-cli.js, which a run's first phase loads only then (src/lazy.ts).
 */
import { Command, CommanderError } from 'commander';
import { type Action, usageError } from './cli';
import { clientError } from './errors';

/** What commander makes of the command line: every form, the run's included (the unit tests compare). */
export function parseWithCommander(argv: readonly string[]): Action {
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
