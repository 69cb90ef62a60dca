import { CollectiveOp, Encoding, Phase } from '../../gen/tfjs_ddp/v1/collective.js';
import type { ChunkExpectation } from '../transport/transport.js';
import { addPayload, copyPayload, encodePayload, sendPayload } from './payload-codec.js';
import { type OpContext, SequencedCollective } from './sequenced-collective.js';

/**
 * Ring all-reduce (Baidu / Horovod / NCCL style): the buffer is cut into N
 * segments; in N-1 reduce-scatter steps each rank adds the segment it receives
 * from the previous rank to its own and passes it on, so that each rank ends with
 * one complete sum; in N-1 all-gather steps the complete sums travel around the
 * ring. Each rank sends 2(N-1)/N of the buffer, whatever N is. Segments are cut
 * into chunks and pipelined: chunk c of a step leaves as soon as chunk c of the
 * previous step has arrived, so the steps overlap.
 *
 * With bf16 or fp16 compression every hop carries 16-bit values and every addition
 * is done in float32; the rank that completes a sum keeps what it sends (the sum
 * rounded to 16 bits), so all ranks end with bit-identical values.
 *
 * The first chunk of the last reduce-scatter step (n-2) carries a sum started by rank
 * rank-(n-1) and passed on by every rank between: its arrival proves that every other rank
 * has entered the operation (ctx.peersReady), without a barrier's extra ring of hops.
 */
export class RingCollective extends SequencedCollective {
  protected async reduce(ctx: OpContext, data: Float32Array, barrier: boolean): Promise<void> {
    const n = this.worldSize;
    const total = data.length;
    const op = barrier
      ? CollectiveOp.COLLECTIVE_OP_BARRIER
      : CollectiveOp.COLLECTIVE_OP_ALL_REDUCE_SUM;
    const segStart = (s: number) => Math.floor((s * total) / n);
    const segLength = (s: number) => segStart(s + 1) - segStart(s);
    const mod = (x: number) => ((x % n) + n) % n;
    // Step t (0 ≤ t < 2(n-1)) sends segment rank-t and receives segment rank-t-1;
    // the first n-1 steps reduce, the others gather.
    const sendSeg = (t: number) => mod(this.rank - t);
    const recvSeg = (t: number) => mod(this.rank - t - 1);
    const steps = 2 * (n - 1);
    const phaseOf = (t: number): [Phase, number] =>
      t < n - 1 ? [Phase.PHASE_REDUCE_SCATTER, t] : [Phase.PHASE_ALL_GATHER, t - (n - 1)];

    // received.count = receives completed so far, in (step, chunk) order;
    // doneBefore[t] = receives in the steps before t.
    const received = new Progress();
    const doneBefore = [0];
    for (let t = 0; t < steps; t++) {
      doneBefore.push(doneBefore[t] + this.chunkCount(segLength(recvSeg(t))));
    }
    const expectation = (t: number, c: number, seg: number): ChunkExpectation => {
      const [offset, elementCount] = this.chunkSpan(segStart(seg), segLength(seg), c);
      const [phase, step] = phaseOf(t);
      return {
        sequence: ctx.sequence,
        op,
        phase,
        step,
        chunkIndex: c,
        totalElements: total,
        offset,
        elementCount,
        encoding: ctx.encoding,
        bucket: ctx.bucket,
        rootRank: 0,
      };
    };

    const sendAll = async () => {
      for (let t = 0; t < steps; t++) {
        const seg = sendSeg(t);
        for (let c = 0; c < this.chunkCount(segLength(seg)); c++) {
          // The segment sent now is the one received in the previous step.
          if (t > 0) await received.reach(doneBefore[t - 1] + c + 1);
          const e = expectation(t, c, seg);
          const values = data.subarray(e.offset, e.offset + e.elementCount);
          const rounds = t === n - 1 && ctx.encoding !== Encoding.ENCODING_FLOAT32_LE;
          const payload = rounds
            ? encodePayload(values, ctx.encoding)
            : sendPayload(values, ctx.encoding);
          if (rounds) copyPayload(values, payload, ctx.encoding);
          await this.transport.send(this.chunk(e, payload), ctx.timeoutMs);
        }
      }
    };
    const receiveAll = async () => {
      for (let t = 0; t < steps; t++) {
        const seg = recvSeg(t);
        for (let c = 0; c < this.chunkCount(segLength(seg)); c++) {
          const e = expectation(t, c, seg);
          const chunk = await this.transport.receive(e, ctx.timeoutMs);
          if (t === n - 2 && c === 0) ctx.peersReady?.();
          const values = data.subarray(e.offset, e.offset + e.elementCount);
          if (t < n - 1) addPayload(values, chunk.payload, ctx.encoding);
          else copyPayload(values, chunk.payload, ctx.encoding);
          received.advance();
        }
      }
    };
    await settleBoth(sendAll(), receiveAll(), received);
  }

  protected async spread(ctx: OpContext, data: Float32Array, root: number): Promise<void> {
    const next = (this.rank + 1) % this.worldSize;
    const chunks = this.chunkCount(data.length);
    for (let c = 0; c < chunks; c++) {
      const [offset, elementCount] = this.chunkSpan(0, data.length, c);
      const e: ChunkExpectation = {
        sequence: ctx.sequence,
        op: CollectiveOp.COLLECTIVE_OP_BROADCAST,
        phase: Phase.PHASE_BROADCAST,
        step: 0,
        chunkIndex: c,
        totalElements: data.length,
        offset,
        elementCount,
        encoding: Encoding.ENCODING_FLOAT32_LE,
        bucket: ctx.bucket,
        rootRank: root,
      };
      const values = data.subarray(offset, offset + elementCount);
      let payload: Uint8Array;
      if (this.rank === root) {
        payload = sendPayload(values, e.encoding);
      } else {
        payload = (await this.transport.receive(e, ctx.timeoutMs)).payload;
        copyPayload(values, payload, e.encoding);
      }
      if (next !== root) {
        await this.transport.send(this.chunk(e, payload), ctx.timeoutMs);
      }
    }
  }
}

/** A counter that tasks can wait on; fail() releases every waiter with the error. */
class Progress {
  count = 0;
  private waiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private failure: Error | undefined;

  reach(target: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.count >= target) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ target, resolve, reject }));
  }

  advance(): void {
    this.count += 1;
    const ready = this.waiters.filter((w) => w.target <= this.count);
    this.waiters = this.waiters.filter((w) => w.target > this.count);
    for (const w of ready) w.resolve();
  }

  fail(error: Error): void {
    this.failure ??= error;
    for (const w of this.waiters) w.reject(error);
    this.waiters = [];
  }
}

/** Waits for both loops; when one fails, the other is released (not left hanging) and the first error wins. */
async function settleBoth(send: Promise<void>, receive: Promise<void>, progress: Progress) {
  await Promise.all([
    send,
    receive.catch((error: Error) => {
      progress.fail(error);
      throw error;
    }),
  ]);
}
