import { describe, expect, it } from 'vitest';
import { checkWorkerCount, WORKERS_PER_CORE } from '../../src/coordinator/worker-capacity.js';

describe('checkWorkerCount', () => {
  it('accepts up to WORKERS_PER_CORE workers per core', () => {
    expect(() => checkWorkerCount(2 * WORKERS_PER_CORE, false, 2)).not.toThrow();
  });

  it('refuses more, naming the limit and the way out', () => {
    expect(() => checkWorkerCount(2 * WORKERS_PER_CORE + 1, false, 2)).toThrow(
      `this machine has 2 cores, which carry at most ${2 * WORKERS_PER_CORE} workers`,
    );
    expect(() => checkWorkerCount(2 * WORKERS_PER_CORE + 1, false, 2)).toThrow(
      '--allow-oversubscribe',
    );
  });

  it('accepts any number with --allow-oversubscribe', () => {
    expect(() => checkWorkerCount(1000, true, 2)).not.toThrow();
  });
});
