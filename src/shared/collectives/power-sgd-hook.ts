import { keyedRandom } from '../keyed-random.js';
import type { Collective } from './collective.js';
import type { CommHookContext, CommHookState } from './comm-hook.js';
import { orthonormalizeRows } from './power-sgd-math.js';
import { createPowerSgdKernels, type PowerSgdKernels } from './wasm-power-sgd.js';

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

/** Where each of `lengths` starts when they are laid back to back, then their total. */
function backToBack(lengths: readonly number[]): number[] {
  const starts = [0];
  for (const length of lengths) starts.push(starts[starts.length - 1] + length);
  return starts;
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
 * The products and the error feedback run in SIMD WebAssembly (power-sgd-wat.ts), with float32
 * sums in an order fixed by the shapes (PyTorch sums in float32 too); only the orthonormalisation,
 * on C×r values, stays in JavaScript (float64).
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
  /** Values of error feedback: one per gradient value (zero where sent whole). */
  private readonly errorLength: number;
  /**
   * The SIMD kernels, which also hold this rank's error feedback. Loaded when the hook is built
   * and awaited by every bucket: with no JavaScript fallback, no result depends on whether they
   * had loaded yet.
   */
  private readonly loading: Promise<PowerSgdKernels>;
  /** Error feedback from a checkpoint, written into the kernels' memory once they are there. */
  private imported: Float32Array | undefined;
  /** The previous bucket's run: the next starts after it. */
  private tail: Promise<void> = Promise.resolve();

  constructor(
    shapes: readonly (readonly number[])[],
    readonly rank: number,
  ) {
    this.plans = planParameters(shapes, rank);
    const last = this.plans.at(-1);
    this.errorLength = last ? last.offset + last.size : 0;
    this.q = new Float32Array(this.plans.reduce((n, p) => n + p.rows * p.rank, 0));
    this.initialQ();
    this.loading = createPowerSgdKernels(this.errorLength);
    // A failure is reported by the first bucket that awaits it, not as an unhandled rejection.
    this.loading.catch(() => undefined);
  }

  run(values: Float32Array, ctx: CommHookContext): Promise<void> {
    const mine = this.tail.catch(() => undefined).then(() => this.reduceBucket(values, ctx));
    this.tail = mine;
    return mine;
  }

  async exportState(collective: Collective): Promise<Record<string, Float32Array>> {
    const errorSum = (await this.kernels()).errors().slice();
    await collective.allReduceSum(errorSum);
    return { [ERROR_SUM_STATE]: errorSum, [Q_STATE]: this.q.slice() };
  }

  importState(saved: Readonly<Record<string, Float32Array>>, share: number): void {
    const errorSum = saved[ERROR_SUM_STATE];
    if (errorSum?.length === this.errorLength) {
      this.imported = Float32Array.from(errorSum, (e) => e * share);
    }
    // Another rank's Q has another length: a fresh start is all it can have.
    const q = saved[Q_STATE];
    if (q?.length === this.q.length) this.q = q.slice();
  }

  /** The kernels, with the imported error feedback (if any) in place. */
  private async kernels(): Promise<PowerSgdKernels> {
    const kernels = await this.loading;
    if (this.imported) {
      kernels.errors().set(this.imported);
      this.imported = undefined;
    }
    return kernels;
  }

  /**
   * The bucket is copied into the kernels' workspace once, followed by room for the Pᵀ and Q of
   * its compressed parameters; the products run there and the result is copied out once. Only
   * P and Q (small) travel between the workspace and the all-reduce buffers.
   */
  private async reduceBucket(values: Float32Array, ctx: CommHookContext): Promise<void> {
    const kernels = await this.kernels();
    const { collective, bucket } = ctx;
    const plans = this.plans.slice(bucket.firstParameter, bucket.endParameter);
    const compressed = plans.filter((p) => p.rank > 0);
    const whole = plans.filter((p) => p.rank === 0);
    // Workspace offsets: M at 0 (a parameter at its place in the bucket), then every Pᵀ, every Q.
    const at = (p: ParameterPlan) => p.offset - bucket.start;
    const pAt = backToBack(compressed.map((p) => p.cols * p.rank));
    const qAt = backToBack(compressed.map((p) => p.rows * p.rank));
    const pLength = pAt.pop() ?? 0;
    const qLength = qAt.pop() ?? 0;
    const pStart = values.length;
    const qStart = pStart + pLength;
    kernels.reserve(qStart + qLength);
    kernels.workspace(0, values.length).set(values);
    kernels.addErrors(0, bucket.start, values.length);
    const q = kernels.workspace(qStart, qLength);
    compressed.forEach((p, i) => {
      q.set(this.q.subarray(p.qOffset, p.qOffset + p.rows * p.rank), qAt[i]);
    });

    // First all-reduce: the parameters sent whole, then each compressed one's Pᵀ = (M·Q)ᵀ.
    const wholeLength = whole.reduce((n, p) => n + p.size, 0);
    const first = new Float32Array(wholeLength + pLength);
    let offset = 0;
    for (const p of whole) {
      first.set(kernels.workspace(at(p), p.size), offset);
      offset += p.size;
    }
    compressed.forEach((p, i) => {
      kernels.projectColumns(at(p), p.rows, p.cols, qStart + qAt[i], p.rank, pStart + pAt[i]);
    });
    first.set(kernels.workspace(pStart, pLength), wholeLength);
    await collective.allReduceSum(first, { bucket: bucket.index, onPeersReady: ctx.onPeersReady });

    // Second all-reduce: Q = Mᵀ·P for the orthonormalised sum P.
    const pSum = first.subarray(wholeLength);
    compressed.forEach((p, i) => {
      orthonormalizeRows(pSum.subarray(pAt[i], pAt[i] + p.cols * p.rank), p.rank, p.cols);
    });
    kernels.workspace(pStart, pLength).set(pSum);
    compressed.forEach((p, i) => {
      kernels.projectRows(at(p), p.rows, p.cols, pStart + pAt[i], p.rank, qStart + qAt[i]);
    });
    const second = kernels.workspace(qStart, qLength).slice();
    if (second.length > 0) await collective.allReduceSum(second, { bucket: bucket.index });

    // The bucket becomes the sums: whole, or Q·Pᵀ with the error feedback M − Q·Pᵀ/N.
    offset = 0;
    for (const p of whole) {
      kernels.workspace(at(p), p.size).set(first.subarray(offset, offset + p.size));
      kernels.errors(p.offset, p.size).fill(0);
      offset += p.size;
    }
    kernels.workspace(qStart, qLength).set(second);
    compressed.forEach((p, i) => {
      this.q.set(second.subarray(qAt[i], qAt[i] + p.rows * p.rank), p.qOffset);
      kernels.expandError(
        qStart + qAt[i],
        pStart + pAt[i],
        p.rows,
        p.cols,
        p.rank,
        at(p),
        p.offset,
        collective.worldSize,
      );
    });
    values.set(kernels.workspace(0, values.length));
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
