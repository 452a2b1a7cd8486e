import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/native/**/*.test.ts', 'test/gpu/**/*.test.ts', 'test/server/**/*.test.ts'],
    // Native tiers load llama.cpp into the worker: separate processes, one file at a time (2 cores).
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
