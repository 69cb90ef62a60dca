/**
 * The α–β model of an all-reduce (Hockney; Thakur, Rabenseifner & Gropp 2005) and
 * of a data-parallel step built on it. Units: ms and bytes.
 *
 *   ring:  T(S, N) = 2(N−1)·α·b + 2(N−1)/N · S · β
 *   star:  T(S, N) = 2·α·b + N · S · β      (the reduction point moves N·S each way)
 *   T(S, 1) = 0
 *
 * S: gradient bytes (float32; with bf16 the fitted β already carries the halving),
 * b: buckets per step (each pays the latency), α: latency of one message hop,
 * β: ms per byte on one link. A step of k micro-batches of B images per worker,
 * each taking C ms of compute (forward, backward, data, update), all-reduces once:
 *
 *   t(N, k) = k·C + E + T(S, N),   throughput = N·k·B / t,
 *   scaling efficiency = throughput(N) / (N · throughput(1)) = k·C / t,
 *
 * where E is the compression's own CPU time per step (PowerSGD's products; 0 without, and for
 * bf16 whose fitted β carries its codec). PowerSGD sends S' < S bytes in 2 operations per
 * bucket: T(S', N) with 2b latencies.
 *
 * With overlap (predictOverlappedStep), each bucket's all-reduce starts once its gradients are
 * final in the last micro-batch's backward pass, and the buckets go over the link one after
 * another: t = (k−1)·C + F + max(B, end of the last bucket's transfer) + R + E, with F, B, R
 * the forward pass, the backward pass and the rest of C.
 */
export type Algorithm = 'ring' | 'star';

/** Latency and inverse bandwidth of one link, fitted from measured all-reduces. */
export interface LinkFit {
  alphaMs: number;
  betaMsPerByte: number;
}

/** One measured all-reduce: N ranks, S bytes, median time. */
export interface AllReduceSample {
  workers: number;
  bytes: number;
  ms: number;
}

/** The time the model gives an all-reduce of `bytes` over `workers` ranks in `buckets` pieces. */
export function allReduceMs(
  algo: Algorithm,
  fit: LinkFit,
  bytes: number,
  workers: number,
  buckets = 1,
): number {
  if (workers < 2) return 0;
  const [latency, volume] = terms(algo, workers, bytes);
  return latency * buckets * fit.alphaMs + volume * fit.betaMsPerByte;
}

/** Coefficients of α and β in T for one all-reduce. */
function terms(algo: Algorithm, workers: number, bytes: number): [number, number] {
  return algo === 'ring'
    ? [2 * (workers - 1), ((2 * (workers - 1)) / workers) * bytes]
    : [2, workers * bytes];
}

/**
 * Least squares of the model on `samples`, minimising relative errors (weights
 * 1/t², so that 1 KB and 256 MB count alike: α comes from the small sizes, β from
 * the large), with α, β ≥ 0.
 */
export function fitLink(algo: Algorithm, samples: readonly AllReduceSample[]): LinkFit {
  let [saa, sab, sbb, say, sby] = [0, 0, 0, 0, 0];
  for (const s of samples) {
    if (s.workers < 2) continue;
    const [a, b] = terms(algo, s.workers, s.bytes);
    const w = 1 / (s.ms * s.ms);
    saa += w * a * a;
    sab += w * a * b;
    sbb += w * b * b;
    say += w * a * s.ms;
    sby += w * b * s.ms;
  }
  if (saa === 0) throw new Error('no all-reduce of two or more ranks to fit');
  const det = saa * sbb - sab * sab;
  let alphaMs = det > 0 ? (say * sbb - sby * sab) / det : 0;
  let betaMsPerByte = det > 0 ? (sby * saa - say * sab) / det : 0;
  if (det <= 0 || alphaMs < 0) {
    alphaMs = 0;
    betaMsPerByte = sby / sbb;
  } else if (betaMsPerByte < 0) {
    betaMsPerByte = 0;
    alphaMs = say / saa;
  }
  return { alphaMs, betaMsPerByte };
}

/** One worker's step without communication, and what its all-reduce moves. */
export interface StepShape {
  /** Compute, data and update time of one micro-batch, ms. */
  computeMs: number;
  /** Images per micro-batch per worker. */
  batchSize: number;
  gradientBytes: number;
  /** Operations per step (each pays the latency): buckets, or 2 per bucket for PowerSGD. */
  buckets: number;
  /** With overlap, the operations of one bucket (2 for PowerSGD); default 1. */
  operationsPerBucket?: number;
  /** The compression's CPU time per step, ms (not sped up with the compute: it runs in JS). */
  codecMs?: number;
}

export interface StepPrediction {
  allreduceMs: number;
  stepMs: number;
  imagesPerSec: number;
  scalingEfficiency: number;
}

/** The model's step for N workers accumulating k micro-batches per all-reduce. */
export function predictStep(
  algo: Algorithm,
  fit: LinkFit,
  shape: StepShape,
  workers: number,
  accumulate = 1,
): StepPrediction {
  const allreduce = allReduceMs(algo, fit, shape.gradientBytes, workers, shape.buckets);
  const compute = accumulate * shape.computeMs;
  const stepMs = compute + (shape.codecMs ?? 0) + allreduce;
  return {
    allreduceMs: allreduce,
    stepMs,
    imagesPerSec: (workers * accumulate * shape.batchSize) / (stepMs / 1000),
    scalingEfficiency: compute / stepMs,
  };
}

/**
 * When a step's gradients are final, in shares of one micro-batch's compute C: the forward
 * pass, the backward pass (the rest of C is data, flattening and the update), and per bucket,
 * in reduction order (the last layers' first), the fraction of the backward pass after which
 * its last gradient is final, with its float32 bytes.
 */
export interface OverlapShape {
  forwardShare: number;
  backwardShare: number;
  buckets: readonly { readyFraction: number; bytes: number }[];
}

/**
 * The step when the all-reduce overlaps the backward pass (PyTorch DDP; a transport off the
 * main thread, so that transfers run while tfjs computes): bucket i is final at rᵢ·B after the
 * backward pass started, and its transfer Tᵢ, the model's T(Sᵢ, N) with its own latencies, starts
 * then or when the previous bucket's ends, whichever is later:
 *
 *   endᵢ = max(rᵢ·B, endᵢ₋₁) + Tᵢ,   t = (k−1)·C + F + max(B, end_last) + R + E
 *
 * Sᵢ is scaled by shape.gradientBytes / Σ Sᵢ, so a compression that sends fewer bytes (PowerSGD)
 * sends them in the same proportions. E (the compression's CPU time) is not hidden: it runs on
 * the CPU that computes. Only the last micro-batch overlaps: the others' gradients are
 * accumulated, not sent. `allreduceMs` is Σ Tᵢ, the transfer whether hidden or not.
 */
export function predictOverlappedStep(
  algo: Algorithm,
  fit: LinkFit,
  shape: StepShape,
  overlap: OverlapShape,
  workers: number,
  accumulate = 1,
): StepPrediction {
  const planned = overlap.buckets.reduce((n, b) => n + b.bytes, 0);
  const scale = planned > 0 ? shape.gradientBytes / planned : 0;
  const forward = overlap.forwardShare * shape.computeMs;
  const backward = overlap.backwardShare * shape.computeMs;
  const rest = shape.computeMs - forward - backward;
  let end = 0;
  let transfers = 0;
  for (const b of overlap.buckets) {
    const t = allReduceMs(algo, fit, b.bytes * scale, workers, shape.operationsPerBucket ?? 1);
    end = Math.max(b.readyFraction * backward, end) + t;
    transfers += t;
  }
  const compute = accumulate * shape.computeMs;
  const lastPass = forward + Math.max(backward, end) + rest;
  const stepMs = (accumulate - 1) * shape.computeMs + lastPass + (shape.codecMs ?? 0);
  return {
    allreduceMs: transfers,
    stepMs,
    imagesPerSec: (workers * accumulate * shape.batchSize) / (stepMs / 1000),
    scalingEfficiency: compute / stepMs,
  };
}

/** Buckets of the gradient reducer: a first small bucket, then full ones (PyTorch DDP style). */
export function bucketCount(bytes: number, firstBucketBytes: number, bucketBytes: number): number {
  if (bytes <= firstBucketBytes) return 1;
  return 1 + Math.ceil((bytes - firstBucketBytes) / bucketBytes);
}
