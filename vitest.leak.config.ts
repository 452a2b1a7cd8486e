import { defineConfig } from 'vitest/config';

// The leak tier (npm run test:leak): minutes long, so not part of npm test. One file at a time
// keeps their memory apart. --expose-gc lets the tests sample memory after a full collection.
// MALLOC_ARENA_MAX=1 (read by glibc when the test process starts): every context brings new
// threads, and with glibc's default of up to 8 arenas per core each new thread's allocations can
// land in another arena, so native memory creeps up for thousands of cycles with nothing leaked;
// with one arena it levels off within the warm-up and what still grows is a leak.
export default defineConfig({
  test: {
    include: ['test/leak/**/*.test.ts'],
    pool: 'forks',
    poolOptions: { forks: { execArgv: ['--expose-gc'] } },
    env: { MALLOC_ARENA_MAX: '1' },
    fileParallelism: false,
    testTimeout: 1_800_000,
    hookTimeout: 300_000,
    globalSetup: ['test/helpers/global-setup.ts'],
  },
});
