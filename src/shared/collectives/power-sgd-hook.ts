import { keyedRandom } from '../keyed-random.js';
import type { Collective } from './collective.js';
import type { CommHookContext, CommHookState } from './comm-hook.js';
import { expand, orthonormalizeColumns, projectColumns, projectRows } from './power-sgd-math.js';

/** PyTorch's `min_compression_rate`: a matrix is compressed when that saves over half its bytes. */
const MIN_COMPRESSION_RATE = 2;
/** Keys of the initial Q (PyTorch seeds it with 0 on every rank): the same on every rank. */
const Q_SEED = 0x9057_0d;

/** Names of the state in a checkpoint (CommHookState). */
export const ERROR_SUM_STATE = 'powersgd/error-sum';
export const Q_STATE = 'powersgd/q';

/** How one parameter travels: as rank-r factors (rows × cols of power-sgd-math.ts), or whole. */
interface ParameterPlan {
  /** Element offset in the flat gradient. */
  offset: number;
  size: number;
  rows: number;
  cols: number;
  /** 0: sent uncompressed. */
  rank: number;
  /** Where its Q starts in the warm-start buffer. */
  qOffset: number;
}

/** How PowerSGD of `rank` sends each parameter of `shapes` (the order of the flat gradient). */
function planParameters(shapes: readonly (readonly number[])[], rank: number): ParameterPlan[] {
  let offset = 0;
  let qOffset = 0;
  return shapes.map((shape) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const cols = shape.length >= 2 ? shape[shape.length - 1] : size;
    const rows = size / cols;
    const r = Math.min(rank, rows, cols);
    const compress = shape.length >= 2 && (rows + cols) * r * MIN_COMPRESSION_RATE < size;
    const plan = { offset, size, rows, cols, rank: compress ? r : 0, qOffset };
    if (compress) qOffset += rows * r;
    offset += size;
    return plan;
  });
}

/** Values PowerSGD of `rank` all-reduces per step for `shapes` (P and Q, and what goes whole). */
export function powerSgdSentElements(shapes: readonly (readonly number[])[], rank: number): number {
  return planParameters(shapes, rank).reduce(
    (n, p) => n + (p.rank ? (p.rows + p.cols) * p.rank : p.size),
    0,
  );
}

/**
 * PowerSGD (Vogels et al., NeurIPS 2019) as PyTorch's `powerSGD_hook` does it, per bucket: the
 * bucket plus this rank's error feedback is M; each matrix-shaped gradient that compression
 * shrinks by more than MIN_COMPRESSION_RATE goes as P = M·Q (Q from the previous step: warm
 * start), all-reduced together with the bucket's other parameters, which go whole, in ONE
 * all-reduce; P is orthonormalised (on the summed P, so identically on every rank); Q = Mᵀ·P is
 * the second all-reduce; the bucket becomes P·Qᵀ, the rank-r approximation of the sum, the same
 * bits on every rank. The error feedback keeps what the approximation lost: M − P·Qᵀ/N on each
 * rank, so that it sums to the total loss over the ranks. Vectors (biases, BatchNorm) and small
 * matrices have no error: they are sent exactly.
 *
 * P and Q are linear in M, so the result depends only on the SUM of the ranks' M and errors:
 * the checkpoint stores the errors' sum (one more all-reduce) and a resumed run, with any number
 * of ranks, gives each rank sum/N.
 *
 * Unlike PyTorch (which defaults to 1000 uncompressed steps first), compression starts at the
 * first step. Buckets run one after the other, in order: each runs two operations, and several
 * buckets in flight would start them in an order that depends on timing, which the collective's
 * sequencing forbids.
 */
export class PowerSgdHook implements CommHookState {
  private readonly plans: ParameterPlan[];
  /** Every compressed parameter's Q (R×r), back to back: the same on every rank. */
  private q: Float32Array;
  /** This rank's error feedback over the whole flat gradient (zero where sent whole). */
  private error: Float32Array;
  /** The previous bucket's run: the next starts after it. */
  private tail: Promise<void> = Promise.resolve();

  constructor(
    shapes: readonly (readonly number[])[],
    readonly rank: number,
  ) {
    this.plans = planParameters(shapes, rank);
    const last = this.plans.at(-1);
    this.error = new Float32Array(last ? last.offset + last.size : 0);
    this.q = new Float32Array(this.plans.reduce((n, p) => n + p.rows * p.rank, 0));
    this.initialQ();
  }

  run(values: Float32Array, ctx: CommHookContext): Promise<void> {
    const mine = this.tail.catch(() => undefined).then(() => this.reduceBucket(values, ctx));
    this.tail = mine;
    return mine;
  }

  async exportState(collective: Collective): Promise<Record<string, Float32Array>> {
    const errorSum = this.error.slice();
    await collective.allReduceSum(errorSum);
    return { [ERROR_SUM_STATE]: errorSum, [Q_STATE]: this.q.slice() };
  }

  importState(saved: Readonly<Record<string, Float32Array>>, share: number): void {
    const errorSum = saved[ERROR_SUM_STATE];
    if (errorSum?.length === this.error.length) {
      this.error = Float32Array.from(errorSum, (e) => e * share);
    }
    // Another rank's Q has another length: a fresh start is all it can have.
    const q = saved[Q_STATE];
    if (q?.length === this.q.length) this.q = q.slice();
  }

  private async reduceBucket(values: Float32Array, ctx: CommHookContext): Promise<void> {
    const { collective, bucket } = ctx;
    const plans = this.plans.slice(bucket.firstParameter, bucket.endParameter);
    const errors = this.error.subarray(bucket.start, bucket.end);
    for (let i = 0; i < values.length; i++) values[i] += errors[i];
    const at = (p: ParameterPlan) =>
      values.subarray(p.offset - bucket.start, p.offset - bucket.start + p.size);
    const compressed = plans.filter((p) => p.rank > 0);
    const whole = plans.filter((p) => p.rank === 0);

    // First all-reduce: the parameters sent whole, then each compressed one's P = M·Q.
    const first = new Float32Array(
      whole.reduce((n, p) => n + p.size, 0) + compressed.reduce((n, p) => n + p.cols * p.rank, 0),
    );
    let offset = 0;
    for (const p of whole) {
      first.set(at(p), offset);
      offset += p.size;
    }
    const pOffsets = compressed.map((p) => {
      const start = offset;
      const q = this.q.subarray(p.qOffset, p.qOffset + p.rows * p.rank);
      projectColumns(
        at(p),
        p.rows,
        p.cols,
        q,
        p.rank,
        first.subarray(start, start + p.cols * p.rank),
      );
      offset += p.cols * p.rank;
      return start;
    });
    await collective.allReduceSum(first, { bucket: bucket.index, onPeersReady: ctx.onPeersReady });

    // Second all-reduce: Q = Mᵀ·P for the orthonormalised sum P.
    const second = new Float32Array(compressed.reduce((n, p) => n + p.rows * p.rank, 0));
    let qAt = 0;
    compressed.forEach((p, i) => {
      const pSum = first.subarray(pOffsets[i], pOffsets[i] + p.cols * p.rank);
      orthonormalizeColumns(pSum, p.cols, p.rank);
      projectRows(at(p), p.rows, p.cols, pSum, p.rank, second.subarray(qAt, qAt + p.rows * p.rank));
      qAt += p.rows * p.rank;
    });
    if (second.length > 0) await collective.allReduceSum(second, { bucket: bucket.index });

    offset = 0;
    for (const p of whole) {
      at(p).set(first.subarray(offset, offset + p.size));
      errors.subarray(p.offset - bucket.start, p.offset - bucket.start + p.size).fill(0);
      offset += p.size;
    }
    qAt = 0;
    const n = collective.worldSize;
    compressed.forEach((p, i) => {
      const qSum = second.subarray(qAt, qAt + p.rows * p.rank);
      this.q.set(qSum, p.qOffset);
      qAt += p.rows * p.rank;
      const m = at(p);
      const error = errors.subarray(p.offset - bucket.start, p.offset - bucket.start + p.size);
      error.set(m);
      const pSum = first.subarray(pOffsets[i], pOffsets[i] + p.cols * p.rank);
      expand(qSum, pSum, p.rows, p.cols, p.rank, m);
      for (let k = 0; k < error.length; k++) error[k] -= m[k] / n;
    });
  }

  /** Standard normal values (Box-Muller) from a generator with fixed keys: the same Q everywhere. */
  private initialQ(): void {
    const random = keyedRandom(Q_SEED);
    for (let i = 0; i < this.q.length; i++) {
      const u = 1 - random();
      this.q[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
    }
  }
}
