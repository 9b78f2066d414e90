import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { missingTool } from '../helpers/tools';

const examples = join(__dirname, '../../../etc/epilogue');

describe('example epilogues', () => {
  it('are shellcheck-clean', { skip: missingTool('shellcheck') }, () => {
    const scripts = readdirSync(examples).filter((name) => name.endsWith('.sh'));
    assert.ok(scripts.length >= 3);
    const result = spawnSync('shellcheck', ['--shell=sh', ...scripts.map((name) => join(examples, name))], {
      encoding: 'utf8',
    });
    assert.equal(result.stdout + result.stderr, '');
    assert.equal(result.status, 0);
  });
});
