import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Fails the run when a test leaves a temporary folder or a run in the working copy behind.
    globalSetup: ['test/helpers/leftovers.ts'],
  },
});
