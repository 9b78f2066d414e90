/**
 * Finding and reading the caller's proxy. The file must be the caller's own: a regular file,
 * owned by the caller, with no group, other or special mode bits. Root opens it without
 * following a symlink and makes every check on the opened descriptor.
 */
import { constants, fstatSync, lstatSync } from 'node:fs';
import { clientError } from '../errors';
import { FileChanged, FileTooLarge, openChecked, readAllAndClose } from '../sys/files';

const MAX_PROXY_BYTES = 256 * 1024;
/** setuid, setgid and sticky (not in Node's fs.constants). */
const SPECIAL_MODE_BITS = 0o7000;

export interface ProxyLocation {
  readonly variable: 'GLEXEC_CLIENT_CERT' | 'X509_USER_PROXY';
  readonly path: string;
}

/** GLEXEC_CLIENT_CERT, else X509_USER_PROXY. A variable that is set but empty is an error. */
export function locateProxy(env: ReadonlyMap<string, string>): ProxyLocation {
  for (const variable of ['GLEXEC_CLIENT_CERT', 'X509_USER_PROXY'] as const) {
    const path = env.get(variable);
    if (path === undefined) continue;
    if (path === '') throw clientError('proxy.empty_name', `${variable} is set but empty`);
    if (!path.startsWith('/')) throw clientError('proxy.relative_path', `${variable} must be an absolute path, got '${path}'`);
    return { variable, path };
  }
  throw clientError('proxy.missing', 'no proxy given: set GLEXEC_CLIENT_CERT (or X509_USER_PROXY) to the proxy file');
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** Reads the proxy file of `callerUid`; every refusal is a 201 naming the variable and path. */
export function readProxyFile(location: ProxyLocation, callerUid: number): string {
  const { variable, path } = location;
  const refuse = (code: string, why: string): never => {
    throw clientError(code, `${variable} ${path} ${why}`);
  };
  let checked;
  try {
    checked = lstatSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return refuse('proxy.unreadable', code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? 'error'})`);
  }
  if (checked.isSymbolicLink()) refuse('proxy.symlink', 'is a symbolic link; give the file itself');
  if (!checked.isFile()) refuse('proxy.not_a_file', 'is not a regular file');
  let fd: number;
  try {
    fd = openChecked(path, checked);
  } catch (error) {
    if (error instanceof FileChanged) return refuse('proxy.changed', 'changed while it was being opened');
    return refuse('proxy.unreadable', `cannot be opened (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const opened = fstatSync(fd);
  if (opened.uid !== callerUid) refuse('proxy.wrong_owner', `is owned by uid ${opened.uid}, not by the caller (uid ${callerUid})`);
  if (opened.mode & (constants.S_IRWXG | constants.S_IRWXO | SPECIAL_MODE_BITS)) {
    refuse('proxy.bad_mode', `has mode ${octal(opened.mode)}: group, other and special bits are not allowed (use chmod 600)`);
  }
  if (!(opened.mode & constants.S_IRUSR)) refuse('proxy.bad_mode', `has mode ${octal(opened.mode)}: it is not readable by its owner`);
  if (opened.size === 0) refuse('proxy.empty', 'is empty');
  try {
    return readAllAndClose(fd, MAX_PROXY_BYTES).toString('latin1');
  } catch (error) {
    if (error instanceof FileTooLarge) return refuse('proxy.too_large', `is ${error.message}`);
    return refuse('proxy.unreadable', `cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
