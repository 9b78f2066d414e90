/**
 * Every program that runs when a trusted program is executed: the file itself, the interpreter on
 * its `#!` line, that interpreter's own `#!`, and so on as deep as the kernel goes, and for
 * `#!/usr/bin/env NAME` the program env finds on the fixed PATH. A script is only as trusted as
 * the interpreter that reads it: one that another account can replace runs that account's code
 * with the script's identity.
 */
import { basename } from 'node:path';
import { lstatPath, readCheckedHead, readLink, type Stats } from './sys/files';
import { type Lstat, type TrustPolicy, UntrustedPath, walkTrustedPathFollowingLinks } from './trust';

/** Why a program of the chain is refused: one line, naming the program and the rule. */
export class UntrustedProgram extends Error {}

/** BINPRM_BUF_SIZE: the kernel reads only this many bytes of a file to find its `#!` line. */
const HEAD_BYTES = 256;

/**
 * How many `#!` files one exec may pass through: measured on Linux 6.18, a script whose `#!`
 * names a script, and so on, runs with 5 such files before the final binary and fails with ELOOP
 * at 6 (fs/exec.c allows BINPRM_MAX_RECURSION = 4 rewrites after the first).
 */
export const MAX_SCRIPT_LEVELS = 5;

/** What the program that follows a file is, and who starts it. */
export interface InterpreterLine {
  readonly interpreter: string;
  /** The one optional argument (the kernel passes the rest of the line as a single word). */
  readonly argument?: string;
}

const isSpaceOrTab = (byte: number | undefined): boolean => byte === 0x20 || byte === 0x09;

/**
 * The `#!` line of `path` as the kernel's binfmt_script reads it from the first 256 bytes:
 * undefined when the file does not start with `#!`; throws when the kernel would refuse the line.
 */
export function parseInterpreterLine(head: Buffer, path: string): InterpreterLine | undefined {
  if (head[0] !== 0x23 || head[1] !== 0x21) return undefined;
  // The kernel's buffer is zero-filled past the end of a short file.
  const buffer = Buffer.alloc(HEAD_BYTES);
  head.copy(buffer, 0, 0, HEAD_BYTES);
  let end = buffer.indexOf(0x0a);
  if (end === -1) {
    // No newline: the kernel accepts the line only if the interpreter's name ends within it.
    let start = 2;
    while (start < HEAD_BYTES - 1 && isSpaceOrTab(buffer[start])) start++;
    let terminator = start;
    while (terminator < HEAD_BYTES - 1 && !isSpaceOrTab(buffer[terminator]) && buffer[terminator] !== 0) terminator++;
    if (terminator >= HEAD_BYTES - 1)
      throw new UntrustedProgram(`the #! line of ${path} is longer than the ${HEAD_BYTES} bytes the kernel reads`);
    end = HEAD_BYTES - 1;
  }
  const nul = buffer.subarray(0, end).indexOf(0);
  const line = buffer.subarray(2, nul === -1 ? end : nul).toString('latin1');
  const match = /^[ \t]*([^ \t]+)(?:[ \t]+(.*?))?[ \t]*$/s.exec(line);
  if (!match?.[1]) throw new UntrustedProgram(`the #! line of ${path} names no interpreter`);
  return match[2] ? { interpreter: match[1], argument: match[2] } : { interpreter: match[1] };
}

/** Who runs the chain, for the execute-permission check the kernel makes on each program. */
export interface Runner {
  readonly uid: number;
  readonly gid: number;
}

export interface ChainOptions {
  readonly policy: TrustPolicy;
  readonly runner: Runner;
  /** The PATH that env searches: the epilogue's, which glexec fixes. */
  readonly searchPath: string;
  /** How the walk looks at a path (lstatPath); the monitor's epilogue records what it looked at. */
  readonly lstat?: Lstat;
}

/** The kernel's execute check: root needs one x bit; others the bit of their class. */
export function mayRun(st: Stats, runner: Runner): boolean {
  if (runner.uid === 0) return (st.mode & 0o111) !== 0;
  if (st.uid === runner.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === runner.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

function errorCode(error: unknown): string {
  return error instanceof Error && 'code' in error ? String(error.code) : String(error);
}

interface Found {
  readonly resolved: string;
  readonly stats: Stats;
}

/** The trust walk of a path the kernel resolves (links followed); `what` names it in a refusal. */
function walkTrusted(path: string, what: string, policy: TrustPolicy, lstat: Lstat): Found {
  try {
    return walkTrustedPathFollowingLinks(path, policy, lstat, readLink);
  } catch (error) {
    const rule = error instanceof UntrustedPath ? error.message : `cannot be checked: ${errorCode(error)}`;
    throw new UntrustedProgram(`${what}: ${rule}`);
  }
}

function walkProgram(path: string, what: string, options: ChainOptions): Found {
  const found = walkTrusted(path, what, options.policy, options.lstat ?? lstatPath);
  if (!mayRun(found.stats, options.runner))
    throw new UntrustedProgram(`${what}: ${found.resolved} is not executable by uid ${options.runner.uid}`);
  return found;
}

/**
 * The program `#!/usr/bin/env NAME` runs: env calls execvp, which tries each directory of PATH in
 * order and skips a file it may not execute. Every directory up to the one that has it must be
 * trusted too, or another account could put its own NAME in front of it later.
 */
function programFoundByEnv(line: InterpreterLine, options: ChainOptions): Found {
  const env = line.interpreter;
  const name = line.argument;
  if (name === undefined) throw new UntrustedProgram(`#!${env} names no program for env to run`);
  if (/[ \t]/.test(name) || name.startsWith('-') || name.includes('=')) {
    throw new UntrustedProgram(
      `#!${env} ${name}: env gets the rest of the #! line as one word, and only a plain program name is accepted`,
    );
  }
  if (name.includes('/')) {
    if (!name.startsWith('/')) throw new UntrustedProgram(`#!${env} ${name}: a program path for env must be absolute`);
    return walkProgram(name, `${name} (run by ${env})`, options);
  }
  for (const directory of options.searchPath.split(':')) {
    const lstat = options.lstat ?? lstatPath;
    walkTrusted(
      directory,
      `${env} ${name} searches ${directory} on the epilogue's PATH`,
      { ...options.policy, finalType: 'directory' },
      lstat,
    );
    const candidate = `${directory}/${name}`;
    try {
      lstat(candidate);
    } catch {
      continue;
    }
    const found = walkTrusted(
      candidate,
      `${candidate} (found by ${env} on the epilogue's PATH)`,
      options.policy,
      lstat,
    );
    if (mayRun(found.stats, options.runner)) return found;
  }
  throw new UntrustedProgram(`${env} finds no program ${name} on the epilogue's PATH (${options.searchPath})`);
}

/**
 * Walks every interpreter that runs when `first` (already trust-walked) is executed, and returns
 * their resolved paths in the order they run. Throws UntrustedProgram naming the program and rule.
 */
export function walkInterpreters(first: string, firstStats: Stats, options: ChainOptions): string[] {
  const chain: string[] = [];
  let program = { path: first, stats: firstStats };
  // Started by execvp (start-payload, env): a file the kernel cannot run (ENOEXEC) then runs under /bin/sh.
  let byExecvp = true;
  let scripts = 0;
  for (;;) {
    const head = readCheckedHead(program.path, program.stats, HEAD_BYTES);
    let line = parseInterpreterLine(head, program.path);
    if (line === undefined) {
      if (head.subarray(0, 4).equals(ELF_MAGIC)) return chain;
      if (!byExecvp)
        throw new UntrustedProgram(
          `${program.path} is neither an ELF program nor a #! script, so the kernel cannot run it as an interpreter`,
        );
      line = { interpreter: '/bin/sh' };
    }
    scripts += 1;
    if (scripts > MAX_SCRIPT_LEVELS)
      throw new UntrustedProgram(
        `${first} has more than ${MAX_SCRIPT_LEVELS} levels of #! interpreters, more than the kernel follows`,
      );
    const what = `its interpreter ${line.interpreter} (#! of ${program.path})`;
    if (!line.interpreter.startsWith('/')) throw new UntrustedProgram(`${what} is not an absolute path`);
    const interpreter = walkProgram(line.interpreter, what, options);
    chain.push(interpreter.resolved);
    if (basename(line.interpreter) === 'env' || basename(interpreter.resolved) === 'env') {
      const found = programFoundByEnv(line, options);
      chain.push(found.resolved);
      program = { path: found.resolved, stats: found.stats };
      byExecvp = true;
    } else {
      program = { path: interpreter.resolved, stats: interpreter.stats };
      byExecvp = false;
    }
  }
}
