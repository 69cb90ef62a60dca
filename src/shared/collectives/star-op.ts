import { status } from '@grpc/grpc-js';
import { type Chunk, CollectiveOp, Phase } from '../../gen/tfjs_ddp/v1/collective.js';
import { describeChunk, describeOp, payloadMismatch } from '../transport/chunk-format.js';
import { ProtocolError } from '../transport/errors.js';

type Header = Pick<Chunk, 'op' | 'totalElements' | 'bucket' | 'rootRank' | 'encoding'>;

const KNOWN_OPS = new Set([
  CollectiveOp.COLLECTIVE_OP_ALL_REDUCE_SUM,
  CollectiveOp.COLLECTIVE_OP_BROADCAST,
  CollectiveOp.COLLECTIVE_OP_BARRIER,
]);

/** One operation at the reduction point, as its first chunk defined it. */
export class StarOp {
  readonly header: Header;
  readonly sequence: number;
  /** [offset, count] of every chunk index seen so far. */
  private readonly spans: [number, number][] = [];
  /** Next chunk index expected from each rank. */
  readonly next: number[];
  /** All-reduce: the payloads of each unfinished chunk, by rank. */
  readonly parts = new Map<number, Uint8Array[]>();
  doneElements = 0;
  doneChunks = 0;
  /** Broadcast: root chunks held until every other rank has joined. */
  held: Chunk[] = [];
  joined = 0;
  timer?: NodeJS.Timeout;

  constructor(
    first: Chunk,
    private readonly definedBy: number,
    worldSize: number,
  ) {
    const { op, totalElements, bucket, rootRank, encoding } = first;
    this.header = { op, totalElements, bucket, rootRank, encoding };
    this.sequence = first.sequence;
    this.next = new Array(worldSize).fill(0);
  }

  get name(): string {
    return describeOp({ ...this.header, sequence: this.sequence });
  }

  get done(): boolean {
    return this.doneChunks > 0 && this.doneElements === this.header.totalElements;
  }

  /**
   * Why `chunk` from `rank` does not fit this operation (another kind or length,
   * out of order, cut differently than the other ranks' chunks), or undefined.
   * Records the chunk's span when it is the first with its index.
   */
  mismatch(rank: number, chunk: Chunk): string | undefined {
    const differs = (Object.keys(this.header) as (keyof Header)[]).filter(
      (k) => this.header[k] !== chunk[k],
    );
    if (differs.length > 0) {
      return `rank ${rank} sent ${describeChunk(chunk)}, but rank ${this.definedBy} started ${this.name} (differs in ${differs.join(', ')})`;
    }
    if (chunk.chunkIndex !== this.next[rank]) {
      return `rank ${rank} sent chunk ${chunk.chunkIndex} of ${this.name} where chunk ${this.next[rank]} was due`;
    }
    if (chunk.op === CollectiveOp.COLLECTIVE_OP_BROADCAST && rank !== chunk.rootRank) {
      return chunk.chunkIndex === 0 && chunk.elementCount === 0
        ? undefined
        : `rank ${rank} is not the root of ${this.name} but sent data for it`;
    }
    const index = chunk.chunkIndex;
    const span = this.spans[index];
    const start = index === 0 ? 0 : this.spans[index - 1][0] + this.spans[index - 1][1];
    const fits = span
      ? span[0] === chunk.offset && span[1] === chunk.elementCount
      : chunk.offset === start;
    if (!fits) {
      return `rank ${rank}'s ${describeChunk(chunk)} does not line up with the other ranks' chunks (do all ranks use the same chunk size?)`;
    }
    if (!span) this.spans[index] = [chunk.offset, chunk.elementCount];
    return undefined;
  }
}

/** Why `chunk` cannot be a contribution of `rank` to `generation`, or undefined. */
export function contributionProblem(
  rank: number,
  chunk: Chunk,
  generation: number,
): ProtocolError | undefined {
  const bad = (message: string, code = status.INVALID_ARGUMENT) => new ProtocolError(message, code);
  if (chunk.generation !== generation) {
    return bad(
      `rank ${rank} sent a chunk of generation ${chunk.generation} to generation ${generation}`,
      status.FAILED_PRECONDITION,
    );
  }
  if (chunk.senderRank !== rank) {
    return bad(`rank ${rank} sent a chunk labelled as from rank ${chunk.senderRank}`);
  }
  if (chunk.phase !== Phase.PHASE_CONTRIBUTE) {
    return bad(
      `rank ${rank} sent ${describeChunk(chunk)}; the coordinator takes contributions only`,
    );
  }
  if (!KNOWN_OPS.has(chunk.op)) {
    return bad(`rank ${rank} sent a chunk of unknown operation ${chunk.op}`);
  }
  const payload = payloadMismatch(chunk, `rank ${rank}`);
  return payload ? bad(payload) : undefined;
}
