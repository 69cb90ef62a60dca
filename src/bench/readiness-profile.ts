import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Bucket } from '../shared/collectives/bucket-plan.js';
import { UserError } from '../shared/errors.js';
import { median } from './bandwidth.js';
import type { StepMeasurement } from './compute-step.js';
import type { OverlapShape } from './cost-model.js';

/**
 * When a model's gradients are final in a step: what `bench predict` overlaps the all-reduce
 * with. Shares of one step's compute; per trainable weight, the fraction of the backward pass
 * after which its gradient is final.
 */
export interface ReadinessProfile {
  /** Where it came from: a `bench compute` results file, or the assumption and why. */
  source: string;
  forwardShare: number;
  backwardShare: number;
  parameterReady: number[];
}

/** The overlap scenarios' input as the report shows it: a bucket plan placed on a profile. */
export interface OverlapProfile extends OverlapShape {
  source: string;
}

/** Without a measured profile: the forward pass a third of the step, the backward two thirds. */
export const ASSUMED_FORWARD_SHARE = 1 / 3;
export const ASSUMED_BACKWARD_SHARE = 2 / 3;

/**
 * The assumption: gradients become final at a uniform rate (by bytes) over the backward pass,
 * last weight first, so weight p is final once it and every weight after it are done.
 */
export function assumedProfile(sizes: readonly number[], why: string): ReadinessProfile {
  const total = sizes.reduce((a, b) => a + b, 0);
  let after = 0;
  const parameterReady = new Array<number>(sizes.length);
  for (let p = sizes.length - 1; p >= 0; p--) {
    after += sizes[p];
    parameterReady[p] = total > 0 ? after / total : 1;
  }
  return {
    source: `assumed (${why}): forward 1/3 and backward 2/3 of the step, gradients final uniformly over the backward pass, last layer first`,
    forwardShare: ASSUMED_FORWARD_SHARE,
    backwardShare: ASSUMED_BACKWARD_SHARE,
    parameterReady,
  };
}

/** A `bench compute` row's profile: medians of its timed steps, as shares of its step. */
export function measuredProfile(row: StepMeasurement, file: string): ReadinessProfile | undefined {
  const { forwardMs, backwardMs, parameterReadyMs } = row;
  if (!forwardMs?.length || !backwardMs?.length || !parameterReadyMs) return undefined;
  const step = median(row.stepMs);
  const backward = median(backwardMs);
  return {
    source: `${file} (${row.model} at batch ${row.batch} on ${row.backend}: forward ${median(forwardMs).toFixed(0)} ms, backward ${backward.toFixed(0)} ms of a ${step.toFixed(0)} ms step)`,
    forwardShare: median(forwardMs) / step,
    backwardShare: backward / step,
    parameterReady: parameterReadyMs.map((ms) => (backward > 0 ? Math.min(ms / backward, 1) : 1)),
  };
}

/**
 * The profile of `model` from the first of `files` (bench compute results) that has one for
 * its `sizes.length` weights; else the assumption, saying why. A file named explicitly
 * (`explicit`) must exist and hold one.
 */
export async function readinessProfile(
  files: readonly string[],
  model: string,
  sizes: readonly number[],
  explicit = false,
): Promise<ReadinessProfile> {
  for (const file of files) {
    const rows = await readFile(file, 'utf8').then(
      (text) => JSON.parse(text) as StepMeasurement[],
      (error: Error) => {
        if (explicit) throw new UserError(`--compute-results ${file}: ${error.message}`);
        return [];
      },
    );
    const row = rows.find((r) => r.model === model && r.parameterReadyMs?.length === sizes.length);
    const profile = row && measuredProfile(row, basename(file));
    if (profile) return profile;
  }
  if (explicit) {
    throw new UserError(
      `--compute-results ${files.join(', ')}: no gradient readiness of ${model}: run tfjs-ddp bench compute --models ${model}`,
    );
  }
  return assumedProfile(sizes, `no bench compute results with a readiness profile of ${model}`);
}

/** Every compute-*.json in `dir`, in name order. */
export async function computeResultFiles(dir: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return names
    .filter((f) => /^compute-.*\.json$/.test(f))
    .sort()
    .map((f) => join(dir, f));
}

/** `buckets` (the reducer's plan) placed on `profile`: each final with its last weight. */
export function overlapProfile(
  profile: ReadinessProfile,
  buckets: readonly Bucket[],
): OverlapProfile {
  return {
    source: profile.source,
    forwardShare: profile.forwardShare,
    backwardShare: profile.backwardShare,
    buckets: buckets.map((b) => ({
      readyFraction: Math.max(...profile.parameterReady.slice(b.firstParameter, b.endParameter)),
      bytes: 4 * (b.end - b.start),
    })),
  };
}
