/**
 * The LCMAPS policy file (lcmaps.db, e.g. /etc/lcmaps.db or /etc/lcmaps/lcmaps-glexec.db), as the
 * site writes it for gLExec:
 *
 *     path = /usr/lib64/lcmaps                      # where LCMAPS looks for plug-ins
 *     verifyproxy = "lcmaps_verify_proxy.mod"       # a module: label = "file options…"
 *                   " -certdir /etc/grid-security/certificates"
 *                   "--allow-limited-proxy"
 *     glexec_get_account:                           # a policy
 *     verifyproxy -> localaccount                   # rules: on success -> next
 *     localaccount -> posix_enf | poolaccount       #        on failure | alternative
 *
 * A module definition is one or more quoted strings, which may go on over the following lines
 * (blank and comment lines between them included). The strings are joined and split into words
 * at white space, as LCMAPS does: the first word is the plug-in file, the rest its options, so
 * one string may hold several options. `#` starts a comment outside quotes.
 */
import { systemError } from '../errors';
import { readTrustedFile } from '../sys/files';

/** Far above any real lcmaps.db (a few KiB). */
const MAX_LCMAPS_DB_BYTES = 1024 * 1024;

const LABEL = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

export interface LcmapsModule {
  /** The label the policies use, e.g. `verifyproxy`. */
  readonly name: string;
  /** The plug-in file as written, e.g. `lcmaps_verify_proxy.mod` or an absolute path. */
  readonly file: string;
  readonly args: readonly string[];
  readonly line: number;
}

export interface LcmapsRule {
  readonly from: string;
  readonly onSuccess: string;
  readonly onFailure?: string;
  readonly line: number;
}

export interface LcmapsPolicy {
  readonly name: string;
  readonly line: number;
  readonly rules: readonly LcmapsRule[];
}

export interface LcmapsDb {
  /** The file it was read from, for messages. */
  readonly file: string;
  readonly path?: string;
  readonly modules: ReadonlyMap<string, LcmapsModule>;
  /** In file order, which is also the order LCMAPS runs them in. */
  readonly policies: readonly LcmapsPolicy[];
}

type TokenKind = 'word' | 'string' | '=' | ':' | '->' | '|';

interface Token {
  readonly kind: TokenKind;
  readonly text: string;
}

/** Thrown inside the parser; becomes a 202 naming file and line. */
class SyntaxProblem extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(message);
  }
}

function describeToken(token: Token | undefined): string {
  if (token === undefined) return 'the end of the line';
  return token.kind === 'string' ? `"${token.text}"` : `'${token.text}'`;
}

/** Splits one line into tokens; the comment is dropped. */
function tokenize(text: string, line: number): Token[] {
  const tokens: Token[] = [];
  let index = 0;
  while (index < text.length) {
    const char = text[index] ?? '';
    if (char === '#') break;
    if (/\s/.test(char)) {
      index++;
    } else if (char === '"') {
      const end = text.indexOf('"', index + 1);
      if (end < 0) throw new SyntaxProblem(line, `the quoted string ${text.slice(index)} has no closing quote`);
      tokens.push({ kind: 'string', text: text.slice(index + 1, end) });
      index = end + 1;
    } else if (text.startsWith('->', index)) {
      tokens.push({ kind: '->', text: '->' });
      index += 2;
    } else if (char === '=' || char === ':' || char === '|') {
      tokens.push({ kind: char, text: char });
      index++;
    } else {
      const start = index;
      while (index < text.length && !/[\s"#=:|]/.test(text[index] ?? '') && !text.startsWith('->', index)) index++;
      tokens.push({ kind: 'word', text: text.slice(start, index) });
    }
  }
  return tokens;
}

function requireLabel(token: Token | undefined, line: number, what: string): string {
  if (token?.kind !== 'word' || !LABEL.test(token.text)) {
    throw new SyntaxProblem(line, `expected ${what}, found ${describeToken(token)}`);
  }
  return token.text;
}

interface ModuleDraft {
  name: string;
  line: number;
  strings: string[];
}

interface PolicyDraft {
  name: string;
  line: number;
  rules: LcmapsRule[];
}

function parseRule(tokens: readonly Token[], line: number): LcmapsRule {
  const from = requireLabel(tokens[0], line, 'a module name before ->');
  const onSuccess = requireLabel(tokens[2], line, `a module name after '${from} ->'`);
  if (tokens.length === 3) return { from, onSuccess, line };
  if (tokens[3]?.kind !== '|')
    throw new SyntaxProblem(
      line,
      `expected '|' or the end of the rule after '${from} -> ${onSuccess}', found ${describeToken(tokens[3])}`,
    );
  const onFailure = requireLabel(tokens[4], line, `a module name after '${from} -> ${onSuccess} |'`);
  if (tokens.length > 5)
    throw new SyntaxProblem(
      line,
      `unexpected ${describeToken(tokens[5])} after the rule '${from} -> ${onSuccess} | ${onFailure}'`,
    );
  return { from, onSuccess, onFailure, line };
}

function finishModule(draft: ModuleDraft): LcmapsModule {
  const words = draft.strings
    .join(' ')
    .split(/\s+/)
    .filter((word) => word !== '');
  const [file, ...args] = words;
  if (file === undefined)
    throw new SyntaxProblem(
      draft.line,
      `module '${draft.name}' names no plug-in file (its quoted string is empty or missing)`,
    );
  return { name: draft.name, file, args, line: draft.line };
}

function checkPolicy(policy: PolicyDraft, modules: ReadonlyMap<string, LcmapsModule>, file: string): void {
  if (policy.rules.length === 0) throw new SyntaxProblem(policy.line, `policy '${policy.name}' has no rules`);
  const ruleLines = new Map<string, number>();
  for (const rule of policy.rules) {
    const earlier = ruleLines.get(rule.from);
    if (earlier !== undefined) {
      throw new SyntaxProblem(
        rule.line,
        `policy '${policy.name}' already has a rule for '${rule.from}' (line ${earlier})`,
      );
    }
    ruleLines.set(rule.from, rule.line);
    for (const name of [rule.from, rule.onSuccess, rule.onFailure]) {
      if (name !== undefined && !modules.has(name)) {
        throw systemError(
          'lcmaps.undefined_module',
          `${file} line ${rule.line}: policy '${policy.name}' names module '${name}', which is not defined`,
        );
      }
    }
  }
  // LCMAPS refuses policies that can run in circles; so does glexec, naming the circle.
  const next = new Map(policy.rules.map((rule) => [rule.from, rule]));
  const finished = new Set<string>();
  const visit = (name: string, trail: string[]): void => {
    if (finished.has(name)) return;
    const loopStart = trail.indexOf(name);
    if (loopStart >= 0) {
      const loop = [...trail.slice(loopStart), name].join(' -> ');
      throw systemError(
        'lcmaps.policy_loop',
        `${file} line ${next.get(name)?.line ?? policy.line}: policy '${policy.name}' runs in a circle: ${loop}`,
      );
    }
    const rule = next.get(name);
    if (rule !== undefined) {
      for (const target of [rule.onSuccess, rule.onFailure]) if (target !== undefined) visit(target, [...trail, name]);
    }
    finished.add(name);
  };
  for (const rule of policy.rules) visit(rule.from, []);
}

/** Parses lcmaps.db text; `file` names it in error messages. Any problem is a 202. */
export function parseLcmapsDb(text: string, file: string): LcmapsDb {
  try {
    let path: string | undefined;
    let pathLine = 0;
    const drafts: ModuleDraft[] = [];
    const policies: PolicyDraft[] = [];
    let openModule: ModuleDraft | undefined;
    let currentPolicy: PolicyDraft | undefined;

    text.split(/\r?\n/).forEach((lineText, index) => {
      const line = index + 1;
      const tokens = tokenize(lineText, line);
      if (tokens.length === 0) return;
      if (tokens.every((token) => token.kind === 'string')) {
        if (openModule === undefined)
          throw new SyntaxProblem(
            line,
            `the quoted string ${describeToken(tokens[0])} belongs to no module definition`,
          );
        openModule.strings.push(...tokens.map((token) => token.text));
        return;
      }
      openModule = undefined;
      const [first, second] = tokens;
      if (second?.kind === '=' && first?.kind === 'word' && first.text === 'path') {
        const value = tokens[2];
        if ((value?.kind !== 'word' && value?.kind !== 'string') || tokens.length > 3 || value.text === '') {
          throw new SyntaxProblem(
            line,
            `'path =' needs exactly one directory, found ${tokens.length > 3 ? describeToken(tokens[3]) : describeToken(value)}`,
          );
        }
        if (path !== undefined) throw new SyntaxProblem(line, `'path' is set twice (lines ${pathLine} and ${line})`);
        path = value.text;
        pathLine = line;
      } else if (second?.kind === '=') {
        const name = requireLabel(first, line, 'a module name before =');
        const rest = tokens.slice(2);
        const stray = rest.find((token) => token.kind !== 'string');
        if (stray !== undefined)
          throw new SyntaxProblem(
            line,
            `module '${name}': expected quoted strings after '=', found ${describeToken(stray)}`,
          );
        openModule = { name, line, strings: rest.map((token) => token.text) };
        drafts.push(openModule);
      } else if (second?.kind === ':') {
        const name = requireLabel(first, line, 'a policy name before :');
        if (tokens.length > 2)
          throw new SyntaxProblem(line, `unexpected ${describeToken(tokens[2])} after the policy name '${name}:'`);
        currentPolicy = { name, line, rules: [] };
        policies.push(currentPolicy);
      } else if (second?.kind === '->') {
        const rule = parseRule(tokens, line);
        if (currentPolicy === undefined)
          throw new SyntaxProblem(
            line,
            `the rule '${rule.from} -> ${rule.onSuccess}' comes before any 'policy_name:' line`,
          );
        currentPolicy.rules.push(rule);
      } else {
        throw new SyntaxProblem(
          line,
          `cannot understand ${describeToken(first)}${second ? ` ${describeToken(second)}` : ''}: expected 'path = DIR', 'name = "module.mod …"', 'policy:' or 'a -> b [| c]'`,
        );
      }
    });

    const modules = new Map<string, LcmapsModule>();
    for (const draft of drafts) {
      const earlier = modules.get(draft.name);
      if (earlier !== undefined)
        throw new SyntaxProblem(
          draft.line,
          `module '${draft.name}' is defined twice (lines ${earlier.line} and ${draft.line})`,
        );
      modules.set(draft.name, finishModule(draft));
    }
    const policyLines = new Map<string, number>();
    for (const policy of policies) {
      const earlier = policyLines.get(policy.name);
      if (earlier !== undefined)
        throw new SyntaxProblem(
          policy.line,
          `policy '${policy.name}' is defined twice (lines ${earlier} and ${policy.line})`,
        );
      policyLines.set(policy.name, policy.line);
      checkPolicy(policy, modules, file);
    }
    return { file, ...(path === undefined ? {} : { path }), modules, policies };
  } catch (error) {
    if (error instanceof SyntaxProblem)
      throw systemError('lcmaps.syntax', `${file} line ${error.line}: ${error.message}`);
    throw error;
  }
}

/** Reads lcmaps.db after checking that only root can change it or any directory above it. */
export function readLcmapsDb(path: string): LcmapsDb {
  const policy = { trustedUids: [], trustedGids: [], finalType: 'file' } as const;
  const file = {
    what: 'lcmaps.db',
    policy,
    maxBytes: MAX_LCMAPS_DB_BYTES,
    untrustedCode: 'lcmaps.untrusted',
    unreadableCode: 'lcmaps.unreadable',
  };
  return parseLcmapsDb(readTrustedFile(path, file).toString('latin1'), path);
}
