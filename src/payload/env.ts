/**
 * The payload's environment, built from nothing: the caller's GLEXEC_* variables (never
 * GLEXEC_EPILOG_*, which only glexec sets for the epilogue), the variables the site lists in
 * preserve_env_variables, and HOME, USER, LOGNAME and PATH for the target.
 */
import type { Config } from '../config/schema';
import type { Target } from '../target';

export const DEFAULT_PAYLOAD_PATH = '/usr/local/bin:/usr/bin:/bin';
const VALID_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Locale and time zone values are names, never paths: a path would make glibc load a file. */
const NAME_VALUED = /^(LANG|LANGUAGE|LC_[A-Z_]+|TZ)$/;
const SAFE_NAME_VALUE = /^[A-Za-z0-9_.@:+-]*$/;

export interface PayloadEnv {
  readonly env: Record<string, string>;
  /** Caller variables that were dropped, and why (for the debug log). */
  readonly dropped: readonly { name: string; why: string }[];
}

export function buildPayloadEnv(callerEnv: ReadonlyMap<string, string>, config: Config, target: Target): PayloadEnv {
  const env: Record<string, string> = Object.create(null);
  const dropped: { name: string; why: string }[] = [];
  const preserved = new Set(config.preserve_env_variables);
  for (const [name, value] of callerEnv) {
    const wanted = (name.startsWith('GLEXEC_') && !name.startsWith('GLEXEC_EPILOG_')) || preserved.has(name);
    if (!wanted) continue;
    if (!VALID_NAME.test(name)) dropped.push({ name, why: 'not a valid variable name' });
    else if (value.startsWith('()')) dropped.push({ name, why: 'value looks like a shell function' });
    else if (NAME_VALUED.test(name) && !SAFE_NAME_VALUE.test(value))
      dropped.push({ name, why: 'value is not a plain name' });
    else env[name] = value;
  }
  env.HOME = target.home;
  env.USER = target.name;
  env.LOGNAME = target.name;
  if (env.PATH === undefined) env.PATH = DEFAULT_PAYLOAD_PATH;
  delete env.X509_USER_PROXY;
  return { env, dropped };
}
