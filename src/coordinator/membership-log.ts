import { log } from '../shared/logging/logger.js';
import type { MetricsWriter } from '../shared/training/metrics-writer.js';
import type { MembershipRecord } from './membership-change.js';
import { nowMs } from './observe/run-events.js';
import type { RunObservers } from './observe/run-observers.js';

/**
 * Tells everyone of a membership change: one log line (what `train` prints), a line in
 * metrics.jsonl (step, ranks, cause), and a run event (the dashboard, /metrics, the trace).
 */
export function membershipChanged(
  to: { metrics: MetricsWriter; observers: RunObservers },
  r: MembershipRecord,
): void {
  const ranks = (list: number[]) => list.join(', ');
  log().warn(
    { generation: r.generation, workers: r.worldSize, step: r.step, seconds: r.seconds },
    `membership: ${r.cause}; ${r.worldSize} worker${r.worldSize > 1 ? 's' : ''} (rank${r.ranks.length > 1 ? 's' : ''} ${ranks(r.ranks)}) go on from step ${r.step + 1} in generation ${r.generation}, ${r.seconds.toFixed(1)} s after the change`,
  );
  to.metrics.write({
    type: 'membership',
    step: r.step,
    generation: r.generation,
    workers: r.worldSize,
    ranks: r.ranks,
    lost: r.lost,
    left: r.left,
    joined: r.joined,
    cause: r.cause,
    seconds: Math.round(r.seconds * 1000) / 1000,
    time: new Date().toISOString(),
  });
  to.observers.events.emit({
    type: 'membership',
    time: nowMs(),
    generation: r.generation,
    worldSize: r.worldSize,
    step: r.step,
    reason: r.cause,
  });
}
