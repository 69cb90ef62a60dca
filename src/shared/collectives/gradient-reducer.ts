import { performance } from 'node:perf_hooks';
import { UserError } from '../errors.js';
import { type Bucket, planBuckets } from './bucket-plan.js';
import type { Collective } from './collective.js';
import type { CommHook } from './comm-hook.js';
import { allReduceHook } from './comm-hooks.js';

export interface GradientReducerOptions {
  /** Elements of every trainable weight, in the order of the flat gradient. */
  parameterSizes: readonly number[];
  /** Default 1 MiB. */
  firstBucketBytes?: number;
  /** Default 25 MiB. */
  bucketBytes?: number;
  /** How each bucket travels; default allReduceHook (float32). */
  hook?: CommHook;
  /** Buckets in flight at once; default 4. */
  maxInFlight?: number;
}

/** Where the time of one reduce() went, in ms. */
export interface ReduceTimings {
  /** From the call until every other rank was known to have started (the slowest rank's lag). */
  waitMs: number;
  /** The rest: moving and summing the buckets. */
  allReduceMs: number;
  /** Each bucket's transfer, in ms from the end of waitMs, clamped into [0, allReduceMs]. */
  buckets: BucketTiming[];
}

/** When one bucket travelled (see ReduceTimings.buckets); bytes of float32 gradient. */
export interface BucketTiming {
  index: number;
  startMs: number;
  endMs: number;
  bytes: number;
}

/** Label of the operation that sums the sample counts when the plan does not give G. */
export const SAMPLE_COUNT_BUCKET = 0xffff_ffff;

/**
 * Turns each worker's mean gradient into the sample-weighted mean over all
 * workers, Σ b_r·g_r / G with G = Σ b_r, exact for uneven shards (DDP's Reducer,
 * called once the whole gradient is there: overlap with the backward pass needs
 * the gradient tap and a transport off the main thread). The flat gradient is cut
 * into fused buckets of whole parameters, the last layers' first (bucket-plan.ts);
 * each bucket is scaled by b_r/G and summed by the hook, up to `maxInFlight`
 * buckets at once, in index order on every rank.
 */
export class GradientReducer {
  readonly buckets: readonly Bucket[];
  readonly totalElements: number;
  private readonly hook: CommHook;
  private readonly maxInFlight: number;

  constructor(
    private readonly collective: Collective,
    opts: GradientReducerOptions,
  ) {
    this.buckets = planBuckets(opts.parameterSizes, opts.firstBucketBytes, opts.bucketBytes);
    this.totalElements = opts.parameterSizes.reduce((a, b) => a + b, 0);
    this.hook = opts.hook ?? allReduceHook;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 4);
  }

  /** The ranks taking part in every reduce(). */
  get worldSize(): number {
    return this.collective.worldSize;
  }

  /**
   * Replaces `grads` (the gradient of the mean loss over this worker's
   * `localCount` samples; the caller owns it and must not touch it until this
   * settles) by the weighted mean over all workers, identical on every rank.
   * `globalCount` is G from the step plan; when omitted it is all-reduced first
   * (one more tiny operation). A worker with no samples passes localCount 0.
   *
   * Every rank calls reduce() for the same step, in the same order relative to
   * its other collective operations. Rejects with the collective's error (a lost
   * or stalled peer, naming it) within its deadline; `grads` is then undefined.
   * Check the result for NaN/Inf with findNonFinite (it reached every rank).
   *
   * Resolves with the split of its time into waiting for the other ranks and the transfer,
   * taken from the first operation that proves every rank has started (no extra message).
   */
  async reduce(
    grads: Float32Array,
    localCount: number,
    globalCount?: number,
  ): Promise<ReduceTimings> {
    const started = performance.now();
    let peersReady: number | undefined;
    const onPeersReady = () => {
      peersReady ??= performance.now();
    };
    if (grads.length !== this.totalElements) {
      throw new UserError(
        `the gradient has ${grads.length} elements but the model's parameters have ${this.totalElements}`,
      );
    }
    let total = globalCount;
    if (total === undefined) {
      const counts = Float32Array.of(localCount);
      await this.collective.allReduceSum(counts, { bucket: SAMPLE_COUNT_BUCKET, onPeersReady });
      total = counts[0];
    }
    if (!(total > 0)) throw new UserError(`the global batch must hold samples; G is ${total}`);
    const weight = localCount / total;

    const inFlight = new Set<Promise<void>>();
    // performance.now() at each bucket's start and end: two numbers per bucket, for the trace.
    const spans: [number, number][] = [];
    for (const bucket of this.buckets) {
      const values = grads.subarray(bucket.start, bucket.end);
      if (weight !== 1) for (let i = 0; i < values.length; i++) values[i] *= weight;
      const span: [number, number] = [performance.now(), 0];
      spans.push(span);
      const done: Promise<void> = this.hook(values, {
        collective: this.collective,
        bucket,
        onPeersReady,
      }).then(() => {
        span[1] = performance.now();
        inFlight.delete(done);
      });
      // The failure is reported through race() or all() below; the other
      // buckets' identical rejections must not surface as unhandled.
      done.catch(() => undefined);
      inFlight.add(done);
      if (inFlight.size >= this.maxInFlight) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    const ended = performance.now();
    const ready = peersReady ?? started;
    const allReduceMs = ended - ready;
    // A bucket started before the last rank joined waited for it inside the barrier: its
    // transfer is the part after `ready`, so that it nests in the all-reduce.
    const within = (t: number) => Math.min(Math.max(t - ready, 0), allReduceMs);
    const buckets = this.buckets.map((b, i) => ({
      index: b.index,
      startMs: within(spans[i][0]),
      endMs: within(spans[i][1]),
      bytes: (b.end - b.start) * Float32Array.BYTES_PER_ELEMENT,
    }));
    return { waitMs: ready - started, allReduceMs, buckets };
  }
}
