import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const loader = join(__dirname, '../../dist/glexec.js'); // build/dist, made by npm run build

/** Node's built-in modules loaded by the time the bundle exits (here: refused, not started by the shim). */
function builtinsLoadedBy(args: string[]): { builtins: string[]; stderr: string } {
  const script = [
    `process.on('exit', () => process.stdout.write(JSON.stringify(process.moduleLoadList)));`,
    `process.argv.splice(1, 0, ${JSON.stringify(loader)});`,
    `require(${JSON.stringify(loader)});`,
  ].join('\n');
  const result = spawnSync(process.execPath, ['-e', script, '--', ...args], { encoding: 'utf8', env: {} });
  const loaded = JSON.parse(result.stdout) as string[];
  return {
    builtins: loaded.filter((name) => name.startsWith('NativeModule ')).map((name) => name.slice(13)),
    stderr: result.stderr,
  };
}

describe('the bundle', () => {
  it('loads neither node:worker_threads nor node:assert on its way to a run (pino and sonic-boom get stand-ins)', () => {
    const { builtins, stderr } = builtinsLoadedBy(['-v']);
    assert.match(stderr, /not started by its shim/);
    // The list is the real one: the bundle's own imports are in it.
    assert.ok(builtins.includes('child_process') && builtins.includes('crypto'), builtins.join(' '));
    assert.ok(!builtins.includes('worker_threads'), 'worker_threads was loaded');
    assert.ok(!builtins.includes('assert'), 'assert was loaded');
  });
});
