/**
 * The bench's /proc reads. On a busy machine a process may end between being listed and being
 * read: that is a sample to take again, never an exception (the bench used to crash on ENOENT from
 * /proc/<pid>/smaps_rollup).
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface Memory {
  readonly rssKb: number;
  /** Private_Clean + Private_Dirty: what this process alone costs. */
  readonly privateKb: number;
}

/** What the samplers read; the real one reads /proc, tests give their own. */
export interface ProcReader {
  /** undefined: the process is gone (or a zombie, whose memory is gone too). */
  memory(pid: number): Memory | undefined;
  /** The process's children over all its threads; [] when it is gone. */
  children(pid: number): number[];
}

const vanished = (error: unknown): boolean => {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ESRCH';
};

/** A /proc file's text, or undefined when its process has gone. */
function readProcFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (vanished(error)) return undefined;
    throw error;
  }
}

/** Parses smaps_rollup; undefined when it has no Rss line (a zombie's is empty). */
export function parseRollup(text: string): Memory | undefined {
  const kb = (key: string): number | undefined => {
    const found = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1];
    return found === undefined ? undefined : Number(found);
  };
  const rssKb = kb('Rss');
  if (rssKb === undefined) return undefined;
  return { rssKb, privateKb: (kb('Private_Clean') ?? 0) + (kb('Private_Dirty') ?? 0) };
}

export const procReader: ProcReader = {
  memory(pid) {
    const text = readProcFile(`/proc/${pid}/smaps_rollup`);
    return text === undefined ? undefined : parseRollup(text);
  },
  children(pid) {
    let threads: string[];
    try {
      threads = readdirSync(`/proc/${pid}/task`);
    } catch (error) {
      if (vanished(error)) return [];
      throw error;
    }
    return threads.flatMap((thread) =>
      (readProcFile(`/proc/${pid}/task/${thread}/children`) ?? '').split(' ').filter(Boolean).map(Number),
    );
  },
};

export interface TreeSample {
  /** Private memory of the root and its descendants, the excluded subtree left out. */
  readonly privateKb: number;
  readonly processes: number;
  /** How many tries it took (a process that ended half-way makes the sample start again). */
  readonly attempts: number;
}

/**
 * The private memory of a process tree (a glexec job without its payload). If any process of the
 * tree ends while it is read, the whole tree is read again, up to `attempts` times; undefined when
 * the root itself is gone or no try saw a stable tree.
 */
export function sampleTree(
  root: number,
  exclude: ReadonlySet<number>,
  reader: ProcReader = procReader,
  attempts = 5,
): TreeSample | undefined {
  for (let attempt = 1; attempt <= attempts; attempt++) {
    let privateKb = 0;
    let processes = 0;
    let stable = true;
    const pending = [root];
    while (pending.length > 0) {
      const pid = pending.pop() as number;
      if (exclude.has(pid)) continue;
      const memory = reader.memory(pid);
      if (memory === undefined) {
        if (pid === root) return undefined;
        stable = false;
        break;
      }
      privateKb += memory.privateKb;
      processes++;
      pending.push(...reader.children(pid));
    }
    if (stable) return { privateKb, processes, attempts: attempt };
  }
  return undefined;
}
