import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { configKeys } from '../../src/config/schema';
import { missingTool } from '../helpers/tools';

const manDir = join(__dirname, '../../man'); // build/man, made by npm run build

/** The page as man(1) renders it, and what it warned. */
function render(page: string): { text: string; warnings: string } {
  const result = spawnSync('man', ['--warnings', '-l', join(manDir, page)], {
    encoding: 'utf8',
    env: { ...process.env, MANWIDTH: '100', MAN_KEEP_FORMATTING: '' },
  });
  assert.equal(result.status, 0, result.stderr);
  // Undo hyphenation and overstriking (bold is 'x\bx' when output is not a terminal).
  // eslint-disable-next-line no-control-regex
  return { text: result.stdout.replace(/\u2010\n\s*/g, '').replace(/.\x08/g, ''), warnings: result.stderr };
}

describe('man pages', { skip: missingTool('man') }, () => {
  it('glexec(8) renders without warnings and names every exit code, option and variable', () => {
    const { text, warnings } = render('glexec.8');
    assert.equal(warnings, '');
    for (const word of [
      '201',
      '202',
      '203',
      '204',
      '126',
      '128+N',
      '--check',
      '-V',
      'GLEXEC_CLIENT_CERT',
      'X509_USER_PROXY',
      'GLEXEC_ID',
      '/etc/glexec.conf',
    ]) {
      assert.ok(text.includes(word), `glexec(8) does not mention ${word}`);
    }
  });

  it('glexec.conf(5) renders without warnings and documents every key and every epilogue variable', () => {
    const { text, warnings } = render('glexec.conf.5');
    assert.equal(warnings, '');
    for (const key of configKeys) assert.match(text, new RegExp(`^\\s+${key} = `, 'm'), `glexec.conf(5) lacks ${key}`);
    for (const name of [
      'ARGC',
      'GLEXEC_USER',
      'GLEXEC_SGIDS',
      'TARGET_SGIDS',
      'GLEXEC_SID',
      'TARGET_PGID',
      'TARGET_RC',
      'PATH',
    ]) {
      assert.ok(text.includes(`GLEXEC_EPILOG_${name}`), `glexec.conf(5) lacks GLEXEC_EPILOG_${name}`);
    }
  });
});
