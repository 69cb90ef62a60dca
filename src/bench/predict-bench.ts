import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type GradCompression, powerSgdRank } from '../shared/collectives/grad-compression.js';
import { UserError } from '../shared/errors.js';
import {
  type Algorithm,
  type AllReduceSample,
  allReduceMs,
  bucketCount,
  fitLink,
  type LinkFit,
  predictOverlappedStep,
  predictStep,
  type StepShape,
} from './cost-model.js';
import type { OverlapProfile } from './readiness-profile.js';
import type { ScalingReport } from './scaling-bench.js';

export type Compression = 'none' | 'bf16' | 'powersgd';
export const SCENARIOS: readonly [Algorithm, Compression][] = [
  ['ring', 'none'],
  ['ring', 'bf16'],
  ['ring', 'powersgd'],
  ['star', 'none'],
  ['star', 'bf16'],
  ['star', 'powersgd'],
];

/**
 * The scenarios also predicted with the all-reduce overlapping the backward pass: the ring, as
 * every rank's transport thread runs it, with float32 or 16-bit gradients. The star's reduction
 * point waits for every rank's bucket anyway; PowerSGD computes its projections on the main
 * thread between its two operations, so its buckets leave once the backward pass is over.
 */
function overlaps(algo: Algorithm, compression: Compression): boolean {
  return algo === 'ring' && compression !== 'powersgd';
}

/** What PowerSGD changes in a step: fewer bytes, two operations per bucket, its own CPU time. */
export interface PowerSgdShape {
  rank: number;
  /** float32 bytes it all-reduces per step (P, Q and the parameters sent whole). */
  sentBytes: number;
  /** Its products and orthogonalisation per step, measured in this process, ms. */
  codecMs: number;
}

/** A fitted link for one (algorithm, compression), and where its figures came from. */
export interface FittedLink extends LinkFit {
  algo: Algorithm;
  compression: Compression;
  /** The results files fitted, or how the figures were derived. */
  source: string;
}

export interface PredictInputs {
  model: string;
  gradientBytes: number;
  firstBucketBytes: number;
  bucketBytes: number;
  /** Measured one-worker step without communication, ms, and its batch. */
  computeMs: number;
  batchSize: number;
  /** Compute is also predicted this many times faster (a GPU). */
  speedup: number;
  accumulate: number[];
  workers: number[];
  links: FittedLink[];
  /** The emulated link the fits and the checked runs share (absent: loopback). */
  link?: string;
  /** The measured scaling runs to check the model against (any compression). */
  scaling: ScalingReport[];
  /** PowerSGD of the scenarios' rank. */
  powerSgd: PowerSgdShape;
  /** PowerSGD of every rank a checked run used (the scenarios' one included). */
  powerSgdChecked: PowerSgdShape[];
  /** When the buckets' gradients are final in a step, for the overlap scenarios. */
  overlap: OverlapProfile;
}

export interface PredictRow {
  compute: 'measured' | 'faster';
  computeMs: number;
  algo: Algorithm;
  compression: Compression;
  /** The all-reduce starts each bucket once its gradients are final (predictOverlappedStep). */
  overlap: boolean;
  accumulate: number;
  workers: number;
  allreduceMs: number;
  stepMs: number;
  imagesPerSec: number;
  scalingEfficiency: number;
}

/** How far a prediction may be from the measured step time and still count as right. */
export const CHECK_TOLERANCE = 0.15;

/** A measured scaling run next to what the model says for it. */
export interface PredictCheck {
  compression: GradCompression;
  /** The run overlapped the all-reduce with the backward pass. */
  overlap: boolean;
  workers: number;
  /**
   * The reducer's time after the backward pass: the transfer, and PowerSGD's products between
   * its operations (with overlap, only what was not hidden).
   */
  measuredAllreduceMs: number;
  predictedAllreduceMs: number;
  /** Wall time of a step of the N-worker run. */
  measuredStepMs: number;
  /** The independent runs' step at this N plus the predicted all-reduce (the part not hidden). */
  predictedStepMs: number;
  /** predicted / measured step time − 1; within ±CHECK_TOLERANCE counts as right. */
  stepError: number;
  measuredImagesPerSec: number;
  /** With the compute time the independent runs had at this N (the machine's contention). */
  predictedImagesPerSec: number;
  measuredDistributionEfficiency: number;
  predictedDistributionEfficiency: number;
}

/** Every scenario for every N, k and compute speed; and the check against measured runs. */
export function predict(inputs: PredictInputs): { rows: PredictRow[]; checks: PredictCheck[] } {
  const buckets = bucketCount(inputs.gradientBytes, inputs.firstBucketBytes, inputs.bucketBytes);
  const rows: PredictRow[] = [];
  const computes = [
    ['measured', inputs.computeMs],
    ['faster', inputs.computeMs / inputs.speedup],
  ] as const;
  for (const [compute, computeMs] of computes) {
    const shape: StepShape = {
      computeMs,
      batchSize: inputs.batchSize,
      gradientBytes: inputs.gradientBytes,
      buckets,
    };
    const { sentBytes, codecMs } = inputs.powerSgd;
    const compressed: StepShape = {
      ...shape,
      gradientBytes: sentBytes,
      buckets: 2 * buckets,
      operationsPerBucket: 2,
      codecMs,
    };
    for (const link of inputs.links) {
      const linkShape = link.compression === 'powersgd' ? compressed : shape;
      for (const overlap of overlaps(link.algo, link.compression) ? [false, true] : [false]) {
        for (const k of inputs.accumulate) {
          for (const n of inputs.workers) {
            const p = overlap
              ? predictOverlappedStep(link.algo, link, linkShape, inputs.overlap, n, k)
              : predictStep(link.algo, link, linkShape, n, k);
            rows.push({
              compute,
              computeMs,
              algo: link.algo,
              compression: link.compression,
              overlap,
              accumulate: k,
              workers: n,
              ...p,
            });
          }
        }
      }
    }
  }
  const checks = inputs.scaling.flatMap((report) => checkRuns(inputs, report, buckets));
  return { rows, checks };
}

/**
 * The model against each N-worker row of one measured `bench scaling` report: the compute is
 * the independent runs' step at that N (N runs shared the machine as the N workers did), the
 * all-reduce the fitted link's for the report's compression (16-bit codings with half the
 * bytes; PowerSGD with its bytes, its 2 operations per bucket and its CPU time).
 */
function checkRuns(inputs: PredictInputs, s: ScalingReport, buckets: number): PredictCheck[] {
  const compression = s.compression ?? 'none';
  const rank = powerSgdRank(compression);
  const scenario: Compression = rank ? 'powersgd' : compression === 'none' ? 'none' : 'bf16';
  const link = inputs.links.find((l) => l.algo === s.allreduce && l.compression === scenario);
  const powerSgd = inputs.powerSgdChecked.find((p) => p.rank === rank);
  if (!link || (rank && !powerSgd)) return [];
  // Reports from before overlap existed lack the field: they did not overlap.
  const overlap = s.overlap === true && overlaps(link.algo, scenario);
  return s.results
    .filter((r) => r.workers > 1)
    .map((r) => {
      const images = r.workers * s.batchSize * 1000;
      const contendedMs = images / r.independentImagesPerSec;
      let predictedAllreduceMs: number;
      if (overlap) {
        const shape = {
          computeMs: contendedMs,
          batchSize: s.batchSize,
          gradientBytes: inputs.gradientBytes,
          buckets,
        };
        const hidden = predictOverlappedStep(link.algo, link, shape, inputs.overlap, r.workers);
        predictedAllreduceMs = hidden.stepMs - contendedMs;
      } else {
        const transfer = powerSgd
          ? allReduceMs(link.algo, link, powerSgd.sentBytes, r.workers, 2 * buckets)
          : allReduceMs(link.algo, link, inputs.gradientBytes, r.workers, buckets);
        predictedAllreduceMs = transfer + (powerSgd?.codecMs ?? 0);
      }
      const predictedStepMs = contendedMs + predictedAllreduceMs;
      return {
        compression,
        overlap,
        workers: r.workers,
        measuredAllreduceMs: r.allreduceMs,
        predictedAllreduceMs,
        measuredStepMs: r.stepMs,
        predictedStepMs,
        stepError: predictedStepMs / r.stepMs - 1,
        measuredImagesPerSec: r.imagesPerSec,
        predictedImagesPerSec: images / predictedStepMs,
        measuredDistributionEfficiency: r.distributionEfficiency,
        predictedDistributionEfficiency: contendedMs / predictedStepMs,
      };
    });
}

/**
 * Fits every (algorithm, compression) from the `bench allreduce` results in
 * `dir` (allreduce-*.json) measured on `link` (an emulated link's rate; absent: loopback, the
 * files without a link). A bf16 scenario without its own results is derived
 * from float32's fit with half the bytes (its encoding cost then left out); PowerSGD
 * sends float32, so it uses float32's fit (its bytes and CPU time come from
 * PowerSgdShape); an algorithm with no results is left out, and no ring results at all is an
 * error naming the command to run.
 */
export async function fitLinks(dir: string, link?: string): Promise<FittedLink[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((f) =>
    /^allreduce-.*\.json$/.test(f),
  );
  const samples = new Map<string, { files: string[]; samples: AllReduceSample[] }>();
  for (const name of names) {
    const r = JSON.parse(await readFile(join(dir, name), 'utf8')) as {
      workers: number;
      algo: Algorithm;
      compression?: Compression;
      link?: { rate: string };
      results: { bytes: number; ms: number }[];
    };
    if (r.link?.rate !== link) continue;
    const key = `${r.algo}/${r.compression ?? 'none'}`;
    const entry = samples.get(key) ?? { files: [], samples: [] };
    entry.files.push(name);
    entry.samples.push(...r.results.map((x) => ({ workers: r.workers, bytes: x.bytes, ms: x.ms })));
    samples.set(key, entry);
  }
  const fitted = SCENARIOS.flatMap(([algo, compression]): FittedLink[] => {
    const own = samples.get(`${algo}/${compression}`);
    if (own)
      return [{ algo, compression, ...fitLink(algo, own.samples), source: own.files.join(', ') }];
    const plain = samples.get(`${algo}/none`);
    if (compression === 'powersgd' && plain) {
      const source = `${plain.files.join(', ')} (float32)`;
      return [{ algo, compression, ...fitLink(algo, plain.samples), source }];
    }
    if (compression === 'bf16' && plain) {
      const fit = fitLink(algo, plain.samples);
      const source = `${plain.files.join(', ')} with half the bytes`;
      return [{ algo, compression, ...fit, betaMsPerByte: fit.betaMsPerByte / 2, source }];
    }
    // An algorithm measured on no link of this kind is left out (star is rarely measured on
    // emulated links); the ring, which every run uses by default, must be there.
    return [];
  });
  if (!fitted.some((l) => l.algo === 'ring')) {
    const on = link ? ` --link ${link}` : '';
    throw new UserError(
      `no all-reduce results for ring${link ? ` on ${link} links` : ''} in ${dir}: run tfjs-ddp bench allreduce --algo ring${on} --out ${dir}`,
    );
  }
  return fitted;
}
