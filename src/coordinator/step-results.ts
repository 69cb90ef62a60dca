import type { StepMetrics } from '../gen/tfjs_ddp/v1/coordinator.js';
import { FROM_ANOTHER_RANK } from '../shared/training/train-step.js';
import { RunFailure } from './run-failure.js';

/** One step over all workers. */
export interface StepSummary {
  /** Samples trained on (the global batch). */
  count: number;
  /** Mean loss over the global batch (each worker's mean weighted by its share). */
  loss: number;
  correct: number;
  /** Why the step was skipped on every replica, or undefined when it was applied. */
  skipped: string | undefined;
}

/**
 * Combines the workers' StepMetrics (indexed by rank) of step `step` (0-based). Throws
 * RunFailure when they cannot belong together: samples other than the plan's `planned`, or
 * replicas that disagree on skipping the update (they would no longer be identical).
 */
export function summarizeStep(
  all: readonly StepMetrics[],
  step: number,
  planned: number,
): StepSummary {
  const count = all.reduce((n, m) => n + m.count, 0);
  if (count !== planned) {
    throw new RunFailure(
      `step ${step + 1}: the workers trained on ${count} samples, the plan had ${planned}`,
    );
  }
  const skipped = all.filter((m) => m.skipped);
  if (skipped.length > 0 && skipped.length < all.length) {
    const ranks = all.flatMap((m, rank) => (m.skipped ? [rank] : []));
    throw new RunFailure(
      `the replicas disagree on skipping step ${step + 1}: ranks ${ranks.join(', ')} skipped it, the others did not`,
    );
  }
  // The ranks that saw a non-finite value first-hand say more than those that received it.
  const firstHand = skipped.filter((m) => !m.skipReason.endsWith(`(${FROM_ANOTHER_RANK})`));
  return {
    count,
    loss: count > 0 ? all.reduce((s, m) => s + m.loss * m.count, 0) / count : 0,
    correct: all.reduce((n, m) => n + m.correct, 0),
    skipped:
      skipped.length > 0
        ? (firstHand.length > 0 ? firstHand : skipped).map((m) => m.skipReason).join('; ')
        : undefined,
  };
}
