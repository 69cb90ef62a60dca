import { existsSync } from 'node:fs';
import { expect, it } from 'vitest';
import { SLOW_FILES } from '../slow-first-sequencer.js';

// The sequencer starts these first (see test/slow-first-sequencer.ts): a renamed file would
// silently lose its place, and the suite its balance between the two forks.
it('names only test files that exist', () => {
  expect(SLOW_FILES.filter((f) => !existsSync(f))).toEqual([]);
});
