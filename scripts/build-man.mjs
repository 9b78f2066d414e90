// Builds the man pages (roff) from their Markdown sources in man/, into build/man/.
// The sources use a small Markdown subset: `# name section "summary"`, `## SECTION`, paragraphs,
// definition lists (a term line, then `: description` with indented continuation lines),
// fenced code blocks, `code`, *italic* and **bold**. glexec.conf(5)'s key list (@KEYS@) is
// generated from the schema table, so every key, its default and its meaning are always there.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Escapes text for roff, then turns the inline Markdown into font changes. */
function inline(text) {
  const escape = (part) => part.replace(/\\/g, '\\e').replace(/-/g, '\\-');
  // Code spans first, so that a `*` inside one is not read as emphasis.
  return text
    .split(/(`[^`]+`)/)
    .map((part) =>
      part.startsWith('`') && part.endsWith('`') && part.length > 1
        ? `\\fB${escape(part.slice(1, -1))}\\fR`
        : escape(part)
            .replace(/\*\*([^*]+)\*\*/g, '\\fB$1\\fR')
            .replace(/\*([^*]+)\*/g, '\\fI$1\\fR'),
    )
    .join('')
    .replace(/^([.'])/, '\\&$1');
}

function keyList() {
  const { configSchema } = require(join(root, 'build/src/config/schema.js'));
  const show = (value) =>
    Array.isArray(value) ? value.join(', ') : typeof value === 'boolean' ? (value ? 'yes' : 'no') : String(value);
  const status = {
    used: '',
    ignored: ' Accepted and ignored by this glexec.',
    refused: ' Refused (exit 202) unless left at its default.',
  };
  return Object.entries(configSchema)
    .map(([key, spec]) => {
      const shown = spec.written ?? show(spec.default);
      const head = `\`${key}\` = ${shown === '' ? '(empty)' : `*${shown}*`}${spec.extension ? ' (an extension of this glexec)' : ''}`;
      return `${head}\n: ${spec.doc}${status[spec.status]}`;
    })
    .join('\n\n');
}

export function toRoff(markdown) {
  const lines = markdown.replace('@KEYS@', keyList).split('\n');
  const out = [];
  const title = /^# (\S+) (\d) "(.*)"$/.exec(lines.shift() ?? '');
  if (!title) throw new Error('the first line must be: # name section "summary"');
  out.push(`.TH "${title[1].toUpperCase()}" "${title[2]}" "" "glexec ${version}" "${title[3]}"`);
  let paragraph = [];
  const flush = () => {
    if (paragraph.length > 0) out.push('.PP', ...paragraph.map(inline));
    paragraph = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('## ')) {
      flush();
      out.push(`.SH "${line.slice(3).toUpperCase()}"`);
    } else if (line.startsWith('```')) {
      flush();
      out.push('.PP', '.RS 4', '.nf');
      for (i++; i < lines.length && !lines[i].startsWith('```'); i++) out.push(inline(lines[i]));
      out.push('.fi', '.RE');
    } else if (line.trim() === '') {
      flush();
    } else if (lines[i + 1]?.startsWith(': ')) {
      flush();
      out.push('.TP', inline(line), inline(lines[++i].slice(2)));
      while (lines[i + 1]?.startsWith('  ')) out.push(inline(lines[++i].trim()));
    } else {
      paragraph.push(line);
    }
  }
  flush();
  return `${out.join('\n')}\n`;
}

const sources = join(root, 'man');
const target = join(root, 'build/man');
mkdirSync(target, { recursive: true });
for (const name of readdirSync(sources).filter((file) => file.endsWith('.md'))) {
  writeFileSync(join(target, name.slice(0, -3)), toRoff(readFileSync(join(sources, name), 'utf8')));
}
