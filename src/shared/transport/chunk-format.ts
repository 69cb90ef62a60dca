import { type Chunk, CollectiveOp, Encoding, Phase } from '../../gen/tfjs_ddp/v1/collective.js';
import type { ChunkExpectation } from './transport.js';

/** Bytes per element on the wire; 0 for an encoding this build does not know. */
export function bytesPerElement(encoding: Encoding): number {
  switch (encoding) {
    case Encoding.ENCODING_FLOAT32_LE:
      return 4;
    case Encoding.ENCODING_BF16_LE:
    case Encoding.ENCODING_FP16_LE:
      return 2;
    default:
      return 0;
  }
}

const OP_NAMES: Record<number, string> = {
  [CollectiveOp.COLLECTIVE_OP_ALL_REDUCE_SUM]: 'all-reduce',
  [CollectiveOp.COLLECTIVE_OP_BROADCAST]: 'broadcast',
  [CollectiveOp.COLLECTIVE_OP_BARRIER]: 'barrier',
};

const PHASE_NAMES: Record<number, string> = {
  [Phase.PHASE_REDUCE_SCATTER]: 'reduce-scatter',
  [Phase.PHASE_ALL_GATHER]: 'all-gather',
  [Phase.PHASE_BROADCAST]: 'broadcast',
  [Phase.PHASE_CONTRIBUTE]: 'contribution',
  [Phase.PHASE_RESULT]: 'result',
};

const ENCODING_NAMES: Record<number, string> = {
  [Encoding.ENCODING_FLOAT32_LE]: 'float32',
  [Encoding.ENCODING_BF16_LE]: 'bf16',
  [Encoding.ENCODING_FP16_LE]: 'fp16',
};

type OpFields = Pick<ChunkExpectation, 'sequence' | 'op' | 'totalElements' | 'bucket' | 'rootRank'>;

/** "all-reduce #12 (bucket 2, 1000 elements)": names an operation in messages. */
export function describeOp(o: OpFields): string {
  const name = OP_NAMES[o.op] ?? `operation ${o.op}`;
  const root = o.op === CollectiveOp.COLLECTIVE_OP_BROADCAST ? `, root ${o.rootRank}` : '';
  return `${name} #${o.sequence} (bucket ${o.bucket}, ${o.totalElements} elements${root})`;
}

/** "reduce-scatter step 1, chunk 3 [0, 250) float32 of all-reduce #12 (...)". */
export function describeChunk(c: ChunkExpectation | Chunk): string {
  const phase = PHASE_NAMES[c.phase] ?? `phase ${c.phase}`;
  const encoding = ENCODING_NAMES[c.encoding] ?? `encoding ${c.encoding}`;
  const span = `[${c.offset}, ${c.offset + c.elementCount})`;
  return `${phase} step ${c.step}, chunk ${c.chunkIndex} ${span} ${encoding} of ${describeOp(c)}`;
}

const COMPARED = [
  'op',
  'totalElements',
  'bucket',
  'rootRank',
  'encoding',
  'phase',
  'step',
  'chunkIndex',
  'offset',
  'elementCount',
] as const;

/**
 * Why `chunk` (from `sender`) is not the chunk this rank expects, or undefined
 * when it is. Checks the header against `expected` and the payload's length
 * against the header.
 */
export function chunkMismatch(
  chunk: Chunk,
  expected: ChunkExpectation,
  sender: string,
  receiver: string,
): string | undefined {
  const differs = COMPARED.filter((k) => chunk[k] !== expected[k]);
  if (differs.length > 0) {
    return (
      `${sender} sent ${describeChunk(chunk)} but ${receiver} expected ${describeChunk(expected)}` +
      ` (differs in ${differs.join(', ')}; do all ranks call the same collectives` +
      ` in the same order with the same lengths?)`
    );
  }
  return payloadMismatch(chunk, sender);
}

/** Why the chunk's payload does not hold exactly element_count elements, or undefined. */
export function payloadMismatch(chunk: Chunk, sender: string): string | undefined {
  const width = bytesPerElement(chunk.encoding);
  if (width === 0) return `${sender} sent a chunk with unknown encoding ${chunk.encoding}`;
  if (chunk.payload.byteLength !== chunk.elementCount * width) {
    return (
      `${sender} sent ${describeChunk(chunk)} with ${chunk.payload.byteLength} payload bytes` +
      ` (expected ${chunk.elementCount * width})`
    );
  }
  if (chunk.offset + chunk.elementCount > chunk.totalElements) {
    return `${sender} sent ${describeChunk(chunk)}, which ends past the operation's length`;
  }
  return undefined;
}
