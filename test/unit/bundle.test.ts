import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { GlexecError } from '../../src/errors';

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

describe("the first phase's modules", () => {
  it('load neither node:child_process, node:net, node:timers/promises nor commander until a spawn, a syslog check, a wait or an option needs one', () => {
    // The modules main.ts bundles (pipeline.ts imports every stage), and the parse of a run's command line.
    const script = [
      // Unbundled, pino's sonic-boom loads node:assert, which looks at process.stderr (a pipe here: a
      // net.Socket); the bundle gives sonic-boom a lazy assert instead (the test above).
      `Object.defineProperty(process, 'stderr', { value: { write: () => true } });`,
      `const { toAction } = require(${JSON.stringify(join(__dirname, '../../src/cli.js'))});`,
      `require(${JSON.stringify(join(__dirname, '../../src/pipeline.js'))});`,
      `require(${JSON.stringify(join(__dirname, '../../src/entry.js'))});`,
      `const action = toAction(['/bin/true', '-v']);`,
      `const commander = Object.keys(require.cache).filter((path) => path.includes('/node_modules/commander/'));`,
      // Not process.stdout: a pipe there is a net.Socket.
      `require('node:fs').writeSync(1, JSON.stringify({ action, commander, loaded: process.moduleLoadList }));`,
    ].join('\n');
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: {} });
    assert.equal(result.status, 0, result.stderr);
    const { action, commander, loaded } = JSON.parse(result.stdout) as {
      action: unknown;
      commander: string[];
      loaded: string[];
    };
    assert.deepEqual(action, { kind: 'run', payload: '/bin/true', args: ['-v'] });
    const builtins = loaded.filter((name) => name.startsWith('NativeModule ')).map((name) => name.slice(13));
    // The list is the real one: the modules' own imports are in it.
    assert.ok(builtins.includes('crypto'), builtins.join(' '));
    for (const unused of ['child_process', 'net', 'dgram', 'timers/promises'])
      assert.ok(!builtins.includes(unused), `${unused} was loaded`);
    assert.deepEqual(commander, []);
  });
});

describe('both bundles', () => {
  it("give pino a stand-in for node:diagnostics_channel (nothing in glexec's process subscribes to pino's channel)", () => {
    for (const bundle of ['glexec-main.js', 'glexec-conclude.js']) {
      const text = readFileSync(join(__dirname, '../../dist', bundle), 'utf8');
      assert.ok(text.includes('pino_asJson'), `${bundle}: pino's channel is not in it`);
      assert.ok(!/require\("(node:)?diagnostics_channel"\)/.test(text), `${bundle} loads node:diagnostics_channel`);
    }
  });
});

describe("the first phase's bundle", () => {
  const dist = join(__dirname, '../../dist');
  const read = (bundle: string) => readFileSync(join(dist, bundle), 'utf8');

  it('holds neither commander, the --check code nor the lcmaps.db code: each is a bundle of its own, loaded only when needed', () => {
    const main = read('glexec-main.js');
    for (const [bundle, distinctive] of [
      ['glexec-cli.js', 'commander.unknownOption'], // commander's own error code
      ['glexec-cli.js', '--check takes no payload'], // src/cli-commander.ts
      ['glexec-check.js', 'run npm run install-system again'], // src/check.ts
      ['glexec-lcmaps.js', 'lcmaps.policy_loop'], // src/lcmaps/db.ts
      ['glexec-lcmaps.js', 'lcmaps.unknown_policy'], // src/lcmaps/modules.ts
      ['glexec-lcmaps.js', '.glexec-claim~'], // src/mapping/pool.ts, the pool accounts
    ] as const) {
      assert.ok(read(bundle).includes(distinctive), `${bundle} lacks ${distinctive}`);
      assert.ok(!main.includes(distinctive), `glexec-main.js holds ${distinctive}`);
    }
    // It loads them by name, next to itself.
    for (const bundle of ['glexec-cli.js', 'glexec-check.js', 'glexec-lcmaps.js'])
      assert.ok(main.includes(`"${bundle}"`), bundle);
  });

  it('sees an error thrown by the copy of GlexecError in a lazily loaded bundle as a GlexecError, with its exit code', () => {
    // build/src/errors.js is another copy of the class than the one glexec-cli.js holds, as
    // glexec-main.js's is.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const cli = require(join(dist, 'glexec-cli.js')) as typeof import('../../src/cli-commander');
    let thrown: unknown;
    try {
      cli.parseWithCommander(['--frobnicate', '/bin/true']);
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown instanceof Error && thrown.constructor !== GlexecError, 'the bundle has its own copy');
    assert.ok(thrown instanceof GlexecError);
    assert.equal(thrown.exitCode, 201);
    assert.equal(thrown.code, 'usage.bad_option');
    assert.ok(!(new Error('other') instanceof GlexecError));
    for (const other of [null, 'text', { code: 'x', exitCode: 201 }] as unknown[])
      assert.ok(!(other instanceof GlexecError));
  });
});

describe("the second phase's bundle", () => {
  it("holds none of the first phase's code: proxy verification, the config parser, commander, the mapping", () => {
    const text = readFileSync(join(__dirname, '../../dist/glexec-conclude.js'), 'utf8');
    for (const phaseOne of [
      'the proxy file holds no certificate', // src/proxy/verify.ts
      'is outside the [', // src/config/load.ts
      'unknown option', // commander
      'grid-mapfile', // src/mapping/gridmap.ts
    ])
      assert.ok(!text.includes(phaseOne), phaseOne);
    assert.ok(text.includes('job completed'));
  });

  it('is what the loader runs when the monitor slot three before the first "--" says --phase=conclude, and only then', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glexec-loader-'));
    try {
      copyFileSync(loader, join(dir, 'glexec.js'));
      for (const name of ['main', 'conclude'])
        writeFileSync(join(dir, `glexec-${name}.js`), `process.stdout.write(${JSON.stringify(name)});`);
      const ran = (args: string[]) =>
        spawnSync(process.execPath, [join(dir, 'glexec.js'), ...args], { encoding: 'utf8', env: {} }).stdout;
      assert.equal(
        ran(['--config=/c', '--phase=conclude', '--plan-fd=3', '--done-fd=4', '--', '/bin/true']),
        'conclude',
      );
      assert.equal(ran(['--config=/c', '--phase=decide', '--plan-fd=3', '--done-fd=none', '--', '/bin/true']), 'main');
      // The caller's arguments come after the first "--": they cannot choose the bundle.
      assert.equal(
        ran([
          '--phase=decide',
          '--plan-fd=3',
          '--done-fd=none',
          '--',
          '--phase=conclude',
          '--plan-fd=3',
          '--done-fd=4',
          '--',
        ]),
        'main',
      );
      assert.equal(ran(['--phase=conclude', '--plan-fd=3', '--done-fd=4']), 'main');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the bundles as the build writes them', () => {
  it("carry node:module's wrapper where the loader compiles them, and are plain CommonJS modules where src/lazy.ts requires them", () => {
    const dist = join(__dirname, '../../dist');
    for (const bundle of ['glexec-main.js', 'glexec-conclude.js'])
      assert.ok(
        readFileSync(join(dist, bundle), 'utf8').startsWith(
          '(function (exports, require, module, __filename, __dirname) {',
        ),
        `${bundle} has no wrapper`,
      );
    // Each lazy bundle, required as src/lazy.ts requires it, gives what its caller takes from it.
    const script = [
      `const { join } = require('node:path');`,
      `const dist = ${JSON.stringify(dist)};`,
      `const exported = (name) => Object.keys(require(join(dist, name))).sort();`,
      `process.stdout.write(JSON.stringify({ cli: exported('glexec-cli.js'), check: exported('glexec-check.js'), lcmaps: exported('glexec-lcmaps.js') }));`,
    ].join('\n');
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: {} });
    assert.equal(result.status, 0, result.stderr);
    const { cli, check, lcmaps } = JSON.parse(result.stdout) as Record<string, string[]>;
    assert.ok(cli?.includes('parseWithCommander'), JSON.stringify(cli));
    assert.ok(check?.includes('checkInstallation') && check.includes('formatFinding'), JSON.stringify(check));
    assert.ok(lcmaps?.includes('mapWithLcmaps') && lcmaps.includes('lcmapsDbCertdir'), JSON.stringify(lcmaps));
  });
});
