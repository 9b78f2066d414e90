// Builds everything: the TypeScript (type-checked) into build/, the single-file bundle the shim
// runs into build/dist/glexec.js, and the man pages into build/man/. The shim itself is compiled
// at install time, because the paths it holds are chosen then.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', root], { stdio: 'inherit' });
mkdirSync(join(root, 'build/dist'), { recursive: true });
await build({
  entryPoints: [join(root, 'src/main.ts')],
  outfile: join(root, 'build/dist/glexec.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  legalComments: 'none',
  define: { GLEXEC_BUNDLED: 'true' },
  // Never loaded in the bundle (the addon is required by absolute path there); keeps esbuild quiet.
  external: ['posix', 'posix/*'],
  logLevel: 'warning',
});
execFileSync(process.execPath, [join(root, 'scripts/build-man.mjs')], { stdio: 'inherit' });
console.log('built build/, build/dist/glexec.js and build/man/');
