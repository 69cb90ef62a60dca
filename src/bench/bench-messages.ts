import type { Compression } from '../shared/collectives/collective.js';
import type { CollectiveName } from '../shared/collectives/create-collective.js';

/** What the parent tells one rank of `bench allreduce` to do (over the IPC channel). */
export interface RankPlan {
  rank: number;
  worldSize: number;
  algo: CollectiveName;
  compression: Compression;
  chunkBytes: number;
  /** Deadline of every wait inside the collective. */
  timeoutMs: number;
  /** ring: every rank's PeerService, by rank. */
  peerAddresses?: string[];
  /** star: the parent's ReductionService. */
  reductionAddress?: string;
  /** Buffer sizes in bytes (float32), in order. */
  sizes: number[];
  /** Timed iterations per size, and untimed ones before them. */
  iters: number[];
  warmup: number[];
}

/** Messages from a rank to the parent. */
export type RankMessage =
  /** The rank's gRPC server is up (ring: its PeerService port; star: 0). */
  | { type: 'listening'; port: number }
  /**
   * Every timed iteration of one size, in order, each one verified: wall time and
   * the CPU time of the whole process (all its threads) during the all-reduce, in ms.
   */
  | { type: 'size'; bytes: number; timesMs: number[]; cpuMs: number[] }
  | { type: 'done' }
  | { type: 'failed'; message: string };

/** Messages from the parent to a rank. */
export type ParentMessage = { type: 'run'; plan: RankPlan };
