/**
 * Reads glexec.conf: trust of the file and its directories, then `ini`, then every `[glexec]`
 * key through the schema table. Any problem is a 202 that names the key, the value or the line.
 */
import { parse as parseIni } from 'ini';
import { type GlexecError, systemError } from '../errors';
import { readTrustedFile } from '../sys/files';
import { type Config, configSchema, defaultConfig, isConfigKey, ValueSyntaxError } from './schema';
import type { TrustedUidsLookup } from '../trust';

const SECTION = 'glexec';
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface LoadedConfig {
  readonly config: Config;
  /** Messages the loader could not log yet (the log opens after the config is read). */
  readonly notes: readonly { level: 'warn' | 'notice' | 'info'; msg: string }[];
}

/** Reads and checks the file; `trustedUids` are owners allowed besides root (the glexec account). */
export function loadConfig(path: string, trustedUids: readonly number[] | TrustedUidsLookup): LoadedConfig {
  const policy = { trustedUids, trustedGids: [], finalType: 'file' } as const;
  const file = {
    what: 'configuration file',
    policy,
    maxBytes: MAX_CONFIG_BYTES,
    untrustedCode: 'config.untrusted',
    unreadableCode: 'config.unreadable',
  };
  return parseConfigText(readTrustedFile(path, file).toString('utf8'), path);
}

/** What to do with a problem: a real run stops at the first; `glexec --check` collects them all. */
export type ProblemSink = (problem: GlexecError) => void;
const stopAtFirst: ProblemSink = (problem) => {
  throw problem;
};

/**
 * Finds keys set twice in `[glexec]`, which `ini` would silently resolve to the last one.
 * Returns the line of each key's last setting (the one `ini` keeps), for messages.
 */
function findDuplicateKeys(text: string, path: string, problem: ProblemSink): Map<string, number> {
  let section = '';
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((line, index) => {
    const header = /^\s*\[([^\]]*)\]\s*$/.exec(line);
    if (header) {
      section = (header[1] ?? '').trim();
      return;
    }
    const assignment = /^\s*([^=;#\s][^=]*?)\s*=/.exec(line);
    if (section !== SECTION || !assignment) return;
    const key = assignment[1] ?? '';
    const first = seen.get(key);
    if (first !== undefined) {
      problem(
        systemError(
          'config.duplicate_key',
          `${path}: key '${key}' in [${SECTION}] is set twice (lines ${first} and ${index + 1})`,
        ),
      );
    }
    seen.set(key, index + 1);
  });
  return seen;
}

/** `ini` turns `true`/`false` into booleans and `key` alone into true; give back the text. */
function rawText(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim();
  if (value === true) return 'true';
  if (value === false) return 'false';
  return undefined;
}

/**
 * Checks the text against the schema. Each problem goes to `problem` (by default the first one
 * is thrown); a key with a bad value keeps its default.
 */
export function parseConfigText(text: string, path: string, problem: ProblemSink = stopAtFirst): LoadedConfig {
  const keyLines = findDuplicateKeys(text, path, problem);
  const parsed: Record<string, unknown> = parseIni(text);
  const notes: { level: 'warn' | 'notice' | 'info'; msg: string }[] = [];
  const values: Record<string, unknown> = defaultConfig();

  for (const [name, value] of Object.entries(parsed)) {
    if (name === SECTION) continue;
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      notes.push({ level: 'info', msg: `${path}: section [${name}] is not read by glexec` });
      // A glexec key one section too low is a common slip: say so, since it changes nothing.
      for (const key of Object.keys(value).filter(isConfigKey)) {
        notes.push({
          level: 'warn',
          msg: `${path}: key '${key}' is under [${name}], not [${SECTION}]: it is ignored there`,
        });
      }
    } else {
      problem(systemError('config.outside_section', `${path}: key '${name}' is outside the [${SECTION}] section`));
    }
  }
  const section = parsed[SECTION];
  if (section === null || typeof section !== 'object' || Array.isArray(section)) {
    problem(systemError('config.no_section', `${path}: no [${SECTION}] section`));
    return { config: Object.freeze(values) as Config, notes };
  }

  for (const [name, value] of Object.entries(section as Record<string, unknown>)) {
    if (!isConfigKey(name)) {
      problem(systemError('config.unknown_key', `${path}: unknown key '${name}' in [${SECTION}]`));
      continue;
    }
    const raw = rawText(value);
    if (raw === undefined) {
      problem(
        systemError(
          'config.bad_value',
          `${path}: key '${name}' in [${SECTION}] must be a single value, not a list or section`,
        ),
      );
      continue;
    }
    const keySpec = configSchema[name];
    let parsedValue: unknown;
    try {
      parsedValue = keySpec.parse(raw);
    } catch (error) {
      const reason = (error as Error).message;
      const expected =
        error instanceof ValueSyntaxError && error.correction !== undefined ? `write ${error.correction}` : reason;
      const line = keyLines.get(name);
      problem(
        systemError(
          'config.bad_value',
          `${path}: value '${raw}' for key '${name}' not understood: ${reason}`,
          undefined,
          { kind: 'syntax', file: path, ...(line === undefined ? {} : { line }), expected },
        ),
      );
      continue;
    }
    const safe = keySpec.safe as ((v: unknown) => boolean) | undefined;
    if (keySpec.status === 'refused' && safe && !safe(parsedValue)) {
      problem(
        systemError(
          'config.unsupported',
          `${path}: key '${name}' = '${raw}' is not supported by this glexec: ${keySpec.doc}`,
        ),
      );
      continue;
    }
    values[name] = parsedValue;
    if (keySpec.status === 'ignored')
      notes.push({ level: 'info', msg: `${path}: key '${name}' is accepted and ignored: ${keySpec.doc}` });
  }
  return { config: Object.freeze(values) as Config, notes };
}
