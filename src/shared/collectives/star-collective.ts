import { CollectiveOp, Encoding, Phase } from '../../gen/tfjs_ddp/v1/collective.js';
import type { ChunkExpectation } from '../transport/transport.js';
import { copyPayload, sendPayload } from './payload-codec.js';
import { type OpContext, SequencedCollective } from './sequenced-collective.js';

/**
 * The worker side of the star all-reduce: every rank streams its chunks to the
 * reduction point (StarReducer in the coordinator), which adds them in rank order
 * and streams the sum back, chunk by chunk, so sending and receiving overlap.
 * Each rank sends S bytes and receives S bytes; the reduction point moves N·S
 * each way, which is what limits this mode. The first chunk of the sum to come back proves
 * that every rank has contributed (ctx.peersReady).
 */
export class StarCollective extends SequencedCollective {
  protected async reduce(ctx: OpContext, data: Float32Array, barrier: boolean): Promise<void> {
    const op = barrier
      ? CollectiveOp.COLLECTIVE_OP_BARRIER
      : CollectiveOp.COLLECTIVE_OP_ALL_REDUCE_SUM;
    const chunks = this.chunkCount(data.length);
    const sendAll = async () => {
      for (let c = 0; c < chunks; c++) {
        const e = this.expectation(ctx, op, Phase.PHASE_CONTRIBUTE, c, data.length, 0);
        const payload = sendPayload(data.subarray(e.offset, e.offset + e.elementCount), e.encoding);
        await this.transport.send(this.chunk(e, payload), ctx.timeoutMs);
      }
    };
    const receiveAll = async () => {
      for (let c = 0; c < chunks; c++) {
        const e = this.expectation(ctx, op, Phase.PHASE_RESULT, c, data.length, 0);
        const chunk = await this.transport.receive(e, ctx.timeoutMs);
        if (c === 0) ctx.peersReady?.();
        copyPayload(data.subarray(e.offset, e.offset + e.elementCount), chunk.payload, e.encoding);
      }
    };
    await Promise.all([sendAll(), receiveAll()]);
  }

  protected async spread(ctx: OpContext, data: Float32Array, root: number): Promise<void> {
    const op = CollectiveOp.COLLECTIVE_OP_BROADCAST;
    const send = (e: ChunkExpectation, payload: Uint8Array) =>
      this.transport.send(this.chunk(e, payload), ctx.timeoutMs);
    const fp32 = { ...ctx, encoding: Encoding.ENCODING_FLOAT32_LE };
    if (this.rank === root) {
      for (let c = 0; c < this.chunkCount(data.length); c++) {
        const e = this.expectation(fp32, op, Phase.PHASE_CONTRIBUTE, c, data.length, root);
        await send(e, sendPayload(data.subarray(e.offset, e.offset + e.elementCount), e.encoding));
      }
      return;
    }
    // The other ranks say that they take part (and agree on the length) with one empty chunk.
    const marker = this.expectation(fp32, op, Phase.PHASE_CONTRIBUTE, 0, data.length, root);
    await send({ ...marker, offset: 0, elementCount: 0 }, new Uint8Array(0));
    for (let c = 0; c < this.chunkCount(data.length); c++) {
      const e = this.expectation(fp32, op, Phase.PHASE_RESULT, c, data.length, root);
      const chunk = await this.transport.receive(e, ctx.timeoutMs);
      copyPayload(data.subarray(e.offset, e.offset + e.elementCount), chunk.payload, e.encoding);
    }
  }

  private expectation(
    ctx: OpContext,
    op: CollectiveOp,
    phase: Phase,
    chunkIndex: number,
    total: number,
    rootRank: number,
  ): ChunkExpectation {
    const [offset, elementCount] = this.chunkSpan(0, total, chunkIndex);
    return {
      sequence: ctx.sequence,
      op,
      phase,
      step: 0,
      chunkIndex,
      totalElements: total,
      offset,
      elementCount,
      encoding: ctx.encoding,
      bucket: ctx.bucket,
      rootRank,
    };
  }
}
