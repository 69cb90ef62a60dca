import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { type ConvGeometry, convGeometry } from './conv-geometry.js';
import { simdKernels } from './simd-module.js';
import {
  callKernel,
  conv2d,
  heapAllF32,
  release,
  transpose,
  type WasmKernelArgs,
  wasmKernelConfig,
} from './wasm-kernel-calls.js';
import { winogradApplies, winogradFilterGrad } from './wasm-winograd.js';

/**
 * Conv2DBackpropFilter for wasm, which tfjs-backend-wasm 4.22 lacks. The gradient is
 *   dW[a,b,ci,co] = Σ_{n,oh,ow} x[n, oh·s+a−pt, ow·s+b−pl, ci] · dy[n,oh,ow,co].
 * 3×3 stride-1 filters go to Winograd (wasm-winograd.ts). Other filters with channel counts the
 * SIMD kernels take (ci % 4, co % 8) run one product per tap: the pixels of x that tap meets,
 * gathered into [P, ci], times dy [P, co] (gemm_tn_acc): exactly the forward pass's work, where
 * the convolution below costs 2–5× that on strided and 1×1 filters. The rest is a forward
 * convolution (XNNPACK) of x transposed to [ci, H, W, n] (ci images of n channels) with dy
 * transposed to [oH, oW, n, co] as the filter, the stride becoming the filter's dilation; the
 * k×k output is transposed back to [k, k, ci, co].
 */
function conv2DBackpropFilter(
  args: WasmKernelArgs<tf.Conv2DBackpropFilterInputs, tf.Conv2DBackpropFilterAttrs>,
): tf.TensorInfo {
  const { backend, attrs } = args;
  const x = args.inputs.x as tf.TensorInfo;
  const dy = args.inputs.dy as tf.TensorInfo;
  const g = convGeometry(x.shape, attrs.filterShape, attrs);
  if (winogradApplies(g.kh, g.kw, [g.sh, g.sw], g.inC, g.outC)) {
    return winogradFilterGrad(backend, x, dy, { top: g.pt, left: g.pl });
  }
  if (simdKernels() !== undefined && g.inC % 4 === 0 && g.outC % 8 === 0) {
    return perTapFilterGrad(backend, x, dy, g);
  }
  // Padding below/right that makes the output exactly k×k; negative means the last rows or
  // columns of x are never read (valid padding with a remainder), so they are cut off.
  const pb = g.kh + (g.outH - 1) * g.sh - g.inH - g.pt;
  const pr = g.kw + (g.outW - 1) * g.sw - g.inW - g.pl;
  let xUsed = x;
  if (pb < 0 || pr < 0) {
    const size = [g.n, g.inH + Math.min(pb, 0), g.inW + Math.min(pr, 0), g.inC];
    xUsed = callKernel(backend, tf.Slice, { x }, { begin: [0, 0, 0, 0], size });
  }
  const xT = transpose(backend, xUsed, [3, 1, 2, 0]);
  if (xUsed !== x) release(backend, xUsed);
  const dyT = transpose(backend, dy, [1, 2, 0, 3]);
  const pads: [number, number, number, number] = [g.pt, Math.max(pb, 0), g.pl, Math.max(pr, 0)];
  const grad = conv2d(backend, xT, dyT, [1, 1], [g.sh, g.sw], pads);
  release(backend, xT, dyT);
  const dw = transpose(backend, grad, [1, 2, 0, 3]);
  release(backend, grad);
  return dw;
}

/** One gathered product per filter tap, accumulated into dW's [ci, co] block for that tap. */
function perTapFilterGrad(
  backend: BackendWasm,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  g: ConvGeometry,
): tf.TensorInfo {
  const simd = simdKernels()!;
  const pixels = g.n * g.outH * g.outW;
  const block = g.inC * g.outC;
  const dw = backend.makeOutput([g.kh, g.kw, g.inC, g.outC], 'float32');
  const taps = backend.makeOutput([pixels, g.inC], 'float32');
  (backend.typedArrayFromHeap(dw) as Float32Array).fill(0);
  const offset = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
  for (let a = 0; a < g.kh; a++) {
    for (let b = 0; b < g.kw; b++) {
      gatherTap(backend, x, taps, g, a - g.pt, b - g.pl);
      const out = offset(dw) + (a * g.kw + b) * block * 4;
      simd.gemm_tn_acc(offset(taps), offset(dy), out, g.inC, g.outC, pixels);
    }
  }
  release(backend, taps);
  return dw;
}

/** taps[(n, oh, ow), :] = x[n, oh·sh + dr, ow·sw + dc, :], zero where that is outside x. */
function gatherTap(
  backend: BackendWasm,
  x: tf.TensorInfo,
  taps: tf.TensorInfo,
  g: ConvGeometry,
  dr: number,
  dc: number,
): void {
  const heap = heapAllF32(backend);
  const src = backend.dataIdMap.get(x.dataId)!.memoryOffset / 4;
  let dst = backend.dataIdMap.get(taps.dataId)!.memoryOffset / 4;
  const c = g.inC;
  for (let n = 0; n < g.n; n++) {
    for (let oh = 0; oh < g.outH; oh++) {
      const ih = oh * g.sh + dr;
      for (let ow = 0; ow < g.outW; ow++, dst += c) {
        const iw = ow * g.sw + dc;
        if (ih < 0 || ih >= g.inH || iw < 0 || iw >= g.inW) {
          heap.fill(0, dst, dst + c);
        } else {
          const from = src + ((n * g.inH + ih) * g.inW + iw) * c;
          heap.copyWithin(dst, from, from + c);
        }
      }
    }
  }
}

export const wasmConv2DBackpropFilterConfig = wasmKernelConfig(
  tf.Conv2DBackpropFilter,
  conv2DBackpropFilter,
);
