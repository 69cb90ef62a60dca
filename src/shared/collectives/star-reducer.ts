import { status } from '@grpc/grpc-js';
import { type Chunk, CollectiveOp, Phase } from '../../gen/tfjs_ddp/v1/collective.js';
import { describeOp } from '../transport/chunk-format.js';
import {
  DeadlineExceededError,
  PeerAbortedError,
  PeerLostError,
  ProtocolError,
  type TransportError,
} from '../transport/errors.js';
import { addPayload, decodePayload, sendPayload } from './payload-codec.js';
import { contributionProblem, StarOp } from './star-op.js';

/** How the reducer reaches one worker (a gRPC stream, or an in-memory pipe in tests). */
export interface StarEndpoint {
  /**
   * Sends a chunk to the worker, in order, waiting for backpressure within its
   * deadline. The same chunk goes to every endpoint: each encodes its payload
   * before returning or only reads it.
   */
  send(chunk: Chunk): Promise<void>;
  /** Ends the worker's stream with `error` (its `code` as the status) after telling it why. */
  abort(error: TransportError): void;
}

/**
 * The reduction point of the star all-reduce for one generation: adds the chunks
 * of all ranks (in rank order, in float32, so the result does not depend on
 * arrival order) and sends each complete chunk of the sum to every rank; for a
 * broadcast, forwards the root's chunks. Operations are matched by sequence and
 * must agree in kind, length and chunking; anything else, or a rank that stalls
 * for `timeoutMs`, stops the generation: the offending rank's stream ends with
 * the error's status, the others' with ABORTED and a message naming that rank.
 */
export class StarReducer {
  private readonly endpoints = new Map<number, StarEndpoint>();
  private readonly ops = new Map<number, StarOp>();
  private readonly left: number[] = [];
  private readonly connected = new Set<number>();
  private readonly connectDeadline: number;
  private failure: TransportError | undefined;

  /**
   * @param timeoutMs how long an operation waits for a rank's next chunk
   * @param connectTimeoutMs how long, from now, an operation waits for a rank
   *   that has not connected yet (workers may still be starting)
   */
  constructor(
    readonly generation: number,
    readonly worldSize: number,
    private readonly timeoutMs: number,
    connectTimeoutMs = timeoutMs,
  ) {
    this.connectDeadline = Date.now() + connectTimeoutMs;
  }

  /** Registers rank's stream. Throws ProtocolError for an unknown or duplicate rank. */
  attach(rank: number, endpoint: StarEndpoint): void {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new ProtocolError(
        `rank ${rank} is not a rank of generation ${this.generation} (world size ${this.worldSize})`,
        status.INVALID_ARGUMENT,
      );
    }
    if (this.endpoints.has(rank)) {
      throw new ProtocolError(
        `rank ${rank} already has a stream to the coordinator in generation ${this.generation}`,
        status.ALREADY_EXISTS,
      );
    }
    if (this.failure) throw this.failure;
    this.endpoints.set(rank, endpoint);
    this.connected.add(rank);
  }

  /**
   * rank's stream ended (`error` undefined: in good order). A rank that leaves
   * during an operation stops the generation at once; one that leaves between
   * operations stops it when the next operation starts (a killed worker's stream
   * may look like a clean end before it looks cancelled).
   */
  detach(rank: number, error?: Error): void {
    if (!this.endpoints.delete(rank) || this.failure) return;
    if (error) {
      this.fail(
        new PeerLostError(`rank ${rank}'s stream to the coordinator failed: ${error.message}`),
        rank,
      );
    } else if (this.ops.size > 0) {
      const op = this.ops.values().next().value as StarOp;
      this.fail(
        new PeerLostError(`rank ${rank} left generation ${this.generation} during ${op.name}`),
        rank,
      );
    } else {
      this.left.push(rank);
    }
  }

  /** Stops the generation with `error`; `culprit`'s stream gets the error's own status. */
  fail(error: TransportError, culprit?: number): void {
    if (this.failure) return;
    this.failure = error;
    for (const op of this.ops.values()) clearTimeout(op.timer);
    this.ops.clear();
    for (const [rank, endpoint] of this.endpoints) {
      endpoint.abort(
        rank === culprit
          ? error
          : new PeerAbortedError(
              `the coordinator stopped generation ${this.generation}: ${error.message}`,
            ),
      );
    }
    this.endpoints.clear();
  }

  /** A chunk from rank's stream. A chunk that breaks the protocol stops the generation. */
  contribute(rank: number, chunk: Chunk): void {
    if (this.failure) return;
    if (this.left.length > 0) {
      const gone = this.left.join(', ');
      this.fail(
        new PeerLostError(
          `rank ${gone} left generation ${this.generation} before ${describeOp(chunk)}`,
        ),
      );
      return;
    }
    const problem = contributionProblem(rank, chunk, this.generation);
    if (problem) {
      this.fail(problem, rank);
      return;
    }
    const op = this.opFor(rank, chunk);
    if (!op) return;
    clearTimeout(op.timer);
    op.timer = this.deadline(op);
    op.next[rank] += 1;
    if (chunk.op === CollectiveOp.COLLECTIVE_OP_BROADCAST) this.forward(op, rank, chunk);
    else this.add(op, rank, chunk);
  }

  /** The operation's state, created by its first chunk; undefined after it failed the generation. */
  private opFor(rank: number, chunk: Chunk): StarOp | undefined {
    let op = this.ops.get(chunk.sequence);
    if (!op) {
      op = new StarOp(chunk, rank, this.worldSize);
      this.ops.set(chunk.sequence, op);
    }
    const mismatch = op.mismatch(rank, chunk);
    if (!mismatch) return op;
    this.fail(new ProtocolError(mismatch, status.INVALID_ARGUMENT), rank);
    return undefined;
  }

  private add(op: StarOp, rank: number, chunk: Chunk): void {
    const index = chunk.chunkIndex;
    const parts = op.parts.get(index) ?? [];
    op.parts.set(index, parts);
    // No copy: the payload is this chunk's own (a frame grpc-js allocated for it,
    // or the in-memory transport's copy), and nothing else reads it.
    parts[rank] = chunk.payload;
    if (Object.keys(parts).length < this.worldSize) return;
    op.parts.delete(index);
    // Rank 0's part as float32 (a view of its frame, or decoded), the others added in rank order.
    const sum = decodePayload(parts[0], chunk.encoding);
    for (let r = 1; r < this.worldSize; r++) addPayload(sum, parts[r], chunk.encoding);
    // A view: the endpoints encode or only read it, and `sum` is not touched again.
    const payload = sendPayload(sum, chunk.encoding);
    this.sendToAll({ ...chunk, phase: Phase.PHASE_RESULT, senderRank: 0, payload }, -1);
    op.doneElements += chunk.elementCount;
    op.doneChunks += 1;
    if (op.done) this.finish(op);
  }

  private forward(op: StarOp, rank: number, chunk: Chunk): void {
    const root = op.header.rootRank;
    if (rank !== root) op.joined += 1;
    else op.held.push({ ...chunk, phase: Phase.PHASE_RESULT, senderRank: root });
    if (op.joined < this.worldSize - 1) return;
    for (const held of op.held) {
      this.sendToAll(held, root);
      op.doneElements += held.elementCount;
      op.doneChunks += 1;
    }
    op.held = [];
    if (op.done) this.finish(op);
  }

  private sendToAll(chunk: Chunk, except: number): void {
    for (const [rank, endpoint] of this.endpoints) {
      if (rank === except) continue;
      endpoint.send(chunk).catch((error: TransportError) => this.fail(error, rank));
    }
  }

  private finish(op: StarOp): void {
    clearTimeout(op.timer);
    this.ops.delete(op.sequence);
  }

  private deadline(op: StarOp, ms = this.timeoutMs): NodeJS.Timeout {
    return setTimeout(() => {
      const behind = this.laggards(op);
      const ranks = `rank${behind.length > 1 ? 's' : ''} ${behind.join(', ')}`;
      const what = op.name;
      const starting = behind.some((rank) => !this.connected.has(rank));
      const connectLeft = this.connectDeadline - Date.now();
      if (starting && connectLeft > 0) {
        op.timer = this.deadline(op, connectLeft);
        return;
      }
      const message = starting
        ? `${ranks} did not connect to the coordinator in time for ${what}`
        : `the coordinator waited ${this.timeoutMs} ms for ${ranks} to send their part of ${what}`;
      this.fail(new DeadlineExceededError(message), behind.length === 1 ? behind[0] : undefined);
    }, ms);
  }

  /** The ranks an operation waits for: those that sent the fewest chunks (in a broadcast that all joined, the root). */
  private laggards(op: StarOp): number[] {
    const { op: kind, rootRank } = op.header;
    if (kind === CollectiveOp.COLLECTIVE_OP_BROADCAST && op.joined === this.worldSize - 1) {
      return [rootRank];
    }
    const least = Math.min(...op.next);
    return op.next.flatMap((n, rank) => (n === least ? [rank] : []));
  }
}
