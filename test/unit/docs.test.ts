import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseConfigText } from '../../src/config/load';
import { configKeys, configSchema } from '../../src/config/schema';

const repo = join(__dirname, '../../..');
const sampleConfig = readFileSync(join(repo, 'etc/glexec.conf'), 'utf8');
const readme = readFileSync(join(repo, 'README.md'), 'utf8');

describe('documentation', () => {
  it('etc/glexec.conf lists every key with its default, commented out', () => {
    for (const key of configKeys) {
      const line = new RegExp(`^# ${key} =(.*)$`, 'm').exec(sampleConfig);
      assert.ok(line, `etc/glexec.conf does not list ${key}`);
      const uncommented = parseConfigText(`[glexec]\n${key} =${line[1]}\n`, 'etc/glexec.conf').config;
      assert.deepEqual(uncommented[key], configSchema[key].default, `the default of ${key} in etc/glexec.conf`);
    }
  });

  it('etc/glexec.conf is accepted as it is', () => {
    assert.doesNotThrow(() => parseConfigText(sampleConfig, 'etc/glexec.conf'));
  });

  it('a default written differently from its parsed value (LOG_DAEMON) is written the same in the README and etc/glexec.conf', () => {
    const written = configKeys.flatMap((key) => {
      const form = (configSchema[key] as { written?: string }).written;
      return form === undefined ? [] : [[key, form] as const];
    });
    assert.ok(written.length > 0);
    for (const [key, form] of written) {
      assert.match(sampleConfig, new RegExp(`^# ${key} = ${form}$`, 'm'), `etc/glexec.conf: ${key}`);
      assert.match(readme, new RegExp(`^\\| \`${key}\` \\| \`${form}\` \\|`, 'm'), `README.md: ${key}`);
    }
  });

  it('the README names every key', () => {
    for (const key of configKeys) assert.ok(readme.includes(`\`${key}\``), `README.md does not mention ${key}`);
  });
});
