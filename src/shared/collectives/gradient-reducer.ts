import { performance } from 'node:perf_hooks';
import { UserError } from '../errors.js';
import { type Bucket, planBuckets } from './bucket-plan.js';
import type { Collective } from './collective.js';
import type { CommHook } from './comm-hook.js';
import { allReduceHook } from './comm-hooks.js';
import { findNonFinite } from './non-finite.js';

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

/** What one reduction did: its timings, and whether this rank's own gradient was finite. */
export interface ReduceResult extends ReduceTimings {
  /** This rank's gradient held NaN or ±Inf before it was reduced (see ReducePass.finish). */
  ownNonFinite: boolean;
}

/**
 * One step's reduction, started while the backward pass still runs (ReducePass.parameterReady)
 * or all at once (finish alone). See GradientReducer.begin.
 */
export interface ReducePass {
  /**
   * Weight `parameter`'s gradient (its index in the trainable order) is final in the flat
   * gradient. Synchronous, for the gradient tap: once every weight of a bucket is final, and
   * every bucket before it has started, the bucket is scaled and handed to the hook at once.
   */
  parameterReady(parameter: number): void;
  /**
   * Every gradient is final: starts the buckets not started yet and resolves once every bucket is
   * reduced (never earlier: no part of a step's gradient is applied before all of it is summed).
   * The bucket holding element 0 (the first layer's, the last bucket) always waits for this
   * call, so that a rank whose loss or gradient is not finite can still poison element 0 with
   * NaN, which then reaches every rank's sum (`poison`: the loss was not finite).
   */
  finish(poison: boolean): Promise<ReduceResult>;
}

/**
 * Turns each worker's mean gradient into the sample-weighted mean over all
 * workers, Σ b_r·g_r / G with G = Σ b_r, exact for uneven shards (DDP's Reducer).
 * The flat gradient is cut into fused buckets of whole parameters, the last layers'
 * first (bucket-plan.ts); each bucket is scaled by b_r/G and summed by the hook, up to
 * `maxInFlight` buckets at once, in index order on every rank. With begin() a bucket
 * leaves as soon as the backward pass has finished its gradients (overlap, as DDP's
 * autograd hooks); its result does not depend on when, only the timing changes.
 */
export class GradientReducer {
  readonly buckets: readonly Bucket[];
  readonly totalElements: number;
  private readonly hook: CommHook;
  private readonly maxInFlight: number;
  /** The bucket of each parameter. */
  private readonly bucketOf: number[];

  constructor(
    private readonly collective: Collective,
    opts: GradientReducerOptions,
  ) {
    this.buckets = planBuckets(opts.parameterSizes, opts.firstBucketBytes, opts.bucketBytes);
    this.totalElements = opts.parameterSizes.reduce((a, b) => a + b, 0);
    this.hook = opts.hook ?? allReduceHook;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 4);
    this.bucketOf = new Array<number>(opts.parameterSizes.length);
    for (const b of this.buckets) this.bucketOf.fill(b.index, b.firstParameter, b.endParameter);
  }

  /** The ranks taking part in every reduce(). */
  get worldSize(): number {
    return this.collective.worldSize;
  }

  /**
   * Starts the reduction of `grads` (the gradient of the mean loss over this worker's
   * `localCount` samples; the caller fills it and owns it, but must not touch a bucket once it
   * has said that its parameters are final, until finish() settles) into the weighted mean over
   * all workers, identical on every rank. `globalCount` is G from the step plan. A worker with
   * no samples passes localCount 0. For overlap with the backward pass, the caller reports each
   * parameter as final (ReducePass.parameterReady); with a collective run by another thread
   * `grads` should live in a SharedArrayBuffer (no copy).
   *
   * Every rank begins a pass for the same step, in the same order relative to its other
   * collective operations. finish() rejects with the collective's error (a lost or stalled peer,
   * naming it) within its deadline; `grads` is then undefined. Check the result for NaN/Inf with
   * findNonFinite (it reached every rank).
   *
   * The timings split the time after finish() was called into waiting for the other ranks and
   * the transfer, from the first operation that proves every rank has started (no extra message).
   */
  begin(grads: Float32Array, localCount: number, globalCount: number): ReducePass {
    if (grads.length !== this.totalElements) {
      throw new UserError(
        `the gradient has ${grads.length} elements but the model's parameters have ${this.totalElements}`,
      );
    }
    if (!(globalCount > 0))
      throw new UserError(`the global batch must hold samples; G is ${globalCount}`);
    return new BucketPass(
      {
        buckets: this.buckets,
        bucketOf: this.bucketOf,
        maxInFlight: this.maxInFlight,
        move: (bucket, values, onPeersReady) =>
          this.hook(values, { collective: this.collective, bucket, onPeersReady }),
      },
      grads,
      localCount / globalCount,
    );
  }

  /**
   * The whole reduction at once, after the backward pass (begin, then finish). When
   * `globalCount` is omitted it is all-reduced first (one more tiny operation).
   */
  async reduce(
    grads: Float32Array,
    localCount: number,
    globalCount?: number,
  ): Promise<ReduceResult> {
    let total = globalCount;
    if (total === undefined) {
      const counts = Float32Array.of(localCount);
      await this.collective.allReduceSum(counts, { bucket: SAMPLE_COUNT_BUCKET });
      total = counts[0];
    }
    return this.begin(grads, localCount, total).finish(false);
  }
}

/** What a BucketPass takes from its reducer. */
interface PassPlan {
  buckets: readonly Bucket[];
  /** The bucket of each parameter. */
  bucketOf: readonly number[];
  maxInFlight: number;
  /** Moves one bucket's values through the hook. */
  move(bucket: Bucket, values: Float32Array, onPeersReady: (atMs?: number) => void): Promise<void>;
}

/** One pass of GradientReducer: which buckets are complete, started, done. */
class BucketPass implements ReducePass {
  private readonly buckets: readonly Bucket[];
  /** Parameters of each bucket still to be reported final. */
  private readonly missing: number[];
  /** The next bucket to start: buckets start in index order on every rank. */
  private next = 0;
  private finishing = false;
  private poison = false;
  private ownNonFinite = false;
  private readonly inFlight = new Set<Promise<void>>();
  /** performance.now() at each bucket's start and end, for the trace. */
  private readonly spans: [number, number][] = [];
  private peersReady: number | undefined;
  private failure: unknown;
  private readonly onPeersReady = (atMs = performance.now()) => {
    this.peersReady ??= atMs;
  };

  constructor(
    private readonly plan: PassPlan,
    private readonly grads: Float32Array,
    private readonly weight: number,
  ) {
    this.buckets = plan.buckets;
    this.missing = this.buckets.map((b) => b.endParameter - b.firstParameter);
  }

  parameterReady(parameter: number): void {
    const bucket = this.plan.bucketOf[parameter];
    if (bucket === undefined) throw new Error(`no parameter ${parameter} in the bucket plan`);
    this.missing[bucket]--;
    this.pump();
  }

  async finish(poison: boolean): Promise<ReduceResult> {
    const finished = performance.now();
    this.finishing = true;
    this.poison = poison;
    this.missing.fill(0);
    // pump() starts every bucket left unless one failed: then the ones in flight settle first.
    for (this.pump(); this.inFlight.size > 0; this.pump()) await Promise.race(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
    const ended = performance.now();
    const ready = Math.max(this.peersReady ?? finished, finished);
    const allReduceMs = ended - ready;
    // A bucket that travelled before `ready` (during the backward pass, or while waiting for
    // the last rank) is clamped into the all-reduce: the timings say what the step waited for.
    const within = (t: number) => Math.min(Math.max(t - ready, 0), allReduceMs);
    const buckets = this.buckets.map((b, i) => ({
      index: b.index,
      startMs: within(this.spans[i][0]),
      endMs: within(this.spans[i][1]),
      bytes: (b.end - b.start) * Float32Array.BYTES_PER_ELEMENT,
    }));
    return { waitMs: ready - finished, allReduceMs, buckets, ownNonFinite: this.ownNonFinite };
  }

  /** Starts every bucket that may start now: complete, next in order, and room in flight. */
  private pump(): void {
    const { maxInFlight } = this.plan;
    while (
      this.next < this.buckets.length &&
      this.missing[this.next] === 0 &&
      this.inFlight.size < maxInFlight &&
      this.failure === undefined
    ) {
      const bucket = this.buckets[this.next];
      // The bucket with element 0 leaves last, once the loss is known (see finish).
      if (bucket.start === 0 && !this.finishing) return;
      this.next++;
      this.start(bucket);
    }
  }

  private start(bucket: Bucket): void {
    const values = this.grads.subarray(bucket.start, bucket.end);
    if (findNonFinite(values) >= 0) this.ownNonFinite = true;
    if (bucket.start === 0 && (this.poison || this.ownNonFinite)) values[0] = Number.NaN;
    const { weight } = this;
    if (weight !== 1) for (let i = 0; i < values.length; i++) values[i] *= weight;
    const span: [number, number] = [performance.now(), 0];
    this.spans[bucket.index] = span;
    const done: Promise<void> = this.plan.move(bucket, values, this.onPeersReady).then(
      () => {
        span[1] = performance.now();
        this.inFlight.delete(done);
      },
      (error: unknown) => {
        this.failure ??= error;
        this.inFlight.delete(done);
      },
    );
    this.inFlight.add(done);
  }
}
