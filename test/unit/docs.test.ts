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

  it('the README names every key', () => {
    for (const key of configKeys) assert.ok(readme.includes(`\`${key}\``), `README.md does not mention ${key}`);
  });
});
