import { availableParallelism } from 'node:os';
import { UserError } from '../shared/errors.js';

/**
 * Local workers per core that `train --workers` accepts. A worker computes on one thread, and a
 * bulk-synchronous step waits for the slowest: past one worker per core they time-share, every
 * step slows down and each adds a full replica's memory. Two per core still lets a small
 * machine run a few more workers than cores (the 3-worker resume test on 2 cores, the
 * all-reduce's waiting overlapping another's compute); beyond that a run only gets slower and
 * heavier, up to the 1,000-worker start that loaded this machine to 283 and was killed.
 */
export const WORKERS_PER_CORE = 2;

/**
 * Refuses, before anything starts, more local workers than `cores` × WORKERS_PER_CORE unless
 * the user allows it explicitly.
 */
export function checkWorkerCount(
  workers: number,
  allowOversubscribe: boolean,
  cores: number = availableParallelism(),
): void {
  const limit = cores * WORKERS_PER_CORE;
  if (workers <= limit || allowOversubscribe) return;
  throw new UserError(
    `--workers ${workers}: this machine has ${cores} core${cores > 1 ? 's' : ''}, which carry at most ${limit} workers ` +
      `(${WORKERS_PER_CORE} per core); use fewer, or add --allow-oversubscribe`,
  );
}
