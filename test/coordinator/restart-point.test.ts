import { describe, expect, it } from 'vitest';
import type { Admission } from '../../src/coordinator/membership.js';
import { restartPoint } from '../../src/coordinator/restart-point.js';

// Where a restarted coordinator's run goes on, from what its workers kept (see restart-point.ts).

function admission(
  rank: number,
  kept?: { steps: number; fingerprint: string; reducedStep?: boolean },
): Admission {
  const held = kept && { reducedStep: false, ...kept };
  return {
    rank,
    workerId: `w${rank}`,
    sessionId: `s${rank}`,
    credential: 'c',
    peerAddress: `127.0.0.1:${7000 + rank}`,
    device: undefined,
    held,
    attached: true,
  };
}

describe('restartPoint', () => {
  it('is an ordinary resume (or a new run) when no worker kept state', () => {
    expect(restartPoint([admission(0), admission(1)], 10, 100)).toBeUndefined();
    expect(restartPoint([admission(0), admission(1)], undefined, 100)).toBeUndefined();
  });

  it('goes on from the state every worker kept alike, with or without a checkpoint', () => {
    const world = [0, 1].map((r) => admission(r, { steps: 17, fingerprint: 'f' }));
    expect(restartPoint(world, 10, 100)).toMatchObject({ held: true, step: 17, ranks: [0, 1] });
    expect(restartPoint(world, undefined, 100)).toMatchObject({
      held: true,
      step: 17,
      reason:
        'the coordinator restarted; all 2 workers kept the same state after step 17 (no checkpoint yet) and go on from it',
    });
  });

  it('loads the checkpoint when the kept states differ, and without one ends the run saying why', () => {
    const world = [
      admission(0, { steps: 17, fingerprint: 'f' }),
      admission(1, { steps: 18, fingerprint: 'g' }),
    ];
    expect(restartPoint(world, 10, 100)).toMatchObject({ held: false, step: 10 });
    expect(() => restartPoint(world, undefined, 100)).toThrow(
      "the coordinator restarted before the run's first checkpoint, and its workers cannot go on from the state they kept: " +
        'the workers hold different steps (rank 0 at step 17, rank 1 at step 18); ' +
        'start the run again (a lower --checkpoint-every bounds what such a restart can lose)',
    );
    const restarted = [admission(0, { steps: 17, fingerprint: 'f' }), admission(1)];
    expect(() => restartPoint(restarted, undefined, 100)).toThrow(/rank 1 kept no state/);
  });

  it('has the workers one step behind apply the step they reduced when another was told of its commit', () => {
    // The previous coordinator died between sending step 18's commit to rank 1 and to rank 0.
    const world = [
      admission(0, { steps: 17, fingerprint: 'f', reducedStep: true }),
      admission(1, { steps: 18, fingerprint: 'g' }),
    ];
    expect(restartPoint(world, 10, 100)).toEqual({
      held: true,
      step: 18,
      ranks: [0, 1],
      reason:
        'the coordinator restarted; all 2 workers kept the same state after step 18 (checkpoint: step 10) and go on from it; ' +
        'rank 0 applies step 18, whose commit the previous coordinator sent to the others only',
    });
    // Nobody was told: every worker discards the step it reduced, and the run goes on before it.
    const untold = [0, 1].map((r) =>
      admission(r, { steps: 17, fingerprint: 'f', reducedStep: true }),
    );
    expect(restartPoint(untold, 10, 100)).toMatchObject({ held: true, step: 17 });
    // One step behind without the reduced step (it never finished it): the checkpoint.
    const lost = [
      admission(0, { steps: 17, fingerprint: 'f' }),
      admission(1, { steps: 18, fingerprint: 'g' }),
    ];
    expect(restartPoint(lost, 10, 100)).toMatchObject({ held: false, step: 10 });
    // Two behind, or those at one step disagreeing: the checkpoint.
    const far = [
      admission(0, { steps: 16, fingerprint: 'f', reducedStep: true }),
      admission(1, { steps: 18, fingerprint: 'g' }),
    ];
    expect(restartPoint(far, 10, 100)).toMatchObject({ held: false, step: 10 });
    const split = [
      admission(0, { steps: 17, fingerprint: 'f', reducedStep: true }),
      admission(1, { steps: 17, fingerprint: 'h', reducedStep: true }),
      admission(2, { steps: 18, fingerprint: 'g' }),
    ];
    expect(restartPoint(split, 10, 100)).toMatchObject({
      held: false,
      reason: expect.stringMatching(/hold step 17 with different weights/),
    });
  });
});
