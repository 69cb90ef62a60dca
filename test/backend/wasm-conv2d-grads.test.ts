import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/shared/backend/select-backend.js';

// The wasm convolution kernels (both gradients, and the forward pass where it goes through
// Winograd), checked against the cpu backend's reference kernels on random data over strides
// 1–4 (equal and not), same/valid padding, kernels 1–11, odd and even, square and non-square
// sizes, batch 1 and more, and channel counts below and above the Winograd threshold (16).

type Pad = 'same' | 'valid';
interface Case {
  batch: number;
  h: number;
  w: number;
  inC: number;
  outC: number;
  kh: number;
  kw: number;
  stride: [number, number];
  pad: Pad;
}

function cases(): Case[] {
  const out: Case[] = [];
  const kernels = [1, 2, 3, 4, 5, 7, 11];
  let i = 0;
  for (const s of [1, 2, 3, 4]) {
    for (const pad of ['same', 'valid'] as const) {
      for (const k of kernels) {
        i++;
        const kw = k === 4 ? 3 : k; // one non-square kernel per stride
        const h = k + 2 * s + (i % 3); // odd and even sizes, remainders after the stride
        out.push({
          batch: 1 + (i % 3),
          h,
          w: h + 1 + (i % 2),
          inC: [1, 3, 4, 6][i % 4],
          outC: [2, 5, 8][i % 3],
          kh: k,
          kw,
          stride: i % 5 === 0 && s > 1 ? [s, s - 1] : [s, s],
          pad,
        });
      }
    }
  }
  // 3×3 stride 1 with ≥ 16 channels, multiples of 4: the Winograd path, forward and backward.
  for (const [h, w, inC, outC, batch, pad] of [
    [8, 8, 16, 16, 2, 'same'],
    [7, 9, 20, 32, 3, 'same'],
    [9, 6, 32, 16, 1, 'valid'],
    [5, 5, 16, 24, 2, 'valid'],
    [3, 3, 64, 64, 1, 'same'],
    [6, 7, 16, 20, 2, 'same'],
  ] as const) {
    out.push({ batch, h, w, inC, outC, kh: 3, kw: 3, stride: [1, 1], pad });
  }
  return out;
}

/** Deterministic uniform values in [-1, 1). */
function randomValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = (state >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

function relativeError(actual: Float32Array, expected: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

interface Grads {
  y: Float32Array;
  dx: Float32Array;
  dw: Float32Array;
}

function grads(c: Case, seed: number): Grads {
  return tf.tidy(() => {
    const xShape: [number, number, number, number] = [c.batch, c.h, c.w, c.inC];
    const wShape: [number, number, number, number] = [c.kh, c.kw, c.inC, c.outC];
    const x = tf.tensor4d(randomValues(c.batch * c.h * c.w * c.inC, seed), xShape);
    const w = tf.tensor4d(randomValues(c.kh * c.kw * c.inC * c.outC, seed + 1), wShape);
    const bias = tf.tensor1d(randomValues(c.outC, seed + 3));
    // Fused with a bias and ReLU: the forward kernel a Conv2D layer runs.
    const y = tf.fused.conv2d({
      x,
      filter: w,
      strides: c.stride,
      pad: c.pad,
      bias,
      activation: 'relu',
    });
    const dy = tf.tensor(randomValues(y.size, seed + 2), y.shape);
    const attrs = { strides: c.stride, pad: c.pad, dataFormat: 'NHWC' };
    const dx = tf
      .engine()
      .runKernel(
        tf.Conv2DBackpropInput,
        { dy, filter: w },
        { ...attrs, inputShape: xShape },
      ) as tf.Tensor;
    const dw = tf
      .engine()
      .runKernel(
        tf.Conv2DBackpropFilter,
        { x, dy },
        { ...attrs, filterShape: wShape },
      ) as tf.Tensor;
    return {
      y: y.dataSync() as Float32Array,
      dx: dx.dataSync() as Float32Array,
      dw: dw.dataSync() as Float32Array,
    };
  });
}

describe('wasm FusedConv2D / Conv2DBackpropFilter / Conv2DBackpropInput', () => {
  const all = cases();
  const reference: Grads[] = [];

  beforeAll(async () => {
    await initBackend('cpu');
    all.forEach((c, i) => {
      reference.push(grads(c, 100 * i + 7));
    });
    await initBackend('wasm');
  });

  it('match the cpu backend to a relative error under 1e-5 on every case', () => {
    const before = tf.memory().numTensors;
    const failures: string[] = [];
    all.forEach((c, i) => {
      const got = grads(c, 100 * i + 7);
      const errors = (['y', 'dx', 'dw'] as const).map((k) =>
        relativeError(got[k], reference[i][k]),
      );
      if (!errors.every((e) => e < 1e-5)) {
        failures.push(`${JSON.stringify(c)}: y, dx, dw ${errors.map((e) => e.toExponential(2))}`);
      }
    });
    expect(failures).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('serve tf.grads of conv2d (the path a layer takes) without leaking', () => {
    const x = tf.tensor4d(randomValues(2 * 9 * 9 * 3, 1), [2, 9, 9, 3]);
    const w = tf.tensor4d(randomValues(3 * 3 * 3 * 4, 2), [3, 3, 3, 4]);
    const before = tf.memory().numTensors;
    const [dx, dw] = tf.grads((a, b) =>
      tf.sum(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 2, 'same')),
    )([x, w]);
    expect(dx.shape).toEqual([2, 9, 9, 3]);
    expect(dw.shape).toEqual([3, 3, 3, 4]);
    // d(Σ y)/dW[a,b,ci,co] sums the x values that tap (a,b) meets, whatever co is.
    const perOut = tf.tidy(() => tf.sub(tf.max(dw, 3), tf.min(dw, 3)));
    expect(Math.max(...perOut.dataSync())).toBeLessThan(1e-5);
    perOut.dispose();
    tf.dispose([dx, dw]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([x, w]);
  });
});
