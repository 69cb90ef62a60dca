import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../shared/errors.js';
import {
  type Algorithm,
  type AllReduceSample,
  allReduceMs,
  bucketCount,
  fitLink,
  type LinkFit,
  predictStep,
  type StepShape,
} from './cost-model.js';
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
  /** The measured scaling runs to check the model against, if any. */
  scaling?: ScalingReport;
  powerSgd: PowerSgdShape;
}

export interface PredictRow {
  compute: 'measured' | 'faster';
  computeMs: number;
  algo: Algorithm;
  compression: Compression;
  accumulate: number;
  workers: number;
  allreduceMs: number;
  stepMs: number;
  imagesPerSec: number;
  scalingEfficiency: number;
}

/** A measured scaling run next to what the model says for it. */
export interface PredictCheck {
  workers: number;
  measuredAllreduceMs: number;
  predictedAllreduceMs: number;
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
      codecMs,
    };
    for (const link of inputs.links) {
      for (const k of inputs.accumulate) {
        for (const n of inputs.workers) {
          const p = predictStep(
            link.algo,
            link,
            link.compression === 'powersgd' ? compressed : shape,
            n,
            k,
          );
          rows.push({
            compute,
            computeMs,
            algo: link.algo,
            compression: link.compression,
            accumulate: k,
            workers: n,
            ...p,
          });
        }
      }
    }
  }
  const checks: PredictCheck[] = [];
  const s = inputs.scaling;
  const link = s && inputs.links.find((l) => l.algo === s.allreduce && l.compression === 'none');
  if (s && link) {
    for (const r of s.results.filter((x) => x.workers > 1)) {
      const t = allReduceMs(link.algo, link, inputs.gradientBytes, r.workers, buckets);
      // One independent run's step at this N: N runs shared the machine like the N workers did.
      const contendedMs = (r.workers * s.batchSize * 1000) / r.independentImagesPerSec;
      checks.push({
        workers: r.workers,
        measuredAllreduceMs: r.allreduceMs,
        predictedAllreduceMs: t,
        measuredImagesPerSec: r.imagesPerSec,
        predictedImagesPerSec: (r.workers * s.batchSize * 1000) / (contendedMs + t),
        measuredDistributionEfficiency: r.distributionEfficiency,
        predictedDistributionEfficiency: contendedMs / (contendedMs + t),
      });
    }
  }
  return { rows, checks };
}

/**
 * Fits every (algorithm, compression) from the `bench allreduce` results in
 * `dir` (allreduce-*.json). A bf16 scenario without its own results is derived
 * from float32's fit with half the bytes (its encoding cost then left out); PowerSGD
 * sends float32, so it uses float32's fit (its bytes and CPU time come from
 * PowerSgdShape); a scenario with no results at all is an error naming the command to run.
 */
export async function fitLinks(dir: string): Promise<FittedLink[]> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((f) =>
    /^allreduce-.*\.json$/.test(f),
  );
  const samples = new Map<string, { files: string[]; samples: AllReduceSample[] }>();
  for (const name of names) {
    const r = JSON.parse(await readFile(join(dir, name), 'utf8')) as {
      workers: number;
      algo: Algorithm;
      compression?: Compression;
      results: { bytes: number; ms: number }[];
    };
    const key = `${r.algo}/${r.compression ?? 'none'}`;
    const entry = samples.get(key) ?? { files: [], samples: [] };
    entry.files.push(name);
    entry.samples.push(...r.results.map((x) => ({ workers: r.workers, bytes: x.bytes, ms: x.ms })));
    samples.set(key, entry);
  }
  return SCENARIOS.map(([algo, compression]) => {
    const own = samples.get(`${algo}/${compression}`);
    if (own)
      return { algo, compression, ...fitLink(algo, own.samples), source: own.files.join(', ') };
    const plain = samples.get(`${algo}/none`);
    if (compression === 'powersgd' && plain) {
      return {
        algo,
        compression,
        ...fitLink(algo, plain.samples),
        source: `${plain.files.join(', ')} (float32)`,
      };
    }
    if (compression === 'bf16' && plain) {
      const fit = fitLink(algo, plain.samples);
      return {
        algo,
        compression,
        alphaMs: fit.alphaMs,
        betaMsPerByte: fit.betaMsPerByte / 2,
        source: `${plain.files.join(', ')} with half the bytes`,
      };
    }
    throw new UserError(
      `no all-reduce results for ${algo} in ${dir}: run tfjs-ddp bench allreduce --algo ${algo} --out ${dir}`,
    );
  });
}
