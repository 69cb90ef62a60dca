import type { Admission } from './membership.js';
import { RunFailure } from './run-failure.js';

/** Where a resumed run goes on: from the state its workers kept, or from its checkpoint. */
export interface RestartPoint {
  /** Whether the workers keep the state they hold (else they load the checkpoint). */
  held: boolean;
  /** Steps done before the first step the run trains now. */
  step: number;
  /** Why, in words: for the log and metrics.jsonl. */
  reason: string;
  /** The ranks of the world. */
  ranks: number[];
}

/**
 * A coordinator restarted on its run folder (--resume, or --resume auto before the first
 * checkpoint: `checkpointStep` undefined) decides where the run goes on. The workers that
 * lost the previous coordinator kept their replicas (see runWorker): when every one of them
 * holds the same committed step, at or after the checkpoint's and before the end, with the
 * same weights, that state is newer than the checkpoint and every replica already holds it.
 * The previous coordinator may have died while it sent a step's commits: then some workers
 * applied step K and the others hold its reduced gradient, uncommitted (`reducedStep`); as
 * one worker was told of the commit, every worker had reduced step K, so those apply it (the
 * first Membership, after K steps, does) and the run goes on after K. Otherwise (a worker
 * restarted, the replicas differ) every worker loads the checkpoint. Undefined when no
 * worker kept any state (an ordinary resume).
 */
export function restartPoint(
  world: readonly Admission[],
  checkpointStep: number | undefined,
  totalSteps: number,
): RestartPoint | undefined {
  // No worker kept state: an ordinary resume, or a new run.
  if (world.every((a) => a.held === undefined)) return undefined;
  const ranks = world.map((a) => a.rank);
  const atCheckpoint = (why: string): RestartPoint => {
    if (checkpointStep === undefined) {
      throw new RunFailure(
        `the coordinator restarted before the run's first checkpoint, and its workers cannot go on from the state they kept: ${why}; ` +
          'start the run again (a lower --checkpoint-every bounds what such a restart can lose)',
      );
    }
    return {
      ranks,
      held: false,
      step: checkpointStep,
      reason: `the coordinator restarted; every worker loads the checkpoint after step ${checkpointStep}: ${why}`,
    };
  };
  const without = world.filter((a) => a.held === undefined).map((a) => a.rank);
  if (without.length > 0) {
    return atCheckpoint(`rank${without.length > 1 ? 's' : ''} ${without.join(', ')} kept no state`);
  }
  const held = world.map((a) => a.held as NonNullable<Admission['held']>);
  const step = Math.max(...held.map((h) => h.steps));
  // Those one step behind apply the step they reduced, whose commit reached another worker.
  const behind = world.filter((_, i) => held[i].steps === step - 1 && held[i].reducedStep);
  if (held.some((h, i) => h.steps !== step && !behind.includes(world[i]))) {
    const list = world.map((a, i) => `rank ${a.rank} at step ${held[i].steps}`).join(', ');
    return atCheckpoint(`the workers hold different steps (${list})`);
  }
  const from = checkpointStep ?? 0;
  if (step < from || step >= totalSteps) {
    return atCheckpoint(`the workers hold step ${step}, outside ${from}..${totalSteps - 1}`);
  }
  // Trainable weights agree among those at the same step (those behind are compared with the
  // others once they applied it, as every replica's fingerprint is before the first step).
  for (const at of [step, step - 1]) {
    const fingerprints = held.filter((h) => h.steps === at).map((h) => h.fingerprint);
    if (new Set(fingerprints).size > 1) {
      return atCheckpoint(`the workers hold step ${at} with different weights`);
    }
  }
  const applying =
    behind.length === 0
      ? ''
      : `; rank${behind.length > 1 ? 's' : ''} ${behind.map((a) => a.rank).join(', ')} ` +
        `appl${behind.length > 1 ? 'y' : 'ies'} step ${step}, whose commit the previous coordinator sent to the others only`;
  return {
    ranks,
    held: true,
    step,
    reason: `the coordinator restarted; all ${world.length} workers kept the same state after step ${step} (${checkpointStep === undefined ? 'no checkpoint yet' : `checkpoint: step ${checkpointStep}`}) and go on from it${applying}`,
  };
}
