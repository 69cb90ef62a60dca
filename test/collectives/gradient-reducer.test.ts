// The reducer turns each worker's mean gradient into the sample-weighted mean
// over all workers, through fused buckets in flight at once.
import { describe, expect, it } from 'vitest';
import { planBuckets } from '../../src/shared/collectives/bucket-plan.js';
import type { Collective } from '../../src/shared/collectives/collective.js';
import { allReduceHook, bf16CompressHook } from '../../src/shared/collectives/comm-hooks.js';
import { createCollective } from '../../src/shared/collectives/create-collective.js';
import { GradientReducer } from '../../src/shared/collectives/gradient-reducer.js';
import { createInMemoryCollectives } from '../../src/shared/collectives/in-memory-collectives.js';
import { findNonFinite } from '../../src/shared/collectives/non-finite.js';
import { UserError } from '../../src/shared/errors.js';
import { startGrpcServer } from '../../src/shared/transport/grpc-server.js';
import { PeerService } from '../../src/shared/transport/peer-service.js';
import { expectSameValues } from './worlds.js';

const SIZES = [3, 1000, 50_000, 7, 200_000, 1, ...Array.from({ length: 20 }, () => 3000)];
const TOTAL = SIZES.reduce((a, b) => a + b, 0);
const SMALL_BUCKETS = { firstBucketBytes: 4096, bucketBytes: 32 * 1024 };
const TUNING = { timeoutMs: 2000, chunkBytes: 64 * 1024 };

function gradient(rank: number): Float32Array {
  return Float32Array.from({ length: TOTAL }, (_, i) => ((i * 31 + rank * 17) % 97) - 48);
}

/** Σ b_r·g_r / G in float64. */
function weightedMean(counts: number[]): Float64Array {
  const total = counts.reduce((a, b) => a + b, 0);
  const mean = new Float64Array(TOTAL);
  counts.forEach((b, r) => {
    gradient(r).forEach((g, i) => {
      mean[i] += (b * g) / total;
    });
  });
  return mean;
}

/** Largest |actual - expected| / max(1, |expected|). */
function worstError(actual: Float32Array, expected: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < actual.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i])));
  }
  return worst;
}

async function reduceAll(
  collectives: Collective[],
  counts: number[],
  opts: { global?: boolean; hook?: typeof bf16CompressHook } = {},
) {
  const grads = collectives.map((c) => gradient(c.rank));
  const G = counts.reduce((a, b) => a + b, 0);
  await Promise.all(
    collectives.map((c, r) => {
      const reducer = new GradientReducer(c, {
        parameterSizes: SIZES,
        ...SMALL_BUCKETS,
        hook: opts.hook,
      });
      return reducer.reduce(grads[r], counts[r], opts.global === false ? undefined : G);
    }),
  );
  return grads;
}

describe('planBuckets', () => {
  it('closes a small first bucket of the last parameters, then buckets of the cap, of whole parameters', () => {
    // From the last parameter back: 5 + 100 floats reach 64 bytes, 30 + 20 reach 200, 10 is left.
    expect(planBuckets([10, 20, 30, 100, 5], 64, 200)).toEqual([
      { index: 0, start: 60, end: 165, firstParameter: 3, endParameter: 5 },
      { index: 1, start: 10, end: 60, firstParameter: 1, endParameter: 3 },
      { index: 2, start: 0, end: 10, firstParameter: 0, endParameter: 1 },
    ]);
    expect(planBuckets([])).toEqual([]);
  });

  it('uses PyTorch DDP defaults: 1 MiB first, then 25 MiB, and covers the gradient back to front', () => {
    const sizes = Array.from({ length: 40 }, () => 1024 * 1024);
    const buckets = planBuckets(sizes);
    expect(buckets[0].end - buckets[0].start).toBe(1024 * 1024);
    expect(buckets[0]).toMatchObject({
      firstParameter: 39,
      endParameter: 40,
      end: 40 * 1024 * 1024,
    });
    expect(buckets[1].end - buckets[1].start).toBe(7 * 1024 * 1024);
    expect(buckets.at(-1)).toMatchObject({ start: 0, firstParameter: 0 });
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i].end).toBe(buckets[i - 1].start);
      expect(buckets[i].endParameter).toBe(buckets[i - 1].firstParameter);
    }
  });
});

describe('GradientReducer', () => {
  it('gives every rank the exact weighted mean for uneven shards', async () => {
    // Weights 1/2, 1/4, 1/4 are exact in float32, and so are these sums.
    const { collectives } = createInMemoryCollectives('ring', 3, TUNING);
    const counts = [4, 2, 2];
    const grads = await reduceAll(collectives, counts);
    const expected = Float32Array.from(weightedMean(counts));
    for (const g of grads) expectSameValues(g, expected);
    const reducer = new GradientReducer(collectives[0], {
      parameterSizes: SIZES,
      ...SMALL_BUCKETS,
    });
    // From the last parameter back: one 3000 (≥ 4 KiB), then ≥ 32 KiB each.
    expect(reducer.buckets.map((b) => b.endParameter - b.firstParameter)).toEqual([
      1, 3, 3, 3, 3, 3, 3, 3, 2, 2,
    ]);
  });

  it.each(['ring', 'star'] as const)(
    '%s: matches the float64 mean for any counts, and sums G itself when not given',
    async (name) => {
      const counts = [5, 3, 0];
      const withG = await reduceAll(createInMemoryCollectives(name, 3, TUNING).collectives, counts);
      const withoutG = await reduceAll(
        createInMemoryCollectives(name, 3, TUNING).collectives,
        counts,
        { global: false },
      );
      const reference = weightedMean(counts);
      let worst = 0;
      withG[0].forEach((v, i) => {
        worst = Math.max(worst, Math.abs(v - reference[i]) / Math.max(1, Math.abs(reference[i])));
      });
      expect(worst).toBeLessThan(1e-6);
      for (const g of [...withG, ...withoutG]) expectSameValues(g, withG[0]);
    },
  );

  it('times every bucket inside its all-reduce, with its bytes', async () => {
    const { collectives } = createInMemoryCollectives('ring', 3, TUNING);
    const timings = await Promise.all(
      collectives.map((c) =>
        new GradientReducer(c, { parameterSizes: SIZES, ...SMALL_BUCKETS }).reduce(
          gradient(c.rank),
          1,
          3,
        ),
      ),
    );
    for (const t of timings) {
      expect(t.buckets.map((b) => b.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(t.buckets.reduce((n, b) => n + b.bytes, 0)).toBe(TOTAL * 4);
      for (const b of t.buckets) {
        expect(b.startMs).toBeGreaterThanOrEqual(0);
        expect(b.endMs).toBeGreaterThanOrEqual(b.startMs);
        expect(b.endMs).toBeLessThanOrEqual(t.allReduceMs);
      }
    }
  });

  it("leaves a lone worker's gradient untouched", async () => {
    const { collectives } = createInMemoryCollectives('ring', 1, TUNING);
    const [grads] = await reduceAll(collectives, [64]);
    expectSameValues(grads, gradient(0));
  });

  it('with the bf16 hook stays within bf16 tolerance', async () => {
    const counts = [4, 4];
    const grads = await reduceAll(
      createInMemoryCollectives('ring', 2, TUNING).collectives,
      counts,
      { hook: bf16CompressHook },
    );
    // Two roundings to bf16 of values below 48 in magnitude.
    expect(worstError(grads[0], weightedMean(counts))).toBeLessThanOrEqual(2 * 2 ** -8 * 48);
    expectSameValues(grads[1], grads[0]);
  });

  it('lets every rank see a NaN that one rank produced, which also poisons element 0', async () => {
    const { collectives } = createInMemoryCollectives('ring', 3, TUNING);
    const grads = collectives.map((c) => gradient(c.rank));
    grads[1][51_234] = Number.NaN;
    const results = await Promise.all(
      collectives.map((c, r) =>
        new GradientReducer(c, { parameterSizes: SIZES, ...SMALL_BUCKETS }).reduce(grads[r], 1, 3),
      ),
    );
    expect(results.map((r) => r.ownNonFinite)).toEqual([false, true, false]);
    for (const g of grads) {
      expect(findNonFinite(g)).toBe(0);
      expect(g[51_234]).toBeNaN();
    }
  });

  it('refuses a gradient of the wrong length', async () => {
    const { collectives } = createInMemoryCollectives('ring', 1, TUNING);
    const reducer = new GradientReducer(collectives[0], { parameterSizes: SIZES });
    await expect(reducer.reduce(new Float32Array(TOTAL - 1), 1, 1)).rejects.toThrow(UserError);
  });

  it('pipelines many buckets over a real gRPC ring', async () => {
    const services = [new PeerService(), new PeerService()];
    const servers = await Promise.all(
      services.map((s) => startGrpcServer({ host: '127.0.0.1', services: [s] })),
    );
    const peerAddresses = servers.map((s) => `127.0.0.1:${s.port}`);
    const collectives = await Promise.all(
      services.map((peerService, rank) =>
        createCollective('ring', {
          rank,
          worldSize: 2,
          generation: 1,
          ...TUNING,
          peerAddresses,
          peerService,
        }),
      ),
    );
    try {
      const counts = [3, 1];
      const grads = await reduceAll(collectives, counts);
      expect(worstError(grads[0], weightedMean(counts))).toBeLessThan(1e-5);
      expectSameValues(grads[1], grads[0]);
    } finally {
      await Promise.all(collectives.map((c) => c.close()));
      await Promise.all(servers.map((s) => s.shutdown(100)));
    }
  });
});

describe('ReducePass: buckets leave while the backward pass runs', () => {
  /** A hook that records which bucket started when, around the float32 all-reduce. */
  function recording(started: number[]): typeof allReduceHook {
    return (values, ctx) => {
      started.push(ctx.bucket.index);
      return allReduceHook(values, ctx);
    };
  }

  it('starts each bucket once its parameters are final, in index order, the one with element 0 last of all', async () => {
    const { collectives } = createInMemoryCollectives('ring', 2, TUNING);
    const started = collectives.map(() => [] as number[]);
    const reducers = collectives.map(
      (c) =>
        new GradientReducer(c, {
          parameterSizes: SIZES,
          ...SMALL_BUCKETS,
          hook: recording(started[c.rank]),
          // Room for every bucket: none waits for another to finish.
          maxInFlight: 16,
        }),
    );
    const grads = collectives.map((c) => gradient(c.rank));
    const passes = reducers.map((reducer, r) => reducer.begin(grads[r], 1, 2));
    const [b0, b1] = reducers[0].buckets;
    // Bucket 1 completes first: it waits for bucket 0, then both leave in order.
    for (let p = b1.firstParameter; p < b1.endParameter; p++) passes[0].parameterReady(p);
    expect(started[0]).toEqual([]);
    for (let p = b0.firstParameter; p < b0.endParameter; p++) passes[0].parameterReady(p);
    expect(started[0]).toEqual([0, 1]);
    // Every parameter final: all but the bucket holding element 0 have left before finish().
    for (let p = b1.firstParameter - 1; p >= 0; p--) passes[0].parameterReady(p);
    for (let p = SIZES.length - 1; p >= 0; p--) passes[1].parameterReady(p);
    const last = reducers[0].buckets.length - 1;
    expect(reducers[0].buckets[last].start).toBe(0);
    for (const s of started)
      expect(s).toEqual(reducers[0].buckets.slice(0, last).map((b) => b.index));
    await Promise.all(passes.map((pass) => pass.finish(false)));
    for (const s of started) expect(s).toEqual(reducers[0].buckets.map((b) => b.index));

    // The same bits as the whole gradient reduced after the backward pass.
    const after = await reduceAll(createInMemoryCollectives('ring', 2, TUNING).collectives, [1, 1]);
    for (const g of grads) expectSameValues(g, after[0]);
  });

  it('poisons element 0 on every rank when a rank says its loss is not finite', async () => {
    const { collectives } = createInMemoryCollectives('ring', 2, TUNING);
    const grads = collectives.map((c) => gradient(c.rank));
    const results = await Promise.all(
      collectives.map((c, r) =>
        new GradientReducer(c, { parameterSizes: SIZES, ...SMALL_BUCKETS })
          .begin(grads[r], 1, 2)
          .finish(r === 1),
      ),
    );
    expect(results.map((r) => r.ownNonFinite)).toEqual([false, false]);
    for (const g of grads) expect(findNonFinite(g)).toBe(0);
  });
});
