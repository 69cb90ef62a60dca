// PowerSGD's SIMD kernels against plain float64 loops (the JavaScript the kernels replaced,
// kept here as the reference), on shapes whose columns are not a multiple of 4, single rows and
// ranks 1 to 8; and bit-identical results from two fresh instances, kernels and hook alike.
import { describe, expect, it } from 'vitest';
import { planBuckets } from '../../src/shared/collectives/bucket-plan.js';
import type { CommHookState } from '../../src/shared/collectives/comm-hook.js';
import { createCommHook } from '../../src/shared/collectives/comm-hooks.js';
import { createInMemoryCollectives } from '../../src/shared/collectives/in-memory-collectives.js';
import {
  createPowerSgdKernels,
  type PowerSgdKernels,
} from '../../src/shared/collectives/wasm-power-sgd.js';
import { expectSameValues } from './worlds.js';

/** [rows, cols, rank]: odd columns (tails of 1–3 values, fewer than 4 in all), one row, ranks 1–8. */
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 3],
  [5, 1, 2],
  [3, 2, 8],
  [9, 3, 1],
  [17, 5, 4],
  [33, 13, 5],
  [64, 64, 4],
  [100, 37, 7],
  [1, 130, 8],
  [250, 9, 6],
  [576, 64, 2],
];

/** Deterministic values in (−1, 1) (a linear congruential generator). */
function randomValues(length: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 31 - 1;
  });
}

/** Expects `actual` within 1e-5 of float64 `expected`, relative to the sum of |terms| (`scale`). */
function expectClose(actual: Float32Array, expected: Float64Array, scale: Float64Array): void {
  const i = expected.findIndex((e, k) => !(Math.abs(actual[k] - e) <= 1e-5 * scale[k] + 1e-30));
  expect(i, `value ${i}: ${actual[i]}, expected ${expected[i]} (scale ${scale[i]})`).toBe(-1);
}

// ---- The reference: float64 loops on the layouts of the kernels (Pᵀ is r×C, Q is R×r). ----

/** Pᵀ[j, c] = Σ_x A[x, c]·Q[x, j], and Σ_x |A[x, c]·Q[x, j]|. */
function projectColumns(
  a: Float32Array,
  rows: number,
  cols: number,
  q: Float32Array,
  rank: number,
) {
  const pt = new Float64Array(rank * cols);
  const scale = new Float64Array(rank * cols);
  for (let x = 0; x < rows; x++)
    for (let j = 0; j < rank; j++)
      for (let c = 0; c < cols; c++) {
        const term = a[x * cols + c] * q[x * rank + j];
        pt[j * cols + c] += term;
        scale[j * cols + c] += Math.abs(term);
      }
  return { pt, scale };
}

/** Q[x, j] = Σ_c A[x, c]·Pᵀ[j, c], and Σ_c |A[x, c]·Pᵀ[j, c]|. */
function projectRows(a: Float32Array, rows: number, cols: number, pt: Float32Array, rank: number) {
  const q = new Float64Array(rows * rank);
  const scale = new Float64Array(rows * rank);
  for (let x = 0; x < rows; x++)
    for (let j = 0; j < rank; j++)
      for (let c = 0; c < cols; c++) {
        const term = a[x * cols + c] * pt[j * cols + c];
        q[x * rank + j] += term;
        scale[x * rank + j] += Math.abs(term);
      }
  return { q, scale };
}

/** A = Q·Pᵀ, error = M − A/n (M: what A held), and the scales of both. */
function expandError(
  q: Float32Array,
  pt: Float32Array,
  rows: number,
  cols: number,
  rank: number,
  m: Float32Array,
  n: number,
) {
  const a = new Float64Array(rows * cols);
  const aScale = new Float64Array(rows * cols);
  for (let x = 0; x < rows; x++)
    for (let c = 0; c < cols; c++)
      for (let j = 0; j < rank; j++) {
        const term = q[x * rank + j] * pt[j * cols + c];
        a[x * cols + c] += term;
        aScale[x * cols + c] += Math.abs(term);
      }
  const error = a.map((v, i) => m[i] - v / n);
  const errorScale = aScale.map((s, i) => Math.abs(m[i]) + s / n);
  return { a, aScale, error, errorScale };
}

/** Runs every kernel once on the shape's random operands; returns what each produced. */
function runKernels(
  kernels: PowerSgdKernels,
  rows: number,
  cols: number,
  rank: number,
  seed: number,
) {
  const size = rows * cols;
  // Workspace: A, then Q, then Pᵀ; an offset of 1 value so that the vectors are not 16-byte aligned.
  const aAt = 1;
  const qAt = aAt + size;
  const ptAt = qAt + rows * rank;
  kernels.reserve(ptAt + rank * cols);
  const a = randomValues(size, seed);
  const q = randomValues(rows * rank, seed + 1);
  const error = randomValues(size, seed + 2);
  kernels.workspace(aAt, size).set(a);
  kernels.workspace(qAt, rows * rank).set(q);
  kernels.errors(0, size).set(error);

  kernels.addErrors(aAt, 0, size);
  const m = kernels.workspace(aAt, size).slice();
  kernels.projectColumns(aAt, rows, cols, qAt, rank, ptAt);
  const pt = kernels.workspace(ptAt, rank * cols).slice();
  kernels.projectRows(aAt, rows, cols, ptAt, rank, qAt);
  const qNew = kernels.workspace(qAt, rows * rank).slice();
  kernels.expandError(qAt, ptAt, rows, cols, rank, aAt, 0, 3);
  const expanded = kernels.workspace(aAt, size).slice();
  const newError = kernels.errors(0, size).slice();
  return { a, q, error, m, pt, qNew, expanded, newError };
}

describe('PowerSGD SIMD kernels against float64 loops', () => {
  for (const [rows, cols, rank] of SHAPES) {
    it(`A ${rows}×${cols}, rank ${rank}`, async () => {
      const kernels = await createPowerSgdKernels(rows * cols);
      const run = runKernels(kernels, rows, cols, rank, rows * 1000 + cols * 10 + rank);

      const sum = Float64Array.from(run.a, (v, i) => v + run.error[i]);
      expectClose(run.m, sum, Float64Array.from(sum, Math.abs));
      const columns = projectColumns(run.m, rows, cols, run.q, rank);
      expectClose(run.pt, columns.pt, columns.scale);
      const rowsRef = projectRows(run.m, rows, cols, run.pt, rank);
      expectClose(run.qNew, rowsRef.q, rowsRef.scale);
      const expanded = expandError(run.qNew, run.pt, rows, cols, rank, run.m, 3);
      expectClose(run.expanded, expanded.a, expanded.aScale);
      expectClose(run.newError, expanded.error, expanded.errorScale);
    });
  }

  it('gives the same bits in two fresh instances', async () => {
    for (const [rows, cols, rank] of SHAPES) {
      const [one, two] = await Promise.all([
        createPowerSgdKernels(rows * cols),
        createPowerSgdKernels(rows * cols),
      ]);
      const a = runKernels(one, rows, cols, rank, 7);
      const b = runKernels(two, rows, cols, rank, 7);
      for (const key of ['m', 'pt', 'qNew', 'expanded', 'newError'] as const) {
        expectSameValues(a[key], b[key]);
      }
    }
  });
});

describe('PowerSGD hook on the kernels', () => {
  // Conv kernels with odd channel counts, a bias, a dense kernel.
  const shapes = [[3, 3, 5, 7], [7], [3, 3, 7, 13], [13], [52, 10]];
  const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const total = sizes.reduce((a, b) => a + b, 0);

  /** Three steps of a fresh hook of rank 3 in a world of one: the results and the state. */
  async function threeSteps() {
    const { collectives } = createInMemoryCollectives('ring', 1, {
      timeoutMs: 5000,
      chunkBytes: 1024,
    });
    const { hook, state } = createCommHook('powersgd:3', shapes);
    const outputs: Float32Array[] = [];
    for (let step = 0; step < 3; step++) {
      const gradient = randomValues(total, 100 + step);
      for (const bucket of planBuckets(sizes, 600, 1200)) {
        await hook(gradient.subarray(bucket.start, bucket.end), {
          collective: collectives[0],
          bucket,
        });
      }
      outputs.push(gradient);
    }
    const saved = await (state as CommHookState).exportState(collectives[0]);
    await collectives[0].close();
    return { outputs, saved };
  }

  it('gives the same bits in two fresh hooks, step after step', async () => {
    const [one, two] = await Promise.all([threeSteps(), threeSteps()]);
    for (const [step, output] of one.outputs.entries()) expectSameValues(two.outputs[step], output);
    for (const key of Object.keys(one.saved)) expectSameValues(two.saved[key], one.saved[key]);
  });
});
