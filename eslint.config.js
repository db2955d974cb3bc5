// ESLint (flat config) with typescript-eslint's type-aware recommended rules: the router is
// asynchronous end to end, and a floating or misused promise there is a lost message, so the
// rules that need type information are worth their cost. Formatting is Prettier's job
// (.prettierrc.json); none of the rules below concern layout.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'dist/',
      '.tap/',
      'data/',
      'coverage/',
      'tmp/',
      'bench/results/',
      'vendor/',
      '**/*.generated.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      globals: { ...globals.node },
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A binding read by a closure made before its one assignment cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Rethrowing what was caught, whatever it is, is how errors pass through unchanged.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingUnknown: true }],
      // A leading underscore marks a binding kept for its position (a destructured field left
      // out of a rest, an unused parameter of a callback signature).
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
    },
  },
  {
    // Implementations of promise-returning interfaces (state stores, transports, test fakes
    // and drivers) are often synchronous inside; `async` keeps a throw a rejection, which
    // their callers rely on.
    files: ['core/state/**/*.ts', 'core/transport/**/*.ts', '**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/require-await': 'off' },
  },
  {
    // `unknown | Promise<unknown>` in these signatures tells a plugin author (and a thread-RPC
    // handler) that it may be async; the union is redundant only to the type checker.
    files: [
      'core/plugin-api.ts',
      'core/thread-contract/thread-rpc.ts',
      'core/worker/entry.ts',
      'test/helpers/charger.ts',
    ],
    rules: { '@typescript-eslint/no-redundant-type-constituents': 'off' },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      // WebSocket messages (Buffer) and test values are turned into text with String().
      '@typescript-eslint/no-base-to-string': 'off',
    },
  },
  {
    files: ['**/*.test.ts', 'test/helpers/**/*.ts', 'test/fixtures/**/*.ts'],
    rules: {
      // Tests read JSON from sockets, HTTP bodies and ClickHouse as `any` and assert on it.
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts', '**/*.test.ts'],
    rules: {
      // Event listeners of test and benchmark drivers may be async: a rejection there fails
      // the run loudly, which is what a driver wants.
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
    },
  },
  {
    files: ['**/*.test.ts', 'test/helpers/*.ts'],
    rules: {
      // tap's t.test() returns a promise that tap itself awaits in order.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', name: ['test', 'skip', 'only', 'todo'], package: '@tapjs/test' }],
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
