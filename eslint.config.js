// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'guest/**', '.cache/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Only src/sys/ may touch native code.
    files: ['src/**/*.ts'],
    ignores: ['src/sys/**'],
    rules: {
      'no-restricted-imports': ['error', { paths: [{ name: 'koffi', message: 'Only src/sys/ may import koffi.' }] }],
    },
  },
  {
    // The pure layers run without sockets or native code.
    files: ['src/spec/**', 'src/wire/**', 'src/memory/**', 'src/virtqueue/**', 'src/device/**', 'src/driver/**'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: [{ name: 'koffi', message: 'Only src/sys/ may import koffi.' }, { name: 'node:net', message: 'Pure layer: no sockets.' }],
        patterns: [{ group: ['**/sys/*', '**/transport/*', '**/cli/*'], message: 'Dependency direction: spec <- wire <- memory/virtqueue <- device/driver <- transport <- chat <- cli.' }],
      }],
    },
  },
);
