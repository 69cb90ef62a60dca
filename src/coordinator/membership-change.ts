import { RunFailure } from './run-failure.js';

/** How far membership may change (the schema's --min-workers, --max-workers, ...). */
export interface ElasticLimits {
  /** Below this many workers the run pauses for joins, then checkpoints and ends. */
  minWorkers: number;
  /** Workers beyond this many are refused at Join. */
  maxWorkers: number;
  /** Membership changes caused by a loss (not joins, not announced leaves) before the run ends. */
  maxRestarts: number;
  /** How long a run below --min-workers waits for workers to join. */
  rejoinTimeoutMs: number;
}

/**
 * The current membership generation ended (a worker lost, stalled or its collective failed):
 * every wait of the generation rejects with this, and the training loop re-forms the world and
 * plans the steps that were not committed again. It is a RunFailure so that, should it ever
 * escape the loop, it still ends the run with its cause.
 */
export class MembershipChange extends RunFailure {
  constructor(
    /** What happened, in one line naming the rank. */
    readonly why: string,
    /** The admission ranks that were lost (empty: the generation failed, everyone is still there). */
    readonly lostRanks: number[],
  ) {
    super(why);
  }
}

/** The run fell below --min-workers and nobody joined within --rejoin-timeout. */
export class BelowMinimum extends RunFailure {
  constructor(
    message: string,
    /** Whether the survivors form a generation, so that their state can be checkpointed. */
    readonly survivorsFormed: boolean,
  ) {
    super(message);
  }
}

/** One change of membership, as it is logged, written to metrics.jsonl and emitted. */
export interface MembershipRecord {
  generation: number;
  /** Workers in the new generation. */
  worldSize: number;
  /** The new generation starts with this step (0-based): the steps before it are committed. */
  step: number;
  /** Why: "rank 1 (host, pid 7) disconnected (...)", "rank 3 joined", ... */
  cause: string;
  lost: number[];
  left: number[];
  joined: number[];
  /** Admission ranks of the new generation, in collective order. */
  ranks: number[];
  /** How long the change took, from its detection to the new generation's first step. */
  seconds: number;
}
