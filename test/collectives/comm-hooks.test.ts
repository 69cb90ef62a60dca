// The compressing communication hooks: PowerSGD against a plain reference written the way
// the paper states it (matrices as arrays of rows, PyTorch's orientation), fp16's scale, and
// both through real gRPC (ring and star), where every rank must end with the same bits.
import { afterEach, describe, expect, it } from 'vitest';
import { type Bucket, planBuckets } from '../../src/shared/collectives/bucket-plan.js';
import type { Collective } from '../../src/shared/collectives/collective.js';
import type { CommHook, CommHookState } from '../../src/shared/collectives/comm-hook.js';
import { createCommHook } from '../../src/shared/collectives/comm-hooks.js';
import { nextScale } from '../../src/shared/collectives/fp16-scaled-hook.js';
import { GradientReducer } from '../../src/shared/collectives/gradient-reducer.js';
import { createInMemoryCollectives } from '../../src/shared/collectives/in-memory-collectives.js';
import { findNonFinite } from '../../src/shared/collectives/non-finite.js';
import { ERROR_SUM_STATE } from '../../src/shared/collectives/power-sgd-hook.js';
import { expectSameValues, IMPLEMENTATIONS, type World } from './worlds.js';

// A conv kernel [kh, kw, in, out], its bias, a dense kernel [in, out], a matrix too small to
// compress at rank 2, and a depthwise kernel whose last dimension is 1.
const SHAPES = [[3, 3, 4, 8], [8], [20, 10], [2, 3], [3, 3, 5, 1]];
const SIZES = SHAPES.map((s) => s.reduce((a, b) => a * b, 1));
const TOTAL = SIZES.reduce((a, b) => a + b, 0);
const TUNING = { timeoutMs: 5000, chunkBytes: 256 };
const RANK = 2;

function gradient(rank: number, step: number): Float32Array {
  // A smooth part of rank 2 plus a part of full rank (i² mixes rows and columns).
  return Float32Array.from(
    { length: TOTAL },
    (_, i) => Math.sin(i * 0.7 + rank * 1.3 + step * 2.1) + Math.sin(i * i * 0.013 + rank + step),
  );
}

/** Runs each rank's hook over every bucket of the plan, as the reducer would. */
async function runHooks(
  collectives: Collective[],
  hooks: CommHook[],
  grads: Float32Array[],
  buckets: Bucket[],
) {
  await Promise.all(
    collectives.map((collective, r) =>
      Promise.all(
        buckets.map((bucket) =>
          hooks[r](grads[r].subarray(bucket.start, bucket.end), { collective, bucket }),
        ),
      ),
    ),
  );
}

// ---- The reference: PowerSGD on M = the weight as [out, rest], all ranks in one place. ----
type Matrix = number[][];
const zeros = (rows: number, cols: number): Matrix =>
  Array.from({ length: rows }, () => new Array(cols).fill(0));
const times = (a: Matrix, b: Matrix): Matrix =>
  a.map((row) => b[0].map((_, j) => row.reduce((s, v, k) => s + v * b[k][j], 0)));
const transpose = (a: Matrix): Matrix => a[0].map((_, j) => a.map((row) => row[j]));
const plus = (a: Matrix, b: Matrix): Matrix => a.map((row, i) => row.map((v, j) => v + b[i][j]));

function gramSchmidt(p: Matrix): Matrix {
  const cols = transpose(p);
  const out: number[][] = [];
  for (const col of cols) {
    let v = [...col];
    for (const u of out) {
      const dot = u.reduce((s, x, k) => s + x * v[k], 0);
      v = v.map((x, k) => x - dot * u[k]);
    }
    const norm = Math.hypot(...v);
    out.push(v.map((x) => x / norm));
  }
  return transpose(out);
}

/** tfjs layout (rows = all but the last dimension) → M = [last dimension, rest]. */
function toM(flat: Float32Array, shape: number[]): Matrix {
  const cols = shape[shape.length - 1];
  const rows = flat.length / cols;
  return Array.from({ length: cols }, (_, c) =>
    Array.from({ length: rows }, (_, x) => flat[x * cols + c]),
  );
}

/** One reference step for one matrix: the ranks' M (error already added) → the sum's approximation, the new errors. */
function referenceStep(ms: Matrix[], q: Matrix): { approx: Matrix; errors: Matrix[]; q: Matrix } {
  const p = gramSchmidt(ms.map((m) => times(m, q)).reduce(plus));
  const qSum = ms.map((m) => times(transpose(m), p)).reduce(plus);
  const approx = times(p, transpose(qSum));
  const errors = ms.map((m) => m.map((row, i) => row.map((v, j) => v - approx[i][j] / ms.length)));
  return { approx, errors, q: qSum };
}

function maxDifference(a: Matrix, b: Matrix): number {
  return Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i][j]))));
}

describe('PowerSGD hook', () => {
  it('computes what the reference computes, step after step (warm start, error feedback)', async () => {
    const n = 2;
    const { collectives } = createInMemoryCollectives('ring', n, TUNING);
    const hooks = collectives.map(() => createCommHook(`powersgd:${RANK}`, SHAPES));
    const buckets = planBuckets(SIZES, 4, 4); // one bucket per parameter
    // The reference for the dense kernel [20, 10]: its Q starts where the hook's does.
    const dense = 2;
    const offset = SIZES.slice(0, dense).reduce((a, b) => a + b, 0);
    const slice = (g: Float32Array) => g.subarray(offset, offset + SIZES[dense]);
    let errors: Matrix[] = [zeros(10, 20), zeros(10, 20)];
    let q: Matrix | undefined;
    for (let step = 0; step < 3; step++) {
      const grads = collectives.map((_, r) => gradient(r, step));
      const ms = grads.map((g, r) => plus(toM(slice(g), SHAPES[dense]), errors[r]));
      // The hook's initial Q, read from its state (every rank exports: it all-reduces).
      q ??= (
        await Promise.all(hooks.map((h, r) => initialQ(h.state as CommHookState, collectives[r])))
      )[0];
      const reference = referenceStep(ms, q);
      await runHooks(
        collectives,
        hooks.map((h) => h.hook),
        grads,
        buckets,
      );
      for (const g of grads)
        expect(maxDifference(toM(slice(g), SHAPES[dense]), reference.approx)).toBeLessThan(1e-5);
      errors = reference.errors;
      q = reference.q;
      // Vectors, the small matrix and the depthwise kernel go whole: the exact sum.
      for (const p of [1, 3, 4]) {
        const start = SIZES.slice(0, p).reduce((a, b) => a + b, 0);
        for (let i = start; i < start + SIZES[p]; i++) {
          const exact = gradient(0, step)[i] + gradient(1, step)[i];
          expect(Math.abs(grads[0][i] - exact)).toBeLessThan(1e-6);
        }
      }
    }
    await Promise.all(collectives.map((c) => c.close()));
  });

  it('is exact at full rank: nothing is left in the error feedback', async () => {
    const { collectives } = createInMemoryCollectives('ring', 1, TUNING);
    const { hook, state } = createCommHook('powersgd:3', [[60, 40]]);
    // A rank-3 matrix [60, 40]: the rank-3 approximation is the matrix itself.
    const g = new Float32Array(2400);
    for (let x = 0; x < 60; x++)
      for (let c = 0; c < 40; c++)
        g[x * 40 + c] = Math.sin(x) * Math.cos(c) + (x % 3) * (c % 5) - Math.cos(2 * x) * c;
    const original = g.slice();
    const [bucket] = planBuckets([2400]);
    await hook(g, { collective: collectives[0], bucket });
    const worst = Math.max(...g.map((v, i) => Math.abs(v - original[i])));
    expect(worst).toBeLessThan(1e-3);
    const saved = await (state as CommHookState).exportState(collectives[0]);
    expect(Math.max(...saved[ERROR_SUM_STATE].map(Math.abs))).toBeLessThan(1e-3);
    await collectives[0].close();
  });

  it('resumes from its checkpointed state with another number of ranks and continues the same run', async () => {
    const buckets = planBuckets(SIZES, 64, 1024);
    const two = createInMemoryCollectives('star', 2, TUNING).collectives;
    const three = createInMemoryCollectives('star', 3, TUNING).collectives;
    const runOf = (collectives: Collective[]) =>
      collectives.map(() => createCommHook('powersgd:2', SHAPES));
    const steady = runOf(two);
    // Steps 0 and 1 on 2 ranks, then the state is checkpointed.
    for (let step = 0; step < 2; step++) {
      await runHooks(
        two,
        steady.map((h) => h.hook),
        two.map((_, r) => gradient(r, step)),
        buckets,
      );
    }
    const saved = await Promise.all(
      two.map((c, r) => (steady[r].state as CommHookState).exportState(c)),
    );
    for (const s of saved)
      expect(Object.keys(s).sort()).toEqual(['powersgd/error-sum', 'powersgd/q']);
    expectSameValues(saved[1][ERROR_SUM_STATE], saved[0][ERROR_SUM_STATE]);
    // Step 2 goes on with 2 ranks, and from the checkpoint on 3 ranks whose gradients have the same sum.
    const continued = two.map((_, r) => gradient(r, 2));
    await runHooks(
      two,
      steady.map((h) => h.hook),
      continued,
      buckets,
    );
    const resumed = runOf(three);
    for (const h of resumed) h.state?.importState(saved[0], 1 / 3);
    const grads = [gradient(0, 2), gradient(1, 2), new Float32Array(TOTAL)];
    await runHooks(
      three,
      resumed.map((h) => h.hook),
      grads,
      buckets,
    );
    for (const g of grads) expectSameValues(g, grads[0]);
    const worst = Math.max(...grads[0].map((v, i) => Math.abs(v - continued[0][i])));
    expect(worst).toBeLessThan(1e-5);
    // A fresh hook (no checkpoint) would not continue the same run.
    const fresh = runOf(three);
    const again = [gradient(0, 2), gradient(1, 2), new Float32Array(TOTAL)];
    await runHooks(
      three,
      fresh.map((h) => h.hook),
      again,
      buckets,
    );
    expect(Math.max(...again[0].map((v, i) => Math.abs(v - continued[0][i])))).toBeGreaterThan(
      1e-2,
    );
    await Promise.all([...two, ...three].map((c) => c.close()));
  });
});

/** The hook's initial Q for the dense kernel, from its exported state. */
async function initialQ(state: CommHookState, collective: Collective): Promise<Matrix> {
  const saved = await state.exportState(collective);
  const q = saved['powersgd/q'];
  // The conv kernel [3,3,4,8] comes first: R = 36 rows of rank 2.
  const start = 36 * RANK;
  return Array.from({ length: 20 }, (_, x) => [q[start + x * RANK], q[start + x * RANK + 1]]);
}

describe('fp16 scale', () => {
  it('puts N × the largest summed value at or under 2^12, falls back after an overflow', () => {
    expect(nextScale(1, false, 1e-3, 2)).toBe(2 ** 20); // 1e-3·2·2^20 ≈ 2097 ≤ 4096 < 4194
    expect(nextScale(2 ** 20, false, 2 ** 20 * 1e-3, 2)).toBe(2 ** 20);
    expect(nextScale(1024, true, 0, 2)).toBe(1);
    expect(nextScale(1, true, 0, 2)).toBe(2 ** -8);
    expect(nextScale(8, false, 0, 2)).toBe(8);
  });
});

describe.each(IMPLEMENTATIONS.filter((i) => i.grpc))('compressed buckets over $name', (impl) => {
  let world: World | undefined;
  afterEach(async () => {
    await world?.close();
    world = undefined;
  });

  it.each(['fp16', 'powersgd:2'] as const)(
    '%s: every rank ends each step with the same bits',
    async (compression) => {
      const n = 3;
      world = await impl.create(n, TUNING);
      const collectives = world.collectives;
      const hooks = collectives.map(() => createCommHook(compression, SHAPES).hook);
      const reducers = collectives.map(
        (c, r) =>
          new GradientReducer(c, {
            parameterSizes: SIZES,
            firstBucketBytes: 400,
            bucketBytes: 1200,
            hook: hooks[r],
          }),
      );
      for (let step = 0; step < 4; step++) {
        // Small gradients: fp16 without its scale would lose most of their bits.
        const grads = collectives.map((_, r) => gradient(r, step).map((v) => v * 1e-5));
        const exact = new Float64Array(TOTAL);
        for (const g of grads)
          g.forEach((v, i) => {
            exact[i] += v / n;
          });
        await Promise.all(reducers.map((reducer, r) => reducer.reduce(grads[r], 1, n)));
        for (const g of grads) expectSameValues(g, grads[0]);
        expect(findNonFinite(grads[0])).toBe(-1);
        if (compression === 'fp16' && step > 0) {
          // From the second step the scale fits the values: fp16's 11 bits, not its flush to zero.
          let worst = 0;
          exact.forEach((e, i) => {
            worst = Math.max(worst, Math.abs(grads[0][i] - e) / 1e-5);
          });
          expect(worst).toBeLessThan(3 * 2 ** -11);
        }
      }
    },
  );

  it('fp16: an overflow reaches every rank as infinity, and the next steps recover', async () => {
    world = await impl.create(2, TUNING);
    const collectives = world.collectives;
    const hooks = collectives.map(() => createCommHook('fp16', SHAPES).hook);
    const reducers = collectives.map(
      (c, r) => new GradientReducer(c, { parameterSizes: SIZES, hook: hooks[r] }),
    );
    const step = async (magnitude: number) => {
      const grads = collectives.map((_, r) => gradient(r, 0).map((v) => v * magnitude));
      await Promise.all(reducers.map((reducer, r) => reducer.reduce(grads[r], 1, 2)));
      return grads;
    };
    await step(1e-4); // the scale grows to fit 1e-4
    const overflow = await step(1);
    for (const g of overflow) expect(findNonFinite(g)).toBeGreaterThanOrEqual(0);
    // The scale falls back to 1, which fits, and then fits the values it sees.
    await step(1);
    const recovered = await step(1);
    expect(findNonFinite(recovered[0])).toBe(-1);
    expectSameValues(recovered[1], recovered[0]);
  });
});
