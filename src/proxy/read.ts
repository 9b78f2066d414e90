/**
 * Finding and reading the caller's proxy. The file must be the caller's own: a regular file,
 * owned by the caller, with no group, other or special mode bits. Root opens it without
 * following a symlink and makes every check on the opened descriptor.
 */
import { clientError } from '../errors';
import { S_IRUSR, S_IRWXG, S_IRWXO, SPECIAL_MODE_BITS } from '../mode-bits';
import { closeDescriptor, FileTooLarge, lstatPath, readAllAndClose, statDescriptor } from '../sys/files';
import { type Identity, withEffectiveIdentity } from '../sys/identity';

const MAX_PROXY_BYTES = 256 * 1024;

export interface ProxyLocation {
  readonly variable: 'GLEXEC_CLIENT_CERT' | 'X509_USER_PROXY';
  readonly path: string;
}

/**
 * GLEXEC_CLIENT_CERT, else X509_USER_PROXY. A variable that is set but empty is an error. A
 * relative name is the caller's, in its working directory: the shim opened it there, as the caller.
 */
export function locateProxy(env: ReadonlyMap<string, string>): ProxyLocation {
  for (const variable of ['GLEXEC_CLIENT_CERT', 'X509_USER_PROXY'] as const) {
    const path = env.get(variable);
    if (path === undefined) continue;
    if (path === '') throw clientError('proxy.empty_name', `${variable} is set but empty`);
    return { variable, path };
  }
  throw clientError('proxy.missing', 'no proxy given: set GLEXEC_CLIENT_CERT (or X509_USER_PROXY) to the proxy file');
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** errno numbers the shim may report for the open, by name (Linux values). */
const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  6: 'ENXIO',
  13: 'EACCES',
  20: 'ENOTDIR',
  21: 'EISDIR',
  24: 'EMFILE',
  36: 'ENAMETOOLONG',
  40: 'ELOOP',
};

/**
 * The owner of `path` as the caller sees it (lstat with the caller's ids, so root tells nothing
 * the caller could not find out with `ls -l`), or undefined when the caller cannot see it.
 */
export function ownerSeenByCaller(caller: Identity, path: string): number | undefined {
  try {
    return withEffectiveIdentity(caller, () => lstatPath(path).uid);
  } catch {
    return undefined;
  }
}

/**
 * Reads the proxy file of `callerUid` from the descriptor the shim opened with the caller's ids;
 * every check is made on that descriptor. Every refusal is a 201 naming the variable and path.
 * `ownerOf` (the owner as the caller sees it) names the cause when the caller could not open a file root owns.
 */
export function readProxyFile(
  location: ProxyLocation,
  callerUid: number,
  opened: { fd: number } | { errno: number } | undefined,
  ownerOf?: (path: string) => number | undefined,
): string {
  const { variable, path } = location;
  const refuse = (code: string, why: string): never => {
    throw clientError(code, `${variable} ${path} ${why}`);
  };
  if (opened === undefined) return refuse('proxy.unreadable', 'was not opened by the glexec shim');
  if ('errno' in opened) {
    const name = ERRNO_NAMES[opened.errno] ?? `errno ${opened.errno}`;
    if (name === 'ENOENT') return refuse('proxy.unreadable', 'does not exist');
    if (name === 'ELOOP') return refuse('proxy.symlink', 'is a symbolic link; give the file itself');
    // A common slip: a proxy made as root for the pilot, which only its owner, root, can read.
    if (name === 'EACCES' && ownerOf?.(path) === 0)
      return refuse(
        'proxy.wrong_owner',
        `is owned by uid 0: chown it to the pilot (uid ${callerUid}); the caller cannot open it`,
      );
    return refuse('proxy.unreadable', `cannot be opened by the caller (${name})`);
  }
  const { fd } = opened;
  // The descriptor is not close-on-exec (it crossed the shim's exec): close it on every refusal.
  const reject = (code: string, why: string): never => {
    closeDescriptor(fd);
    return refuse(code, why);
  };
  const st = statDescriptor(fd);
  if (!st.isFile()) reject('proxy.not_a_file', 'is not a regular file');
  if (st.uid !== callerUid)
    reject('proxy.wrong_owner', `is owned by uid ${st.uid}, not by the caller (uid ${callerUid})`);
  if (st.mode & (S_IRWXG | S_IRWXO | SPECIAL_MODE_BITS)) {
    reject(
      'proxy.bad_mode',
      `has mode ${octal(st.mode)}: group, other and special bits are not allowed (use chmod 600)`,
    );
  }
  if (!(st.mode & S_IRUSR)) reject('proxy.bad_mode', `has mode ${octal(st.mode)}: it is not readable by its owner`);
  if (st.size === 0) reject('proxy.empty', 'is empty');
  try {
    return readAllAndClose(fd, MAX_PROXY_BYTES).toString('latin1');
  } catch (error) {
    if (error instanceof FileTooLarge) return refuse('proxy.too_large', `is ${error.message}`);
    return refuse('proxy.unreadable', `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
