import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfigText } from '../../src/config/load';
import { configKeys, configSchema, defaultConfig } from '../../src/config/schema';
import { GlexecError } from '../../src/errors';

const PATH = '/etc/glexec.conf';

function refusal(text: string): GlexecError {
  try {
    parseConfigText(text, PATH);
  } catch (error) {
    assert.ok(error instanceof GlexecError);
    return error;
  }
  assert.fail('expected the configuration to be refused');
}

describe('glexec.conf', () => {
  it('every default is pinned', () => {
    const defaults = defaultConfig();
    assert.deepEqual(
      { ...defaults },
      {
        user_white_list: [],
        group_white_list: [],
        omission_private_key_white_list: [],
        certdir: '',
        gridmapfile: '/etc/grid-security/grid-mapfile',
        user_identity_switch_by: 'glexec',
        use_lcas: false,
        lcmaps_db_file: '',
        lcmaps_get_account_policy: '',
        lcmaps_backend: 'builtin',
        lcmaps_verify_account_policy: '',
        lcmaps_libdir: '',
        lcmaps_log_file: '',
        lcmaps_debug_level: 0,
        lcmaps_log_level: 0,
        lcmaps_voms_verification: true,
        lcas_libdir: '',
        lcas_db_file: '',
        lcas_log_file: '',
        lcas_debug_level: 0,
        lcas_log_level: 0,
        vomsdir: '/etc/grid-security/vomsdir',
        linger: true,
        preserve_env_variables: [],
        prohibit_exec_via_symlink: false,
        pedantic_security_checks: false,
        create_target_proxy: true,
        target_lock_mechanism: 'flock',
        input_lock_mechanism: 'flock',
        lock_mechanism: 'flock',
        kill_grace: 5,
        containment: 'cgroup',
        cgroup_base: '',
        runtime_directory: '/run/glexec',
        kill_leftovers: true,
        max_processes: 0,
        no_new_privs: false,
        epilogue: '',
        epilogue_user: 'root',
        epilogue_group: '',
        epilogue_timeout: 300,
        backlog_path: '',
        log_destination: 'syslog',
        log_file: '/var/log/glexec/glexec_log',
        log_file_group: 'root',
        log_level: 3,
        silent_logging: false,
        diff_syslog_levels: true,
        syslog_facility: 'daemon',
      },
    );
  });

  it('every key has a documentation line', () => {
    for (const key of configKeys) assert.ok(configSchema[key].doc.length > 10, key);
  });

  it('reads the keys of the [glexec] section with their types', () => {
    const { config } = parseConfigText(
      [
        '# comment',
        '[glexec]',
        'user_white_list = pilot, .ops , atlas*',
        'log_level = 4',
        'silent_logging = YES',
        'log_destination = File',
        'syslog_facility = LOG_AUTHPRIV',
        'kill_grace = 0.25',
      ].join('\n'),
      PATH,
    );
    assert.deepEqual(config.user_white_list, ['pilot', '.ops', 'atlas*']);
    assert.equal(config.log_level, 4);
    assert.equal(config.silent_logging, true);
    assert.equal(config.log_destination, 'file');
    assert.equal(config.syslog_facility, 'authpriv');
    assert.equal(config.kill_grace, 0.25);
  });

  it('an unknown key is a 202 that names the key', () => {
    const error = refusal('[glexec]\nepilog = /usr/libexec/cleanup\n');
    assert.equal(error.exitCode, 202);
    assert.equal(error.code, 'config.unknown_key');
    assert.equal(error.message, "/etc/glexec.conf: unknown key 'epilog' in [glexec]");
  });

  it('a bad value is a 202 that names the key and the value', () => {
    const error = refusal('[glexec]\nlog_destination = foo\n');
    assert.equal(error.exitCode, 202);
    assert.equal(
      error.message,
      "/etc/glexec.conf: value 'foo' for key 'log_destination' not understood: expected one of syslog, file",
    );
  });

  it('a non-numeric log_level is a 202', () => {
    assert.equal(refusal('[glexec]\nlog_level = loud\n').code, 'config.bad_value');
  });

  it('a relative certdir is a 202', () => {
    assert.match(refusal('[glexec]\ncertdir = certs\n').message, /'certdir' not understood: expected an absolute path/);
  });

  it('a key set twice is a 202 that names both lines', () => {
    const error = refusal('[glexec]\nlog_level = 3\n\nlog_level = 5\n');
    assert.equal(error.message, "/etc/glexec.conf: key 'log_level' in [glexec] is set twice (lines 2 and 4)");
  });

  it('a key outside any section is a 202', () => {
    assert.equal(refusal('log_level = 3\n[glexec]\n').code, 'config.outside_section');
  });

  it('a file without a [glexec] section is a 202', () => {
    assert.equal(refusal('[other]\nx = 1\n').code, 'config.no_section');
  });

  it('other sections are ignored with a note', () => {
    const { notes } = parseConfigText('[glexec]\nlog_level = 3\n[dummy]\nanything = 1\n', PATH);
    assert.ok(notes.some((note) => note.msg.includes('section [dummy] is not read')));
  });

  it('use_lcas = yes is refused because LCAS would silently stop applying', () => {
    const error = refusal('[glexec]\nuse_lcas = yes\n');
    assert.equal(error.code, 'config.unsupported');
    assert.match(error.message, /key 'use_lcas' = 'yes' is not supported/);
  });

  it('use_lcas = no is accepted', () => {
    assert.equal(parseConfigText('[glexec]\nuse_lcas = no\n', PATH).config.use_lcas, false);
  });

  it('lcmaps_db_file and lcmaps_get_account_policy are read', () => {
    const { config } = parseConfigText(
      '[glexec]\nlcmaps_db_file = /etc/lcmaps.db\nlcmaps_get_account_policy = glexec_get_account:fallback\n',
      PATH,
    );
    assert.equal(config.lcmaps_db_file, '/etc/lcmaps.db');
    assert.equal(config.lcmaps_get_account_policy, 'glexec_get_account:fallback');
  });

  it('keys that are safe to ignore are accepted and noted as ignored', () => {
    const { notes } = parseConfigText('[glexec]\nlcas_log_file = /var/log/y\nlcmaps_log_file = /var/log/x\n', PATH);
    assert.equal(notes.filter((note) => note.msg.includes('accepted and ignored')).length, 2);
  });

  it('preserve_env_variables refuses loader variables such as LD_PRELOAD', () => {
    const error = refusal('[glexec]\npreserve_env_variables = HOME, LD_PRELOAD\n');
    assert.match(error.message, /LD_PRELOAD cannot be preserved/);
  });

  it('a yes/no key refuses other words', () => {
    assert.match(refusal('[glexec]\nlinger = maybe\n').message, /expected yes or no/);
  });
});
