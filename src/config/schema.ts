/**
 * Every key of gLExec 0.9's `[glexec]` section, and the keys of ours, in one table:
 * its type, default, check, and what this glexec does with it.
 *
 * `status` says how a key is treated:
 * - `used`: implemented;
 * - `ignored`: accepted and checked, logged as ignored (ignoring it cannot weaken security);
 * - `refused`: a value other than the safe default is a 202, because ignoring it would weaken
 *   security (e.g. an LCAS ban list that would silently stop applying).
 */

export type LogDestination = 'syslog' | 'file';
export type LockMechanism = 'flock' | 'fcntl' | 'disabled';
export type SwitchBy = 'glexec' | 'lcmaps';
export type ContainmentMode = 'cgroup' | 'pgid' | 'off';
export type LcmapsBackend = 'builtin' | 'library';

/** Parses one raw value; throws a plain message (the loader adds the key and value). */
type Parser<T> = (raw: string) => T;

interface KeySpec<T> {
  readonly parse: Parser<T>;
  readonly default: T;
  readonly status: 'used' | 'ignored' | 'refused';
  /** For `refused` keys: the value that is safe to ignore. */
  readonly safe?: (value: T) => boolean;
  /** Ours, not gLExec 0.9's. */
  readonly extension?: true;
  /** The default as glexec.conf and the docs write it, when that differs from the parsed value. */
  readonly written?: string;
  readonly doc: string;
}

const yesNo: Parser<boolean> = (raw) => {
  const word = raw.toLowerCase();
  if (word === 'yes' || word === 'true') return true;
  if (word === 'no' || word === 'false') return false;
  throw new Error('expected yes or no');
};

const oneOf =
  <T extends string>(...choices: T[]): Parser<T> =>
  (raw) => {
    const word = raw.toLowerCase();
    const match = choices.find((choice) => choice === word);
    if (match === undefined) throw new Error(`expected one of ${choices.join(', ')}`);
    return match;
  };

const integer: Parser<number> = (raw) => {
  if (!/^[+-]?\d{1,9}$/.test(raw)) throw new Error('expected a whole number');
  return Number(raw);
};

const nonNegativeInteger: Parser<number> = (raw) => {
  if (!/^\d{1,9}$/.test(raw)) throw new Error('expected a whole number, 0 or more');
  return Number(raw);
};

/** Seconds, with up to three decimals (millisecond precision); ours allow fractions. */
const seconds: Parser<number> = (raw) => {
  if (!/^\d{1,7}(\.\d{1,3})?$/.test(raw)) throw new Error('expected a number of seconds, such as 300 or 0.5');
  return Number(raw);
};

const absolutePath: Parser<string> = (raw) => {
  if (!raw.startsWith('/')) throw new Error('expected an absolute path');
  if (/[\0\n]/.test(raw)) throw new Error('path contains a control character');
  return raw;
};

const optionalAbsolutePath: Parser<string> = (raw) => (raw === '' ? '' : absolutePath(raw));

const anyText: Parser<string> = (raw) => raw;

/** A value that does not parse, with the corrected line when one can be told. */
export class ValueSyntaxError extends Error {
  constructor(
    message: string,
    /** What the line should say instead, e.g. `user_white_list = a, b`. */
    readonly correction?: string,
  ) {
    super(message);
  }
}

/**
 * Comma-separated names; blanks dropped. gLExec's lists are comma separated, and no account,
 * group or variable name has a space in it: `a b` is a list written the wrong way, not a name.
 */
const nameList =
  (key: string): Parser<readonly string[]> =>
  (raw) => {
    const names = raw
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
    if (names.some((name) => /\s/.test(name))) {
      throw new ValueSyntaxError(
        `${key} takes a comma-separated list; got '${raw}'`,
        `${key} = ${raw
          .split(/[\s,]+/)
          .filter(Boolean)
          .join(', ')}`,
      );
    }
    return names;
  };

/**
 * Variables that make glibc load code or files. The payload's environment is also the
 * environment of start-payload, which runs as root until it switches, so none of these may be carried
 * over from the caller, whatever the site lists.
 */
const LOADER_VARIABLES =
  /^(LD_\w*|GCONV_PATH|GETCONF_DIR|GLIBC_TUNABLES|HOSTALIASES|LOCALDOMAIN|LOCPATH|MALLOC_\w*|NIS_PATH|NLSPATH|RESOLV_HOST_CONF|RES_OPTIONS|TMPDIR|TZDIR|NODE_OPTIONS|NODE_PATH)$/;

const preservedNames: Parser<readonly string[]> = (raw) => {
  const names = nameList('preserve_env_variables')(raw);
  const refused = names.filter((name) => LOADER_VARIABLES.test(name));
  if (refused.length > 0)
    throw new Error(`${refused.join(', ')} cannot be preserved: it would reach the root helper that switches identity`);
  return names;
};

const accountName: Parser<string> = (raw) => {
  if (!/^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$/.test(raw)) throw new Error('expected an account or group name');
  return raw;
};

const optionalAccountName: Parser<string> = (raw) => (raw === '' ? '' : accountName(raw));

const syslogFacilities = [
  'auth',
  'authpriv',
  'cron',
  'daemon',
  'ftp',
  'kern',
  'lpr',
  'mail',
  'news',
  'syslog',
  'user',
  'uucp',
  'local0',
  'local1',
  'local2',
  'local3',
  'local4',
  'local5',
  'local6',
  'local7',
] as const;
export type SyslogFacility = (typeof syslogFacilities)[number];

/** `LOG_DAEMON`, `log_daemon` and `daemon` all name the daemon facility. */
const syslogFacility: Parser<SyslogFacility> = (raw) => {
  const word = raw.toLowerCase().replace(/^log_/, '');
  const match = syslogFacilities.find((facility) => facility === word);
  if (match === undefined) throw new Error('expected a syslog facility such as LOG_DAEMON or LOG_AUTHPRIV');
  return match;
};

const spec = <T>(s: KeySpec<T>): KeySpec<T> => s;

export const configSchema = {
  // --- caller and mapping ---
  user_white_list: spec({
    parse: nameList('user_white_list'),
    default: [],
    status: 'used',
    doc: 'Calling accounts allowed to run glexec: names, `.pool` or `name*` pool patterns, or `*` for anyone.',
  }),
  group_white_list: spec({
    parse: nameList('group_white_list'),
    default: [],
    status: 'used',
    doc: 'Calling groups (primary or supplementary) allowed to run glexec; same patterns.',
  }),
  omission_private_key_white_list: spec({
    parse: nameList('omission_private_key_white_list'),
    default: [],
    status: 'used',
    doc: 'Calling accounts allowed to pass a proxy without its private key.',
  }),
  certdir: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'used',
    doc: 'CA directory (`<hash>.0` files) that proxies are verified against. Unset: the `-certdir` of the lcmaps.db verify_proxy module, as gLExec 0.9 had it, else /etc/grid-security/certificates.',
  }),
  gridmapfile: spec({
    parse: absolutePath,
    default: '/etc/grid-security/grid-mapfile',
    status: 'used',
    extension: true,
    doc: 'grid-mapfile that maps the proxy owner to a local account when lcmaps_db_file is not set.',
  }),
  user_identity_switch_by: spec<SwitchBy>({
    parse: oneOf<SwitchBy>('glexec', 'lcmaps'),
    default: 'glexec',
    status: 'used',
    doc: 'Who switches identity. This glexec always switches itself; `lcmaps` only forbids epilogue_user/epilogue_group.',
  }),
  use_lcas: spec({
    parse: yesNo,
    default: false,
    status: 'refused',
    safe: (on) => !on,
    doc: 'LCAS authorization is not supported: `yes` is refused, since its ban lists would silently stop applying.',
  }),
  lcmaps_db_file: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'used',
    doc: 'lcmaps.db whose policies map the proxy owner (built-in verify_proxy, localaccount, poolaccount, posix_enf); when set, it is used instead of gridmapfile.',
  }),
  lcmaps_get_account_policy: spec({
    parse: anyText,
    default: '',
    status: 'used',
    doc: 'The lcmaps.db policies to try (one name or a colon-separated list), in the order of the file; the first that maps wins. Required with lcmaps_db_file.',
  }),
  lcmaps_verify_account_policy: spec({
    parse: anyText,
    default: '',
    status: 'ignored',
    doc: 'LCMAPS verify-account policy.',
  }),
  lcmaps_backend: spec<LcmapsBackend>({
    parse: oneOf<LcmapsBackend>('builtin', 'library'),
    default: 'builtin',
    status: 'used',
    extension: true,
    doc: "Who runs the lcmaps.db policies: `builtin` (glexec's own plug-ins) or `library` (the real liblcmaps.so.0 and its plug-ins, in a root-only helper process).",
  }),
  lcmaps_libdir: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'used',
    doc: 'Directory of liblcmaps.so.0 for `lcmaps_backend = library`; unset: the first of /usr/lib64, /usr/lib/x86_64-linux-gnu, /usr/lib that has it.',
  }),
  lcmaps_log_file: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'ignored',
    doc: "LCMAPS log file (with `lcmaps_backend = library`, LCMAPS's lines go to glexec's log).",
  }),
  lcmaps_debug_level: spec({
    parse: integer,
    default: 0,
    status: 'used',
    doc: "LCMAPS_DEBUG_LEVEL for `lcmaps_backend = library`; at least 3, so that a refusal can give LCMAPS's reason.",
  }),
  lcmaps_log_level: spec({ parse: integer, default: 0, status: 'ignored', doc: 'LCMAPS log level.' }),
  lcmaps_voms_verification: spec({
    parse: yesNo,
    default: true,
    status: 'ignored',
    doc: 'VOMS AC verification. glexec always verifies ACs (`vomsdir`); `no` (OSG) does not make it believe unverified ones.',
  }),
  lcas_libdir: spec({ parse: optionalAbsolutePath, default: '', status: 'ignored', doc: 'LCAS plugin directory.' }),
  lcas_db_file: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'ignored',
    doc: 'LCAS database (only with use_lcas).',
  }),
  lcas_log_file: spec({ parse: optionalAbsolutePath, default: '', status: 'ignored', doc: 'LCAS log file.' }),
  lcas_debug_level: spec({ parse: integer, default: 0, status: 'ignored', doc: 'LCAS debug level.' }),
  lcas_log_level: spec({ parse: integer, default: 0, status: 'ignored', doc: 'LCAS log level.' }),
  vomsdir: spec({
    parse: absolutePath,
    default: '/etc/grid-security/vomsdir',
    status: 'used',
    doc: "Directory that vouches for VOMS servers: `<vo>/<host>.lsc` files (the server certificate's DN chain) or the servers' certificates themselves. An AC that it does not vouch for is dropped; root-only, like the certdir.",
  }),

  // --- payload ---
  linger: spec({
    parse: yesNo,
    default: true,
    status: 'used',
    doc: 'This glexec always lingers; `no` is accepted and logged, and the epilogue still runs.',
  }),
  preserve_env_variables: spec({
    parse: preservedNames,
    default: [],
    status: 'used',
    doc: 'Extra caller variables kept for the payload, besides GLEXEC_*.',
  }),
  prohibit_exec_via_symlink: spec({
    parse: yesNo,
    default: false,
    status: 'used',
    doc: 'Refuse a payload path whose last component is a symbolic link: checked before the run, and again by the exec itself (execveat with AT_SYMLINK_NOFOLLOW), so a file swapped for a link after the check is refused too.',
  }),
  pedantic_security_checks: spec({
    parse: yesNo,
    default: false,
    status: 'ignored',
    doc: 'This glexec always applies its strict checks.',
  }),
  create_target_proxy: spec({
    parse: yesNo,
    default: true,
    status: 'used',
    doc: '`yes`: without GLEXEC_TARGET_PROXY, copy the proxy for the payload to /tmp/x509up_u<uid>.glexec.<random>, removed after the payload, its leftovers and the epilogue (gLExec left it behind); `no`: only copy when GLEXEC_TARGET_PROXY is set.',
  }),
  target_lock_mechanism: spec<LockMechanism>({
    parse: oneOf<LockMechanism>('flock', 'fcntl', 'disabled'),
    default: 'flock',
    status: 'used',
    doc: 'How the target proxy is written: `flock` (exclusive flock while it is rewritten), `fcntl` (written aside and renamed into place), `disabled` (rewritten in place).',
  }),
  input_lock_mechanism: spec<LockMechanism>({
    parse: oneOf<LockMechanism>('flock', 'fcntl', 'disabled'),
    default: 'flock',
    status: 'used',
    doc: 'How the source proxy is read: `flock` (shared flock), `fcntl` (re-checked after reading: a change is refused), `disabled`.',
  }),
  lock_mechanism: spec<LockMechanism>({
    parse: oneOf<LockMechanism>('flock', 'fcntl', 'disabled'),
    default: 'flock',
    status: 'used',
    doc: 'Deprecated alias of target_lock_mechanism, used when that is left at its default.',
  }),
  containment: spec<ContainmentMode>({
    parse: oneOf<ContainmentMode>('cgroup', 'pgid', 'off'),
    default: 'cgroup',
    status: 'used',
    extension: true,
    doc: '`cgroup`: each payload in a cgroup v2 of its own, which nothing it forks can leave (falls back to `pgid` without a writable cgroup v2); `pgid`: its process group and session; `off`: no listing and no cleanup of leftovers.',
  }),
  cgroup_base: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'used',
    extension: true,
    doc: 'cgroup v2 directory under which glexec makes the payload cgroups (empty: <cgroup2 mount>/glexec). On systemd hosts, a delegated cgroup (see the README).',
  }),
  runtime_directory: spec({
    parse: absolutePath,
    default: '/run/glexec',
    status: 'used',
    extension: true,
    doc: 'Root-owned directory (made if missing, 0755) for the leftover lists handed to the epilogue, and for the records (target-proxies/, 0700) that let a proxy renewal find the /tmp copies of running payloads. A second glexec install on the same host gives each its own.',
  }),
  kill_leftovers: spec({
    parse: yesNo,
    default: true,
    status: 'used',
    extension: true,
    doc: '`yes`: after the epilogue, end every process the payload left behind; `no`: only list them (log and epilogue).',
  }),
  max_processes: spec({
    parse: nonNegativeInteger,
    default: 0,
    status: 'used',
    extension: true,
    doc: 'Most processes and threads the payload may have at once (pids.max of its cgroup; 0: no limit). Needs the pids controller.',
  }),
  no_new_privs: spec({
    parse: yesNo,
    default: false,
    status: 'used',
    extension: true,
    doc: '`yes`: the payload cannot gain privileges through setuid or file-capability programs (PR_SET_NO_NEW_PRIVS).',
  }),
  kill_grace: spec({
    parse: seconds,
    default: 5,
    status: 'used',
    extension: true,
    doc: 'Seconds between SIGTERM and SIGKILL, for the epilogue, and for what the payload left behind when contained by process group. With containment = cgroup the leftovers are killed at once with cgroup.kill, without this grace.',
  }),

  // --- epilogue ---
  epilogue: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'used',
    doc: 'Absolute canonical path of a trusted-root program run after the payload (empty: none); its #! interpreters must be trusted too.',
  }),
  epilogue_user: spec({
    parse: accountName,
    default: 'root',
    status: 'used',
    doc: 'Account the epilogue runs as; it may also own the epilogue and its directories, so a payload mapped to it is refused. Needs user_identity_switch_by = glexec.',
  }),
  epilogue_group: spec({
    parse: optionalAccountName,
    default: '',
    status: 'used',
    doc: 'Group the epilogue runs as (empty: gid 0, which --check warns about); its members may write the epilogue, so a payload account in it is refused. Needs user_identity_switch_by = glexec.',
  }),
  epilogue_timeout: spec({
    parse: seconds,
    default: 300,
    status: 'used',
    doc: 'Seconds the epilogue may run before its process group gets SIGTERM (then SIGKILL after kill_grace).',
  }),
  backlog_path: spec({
    parse: optionalAbsolutePath,
    default: '',
    status: 'ignored',
    doc: 'Unknown in gLExec 0.9; accepted.',
  }),

  // --- logging ---
  log_destination: spec<LogDestination>({
    parse: oneOf<LogDestination>('syslog', 'file'),
    default: 'syslog',
    status: 'used',
    doc: '`syslog` or `file`.',
  }),
  log_file: spec({
    parse: absolutePath,
    default: '/var/log/glexec/glexec_log',
    status: 'used',
    doc: 'JSON-lines log, with log_destination = file; with syslog, where the completion record goes when nothing listens on /dev/log.',
  }),
  log_file_group: spec({
    parse: accountName,
    default: 'root',
    status: 'used',
    doc: 'Group of a log file glexec creates (mode 0640 when not root, else 0600).',
  }),
  log_level: spec({
    parse: integer,
    default: 3,
    status: 'used',
    doc: '0 nothing, 1 errors, 2 +warnings, 3 +notices, 4 +info, 5 debug; clamped with a warning.',
  }),
  silent_logging: spec({
    parse: yesNo,
    default: false,
    status: 'used',
    doc: "`yes`: nothing on the caller's stderr; errors go to the log only.",
  }),
  diff_syslog_levels: spec({
    parse: yesNo,
    default: true,
    status: 'used',
    doc: '`yes`: each level its own syslog priority; `no`: everything at LOG_NOTICE.',
  }),
  syslog_facility: spec<SyslogFacility>({
    parse: syslogFacility,
    default: 'daemon',
    written: 'LOG_DAEMON',
    status: 'used',
    doc: 'Syslog facility, e.g. LOG_DAEMON (default) or LOG_AUTHPRIV.',
  }),
} as const;

export type ConfigKey = keyof typeof configSchema;
type ValueOf<K extends ConfigKey> = (typeof configSchema)[K] extends KeySpec<infer T> ? T : never;
export type Config = { readonly [K in ConfigKey]: ValueOf<K> };

export const configKeys = Object.keys(configSchema) as ConfigKey[];

export function isConfigKey(name: string): name is ConfigKey {
  return Object.prototype.hasOwnProperty.call(configSchema, name);
}

export function defaultConfig(): Config {
  const config: Record<string, unknown> = Object.create(null);
  for (const key of configKeys) config[key] = configSchema[key].default;
  return config as Config;
}
