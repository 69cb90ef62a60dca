import { performance } from 'node:perf_hooks';
import { planBuckets } from '../shared/collectives/bucket-plan.js';
import { createCommHook } from '../shared/collectives/comm-hooks.js';
import { createInMemoryCollectives } from '../shared/collectives/in-memory-collectives.js';
import { powerSgdSentElements } from '../shared/collectives/power-sgd-hook.js';
import type { PowerSgdShape } from './predict-bench.js';

/**
 * What PowerSGD of `rank` costs a step of a model with these trainable `shapes`: the bytes it
 * all-reduces, and its CPU time, measured by running the hook on a random gradient in a world of
 * one (no transfer: the products, orthogonalisation and error feedback alone; the second of two
 * runs, so that Q is warm and the code compiled).
 */
export async function measurePowerSgd(
  shapes: readonly (readonly number[])[],
  rank: number,
  firstBucketBytes: number,
  bucketBytes: number,
): Promise<PowerSgdShape> {
  const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const buckets = planBuckets(sizes, firstBucketBytes, bucketBytes);
  const [collective] = createInMemoryCollectives('ring', 1, {
    timeoutMs: 60_000,
    chunkBytes: 1 << 20,
  }).collectives;
  const { hook } = createCommHook(`powersgd:${rank}`, shapes);
  const total = sizes.reduce((a, b) => a + b, 0);
  let codecMs = 0;
  try {
    for (let run = 0; run < 2; run++) {
      const gradient = Float32Array.from({ length: total }, (_, i) => Math.sin(i * 0.37 + run));
      const start = performance.now();
      for (const bucket of buckets) {
        await hook(gradient.subarray(bucket.start, bucket.end), { collective, bucket });
      }
      codecMs = performance.now() - start;
    }
  } finally {
    await collective.close();
  }
  return { rank, sentBytes: 4 * powerSgdSentElements(shapes, rank), codecMs };
}
