// Lint rules. The one that matters most: only src/sys/ may spawn, kill, switch identity, touch
// files or load the native addon (the TypeScript counterpart of sudo-rs's walled-off unsafe code).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const privileged = {
  'no-restricted-imports': [
    'error',
    {
      paths: [
        { name: 'node:child_process', message: 'Spawning lives in src/sys/proc.ts.', allowTypeImports: true },
        { name: 'child_process', message: 'Spawning lives in src/sys/proc.ts.', allowTypeImports: true },
        { name: 'posix', message: 'The native addon is loaded in src/sys/posix.ts.' },
        ...['node:fs', 'fs', 'node:fs/promises', 'fs/promises'].map((name) => ({
          name,
          message: 'Files are read and written through the gateway, src/sys/files.ts.',
          allowTypeImports: true,
        })),
      ],
    },
  ],
  'no-restricted-properties': [
    'error',
    ...['kill', 'setuid', 'setgid', 'seteuid', 'setegid', 'setgroups', 'initgroups'].map((property) => ({
      object: 'process',
      property,
      message: 'Privileged process calls live in src/sys/.',
    })),
  ],
};

export default tseslint.config(
  { ignores: ['build/**', 'node_modules/**', 'dist/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: [
      'bin/glexec.js',
      'scripts/pino-no-transport.js',
      'scripts/pino-main-thread.js',
      'scripts/lazy-assert.js',
      'scripts/lazy-child-process.js',
      'scripts/pino-no-diagnostics.js',
      'scripts/lazy-on-exit.js',
      'scripts/lazy-multistream.js',
    ],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {
        require: 'readonly',
        module: 'writable',
        exports: 'writable',
        __dirname: 'readonly',
        __filename: 'readonly',
        process: 'readonly',
        globalThis: 'readonly',
        Symbol: 'readonly',
      },
    },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' } },
  },
  { files: ['src/**/*.ts'], ignores: ['src/sys/**'], rules: privileged },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
