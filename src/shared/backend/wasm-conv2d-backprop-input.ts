import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { type ConvGeometry, convGeometry } from './conv-geometry.js';
import {
  conv2d,
  heapAllF32,
  release,
  transpose,
  typedKernel,
  type WasmKernelArgs,
  type WasmKernelFunc,
  wasmKernelConfig,
} from './wasm-kernel-calls.js';
import { winogradApplies, winogradConv } from './wasm-winograd.js';

/**
 * Conv2DBackpropInput for wasm on the backend's fast forward convolutions, replacing its naive
 * built-in kernel (60% of a ResNet-18 step).
 *
 * With ih + pt = q·s + r (0 ≤ r < s), dx[ih] = Σ_j dy[q − j] · W[r + j·s]: each phase r of the
 * input rows (and likewise columns) is a stride-1 convolution of dy with the taps W[r], W[r+s], …
 * in reverse order, channels swapped. Each phase runs as its own convolution (so stride 2 costs
 * exactly what the forward pass costs, where zero-upsampling dy would cost 4×) and its output
 * is copied into every s-th row and column of dx. For s = 1 there is one phase, the usual
 * convolution with the flipped filter, done by Winograd when it is 3×3.
 */
type BackpropInputArgs = WasmKernelArgs<tf.Conv2DBackpropInputInputs, tf.Conv2DBackpropInputAttrs>;

function conv2DBackpropInput(args: BackpropInputArgs): tf.TensorInfo {
  const { backend, attrs } = args;
  const dy = args.inputs.dy as tf.TensorInfo;
  const filter = args.inputs.filter as tf.TensorInfo;
  const g = convGeometry(attrs.inputShape, filter.shape, attrs);
  const rows = phaseRange(g.pt, g.inH, g.sh, g.outH);
  const cols = phaseRange(g.pl, g.inW, g.sw, g.outW);
  const phasesH = Math.min(g.sh, g.kh);
  const phasesW = Math.min(g.sw, g.kw);
  // Phase r has ⌈(k − r)/s⌉ taps, fewest for the last r; its paddings must not be negative.
  const paddable =
    Math.ceil((g.kh - phasesH + 1) / g.sh) - 1 >= rows.first &&
    Math.ceil((g.kw - phasesW + 1) / g.sw) - 1 >= cols.first &&
    rows.after >= 0 &&
    cols.after >= 0;
  if (!paddable) return fallback(args);

  const swapped = transpose(backend, filter, [0, 1, 3, 2]); // [kh, kw, co, ci]
  if (g.sh === 1 && g.sw === 1) {
    const flipped = phaseFilter(backend, swapped, g, 0, 0);
    release(backend, swapped);
    const dx = phaseConv(backend, dy, flipped, g, rows, cols, g.inH, g.inW);
    release(backend, flipped);
    return dx;
  }
  const dx = backend.makeOutput(attrs.inputShape, 'float32');
  if (phasesH < g.sh || phasesW < g.sw) {
    // Phases with no taps (stride > kernel) receive no gradient.
    (backend.typedArrayFromHeap(dx) as Float32Array).fill(0);
  }
  for (let rh = 0; rh < phasesH; rh++) {
    for (let rw = 0; rw < phasesW; rw++) {
      const taps = phaseFilter(backend, swapped, g, rh, rw);
      const z = phaseConv(backend, dy, taps, g, rows, cols, rows.count, cols.count);
      release(backend, taps);
      scatterPhase(backend, z, dx, g, rows.first * g.sh + rh - g.pt, cols.first * g.sw + rw - g.pl);
      release(backend, z);
    }
  }
  release(backend, swapped);
  return dx;
}

interface PhaseRange {
  /** First q (of ih + pt = q·s + r) that an input row falls in. */
  first: number;
  /** How many q the input rows span. */
  count: number;
  /** Padding after dy that the phase convolutions need (count − outH + first). */
  after: number;
}

function phaseRange(pad: number, inSize: number, stride: number, outSize: number): PhaseRange {
  const first = Math.floor(pad / stride);
  const count = Math.floor((inSize - 1 + pad) / stride) - first + 1;
  return { first, count, after: count - outSize + first };
}

/** The taps of phase (rh, rw), reversed: [J, J', co, ci] from the swapped filter [kh, kw, co, ci]. */
function phaseFilter(
  backend: BackendWasm,
  swapped: tf.TensorInfo,
  g: ConvGeometry,
  rh: number,
  rw: number,
): tf.TensorInfo {
  const jh = Math.ceil((g.kh - rh) / g.sh);
  const jw = Math.ceil((g.kw - rw) / g.sw);
  const block = g.inC * g.outC;
  const out = backend.makeOutput([jh, jw, g.outC, g.inC], 'float32');
  const heap = heapAllF32(backend);
  const src = offsetOf(backend, swapped);
  const dst = offsetOf(backend, out);
  for (let t = 0; t < jh; t++) {
    for (let u = 0; u < jw; u++) {
      const tap = (rh + (jh - 1 - t) * g.sh) * g.kw + rw + (jw - 1 - u) * g.sw;
      heap.copyWithin(dst + (t * jw + u) * block, src + tap * block, src + (tap + 1) * block);
    }
  }
  return out;
}

/** One phase's stride-1 convolution of dy, giving `outH`×`outW` rows and columns of q. */
function phaseConv(
  backend: BackendWasm,
  dy: tf.TensorInfo,
  taps: tf.TensorInfo,
  g: ConvGeometry,
  rows: PhaseRange,
  cols: PhaseRange,
  outH: number,
  outW: number,
): tf.TensorInfo {
  const [jh, jw] = taps.shape;
  const top = jh - 1 - rows.first;
  const left = jw - 1 - cols.first;
  if (winogradApplies(jh, jw, [1, 1], g.outC, g.inC)) {
    return winogradConv(backend, dy, taps, { top, left, outH, outW });
  }
  return conv2d(backend, dy, taps, [1, 1], [1, 1], [top, rows.after, left, cols.after]);
}

/** Copies phase z [n, Q, P, ci] to dx rows top + q·sh and columns left + p·sw (those inside). */
function scatterPhase(
  backend: BackendWasm,
  z: tf.TensorInfo,
  dx: tf.TensorInfo,
  g: ConvGeometry,
  top: number,
  left: number,
): void {
  const [, qRows, qCols, c] = z.shape;
  const heap = heapAllF32(backend);
  const src = offsetOf(backend, z);
  const dst = offsetOf(backend, dx);
  for (let n = 0; n < g.n; n++) {
    for (let q = 0; q < qRows; q++) {
      const ih = top + q * g.sh;
      if (ih < 0 || ih >= g.inH) continue;
      for (let p = 0; p < qCols; p++) {
        const iw = left + p * g.sw;
        if (iw < 0 || iw >= g.inW) continue;
        const from = src + ((n * qRows + q) * qCols + p) * c;
        heap.copyWithin(dst + ((n * g.inH + ih) * g.inW + iw) * c, from, from + c);
      }
    }
  }
}

/** A tensor's position in HEAPF32 (in floats). */
function offsetOf(backend: BackendWasm, info: tf.TensorInfo): number {
  return backend.dataIdMap.get(info.dataId)!.memoryOffset / 4;
}

let builtin: WasmKernelFunc<tf.Conv2DBackpropInputInputs, tf.Conv2DBackpropInputAttrs> | undefined;

/** Explicit paddings of a kernel size or more: the built-in kernel, which handles anything. */
function fallback(args: BackpropInputArgs): tf.TensorInfo {
  if (builtin === undefined) throw new Error('no Conv2DBackpropInput kernel for this padding');
  return builtin(args);
}

/** The kernel config; `builtinKernel` (the backend's own) serves paddings this cannot. */
export function wasmConv2DBackpropInputConfig(builtinKernel: tf.KernelFunc): tf.KernelConfig {
  builtin = typedKernel(builtinKernel);
  return wasmKernelConfig(tf.Conv2DBackpropInput, conv2DBackpropInput);
}
