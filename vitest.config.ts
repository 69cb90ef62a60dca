import { defineConfig } from 'vitest/config';
import { SlowFirstSequencer } from './test/slow-first-sequencer.js';

// Tests spawn real processes and real gRPC servers; two cores is the budget,
// so files run in at most two forks and long integration tests get room.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    sequence: { sequencer: SlowFirstSequencer },
  },
});
