// @ts-check
// `npm run lint` runs this (with `tsc -p tsconfig.check.json`). Type-aware: the rules that catch a promise
// nobody awaits or handles matter most here, since an unhandled rejection ends a Node process.
import { defineConfig } from 'eslint/config';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import globals from 'globals';

export default defineConfig(
  { ignores: ['**/dist/', 'node_modules/', 'libs/proto/src/gen/', '.jetflow/', 'test-artifacts/', '.scratch*/'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { project: './tsconfig.check.json', tsconfigRootDir: import.meta.dirname },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/extensions': ['.ts', '.js', '.mjs'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
      // Resolves the NodeNext `./x.js` specifiers to the `./x.ts` sources, so cycles are seen.
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.check.json' })],
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's test()/describe() return promises the runner itself awaits.
        { allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] }] },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      // Off: `async` without `await` is how a callback meets a Promise-returning signature here (fastify
      // hooks and routes, loaders, test doubles); the rule would have those write Promise.resolve() instead.
      '@typescript-eslint/require-await': 'off',
      // A handle declared first so that closures built before it (a `close()`) can use it.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // `_name` marks a parameter or binding kept on purpose; `{ drop: _d, ...rest }` omits a field.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    // The built-in workers are the reference examples of @jetflow/worker: everything about being a worker
    // (the runtime, handlers and their context, errors, thread pools, worker config) comes from its public
    // entries only. Domain libs (models, storage, cache, plugins) stay direct. test/builtin-workers.test.ts
    // checks the same in the test suite.
    files: ['services/analyst/**/*.ts', 'services/dataset-generator/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '(^|/)libs/(messaging|pool|errors|worker-service)(/|$)|^@jetflow/(messaging|pool|errors|worker-service)$',
              message: 'A built-in worker uses the worker runtime through @jetflow/worker only (ARCHITECTURE.md, built-in workers on the SDK).',
            },
            { regex: '(^|/)packages/worker(/|$)|^@jetflow/worker/(?!threads$)', message: "Import '@jetflow/worker' or '@jetflow/worker/threads', not the SDK's files." },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['services/ingest/ui/**/*.js'],
    languageOptions: { globals: globals.browser },
  },
);
