import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { simdKernels } from './simd-module.js';
import {
  heapF32,
  typedKernel,
  type WasmKernelArgs,
  wasmKernelConfig,
} from './wasm-kernel-calls.js';

/**
 * Sum and Mean for wasm over leading axes (e.g. [N, H, W] of an NHWC tensor, per channel: every
 * BatchNorm statistic and gradient, every bias gradient). The built-in kernels first transpose the
 * whole tensor so that the reduced axes come last, then reduce: two passes, the transpose a
 * cache-hostile one. Here one sequential pass adds rows into per-column sums: SIMD (column_sum
 * in winograd-wat.ts, rows folded together when the column count is not a multiple of 4), else
 * a JS loop in float64.
 * Other reductions go to the built-in kernels.
 */
export function wasmReduceConfigs(builtin: {
  sum: tf.KernelFunc;
  mean: tf.KernelFunc;
}): tf.KernelConfig[] {
  const make = (kernelName: string, mean: boolean, builtinKernel: tf.KernelFunc) => {
    const fallback = typedKernel<tf.SumInputs, tf.SumAttrs>(builtinKernel);
    return wasmKernelConfig(kernelName, (args: WasmKernelArgs<tf.SumInputs, tf.SumAttrs>) => {
      const x = args.inputs.x as tf.TensorInfo;
      const lead = leadingAxesCount(x.shape, args.attrs.axis);
      if (x.dtype !== 'float32' || lead === 0) return fallback(args);
      return reduceLeading(args.backend, x, lead, mean, args.attrs.keepDims === true);
    });
  };
  return [make(tf.Sum, false, builtin.sum), make(tf.Mean, true, builtin.mean)];
}

/** k when `axis` is exactly the axes 0…k−1 with 0 < k < rank, else 0. */
function leadingAxesCount(shape: number[], axis: number | number[]): number {
  const axes = tf.util.parseAxisParam(axis, shape);
  const sorted = [...new Set(axes)].sort((a, b) => a - b);
  const k = sorted.length;
  const isPrefix = sorted.every((a, i) => a === i);
  return isPrefix && k < shape.length ? k : 0;
}

function reduceLeading(
  backend: BackendWasm,
  x: tf.TensorInfo,
  lead: number,
  mean: boolean,
  keepDims: boolean,
): tf.TensorInfo {
  const rows = x.shape.slice(0, lead).reduce((a, b) => a * b, 1);
  const cols = x.shape.slice(lead).reduce((a, b) => a * b, 1);
  const outShape = keepDims
    ? [...x.shape.slice(0, lead).map(() => 1), ...x.shape.slice(lead)]
    : x.shape.slice(lead);
  const out = backend.makeOutput(outShape, 'float32');
  // SIMD sums need a multiple of 4 columns: fold m rows into one ([R/m, m·cols]) and add the m
  // partial sums of each column afterwards.
  const simd = simdKernels();
  const fold = 4 / gcd(cols, 4);
  if (simd !== undefined && rows % fold === 0) {
    const wide = backend.makeOutput([fold * cols], 'float32');
    const offset = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    simd.column_sum(offset(x), offset(wide), rows / fold, fold * cols);
    const partial = heapF32(backend, wide);
    const dst = heapF32(backend, out);
    const scale = mean ? 1 / rows : 1;
    for (let c = 0; c < cols; c++) {
      let total = 0;
      for (let i = 0; i < fold; i++) total += partial[i * cols + c];
      dst[c] = total * scale;
    }
    backend.disposeData(wide.dataId);
    return out;
  }
  const src = heapF32(backend, x);
  const acc = new Float64Array(cols);
  for (let r = 0, base = 0; r < rows; r++, base += cols) {
    for (let c = 0; c < cols; c++) acc[c] += src[base + c];
  }
  const scale = mean ? 1 / rows : 1;
  const dst = heapF32(backend, out);
  for (let c = 0; c < cols; c++) dst[c] = acc[c] * scale;
  return out;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
