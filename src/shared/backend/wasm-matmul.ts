import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import {
  release,
  transpose,
  typedKernel,
  type WasmKernelArgs,
  wasmKernelConfig,
} from './wasm-kernel-calls.js';

/**
 * BatchMatMul for wasm that keeps transposed products on XNNPACK. The built-in kernel uses
 * XNNPACK's fully-connected operator only for a single matrix product without transposes and
 * falls back to naive loops otherwise, which is every matmul of a dense layer's backward pass
 * (dW = xᵀ·dy, dx = dy·Wᵀ): 10–20× slower. Transposing the operand first (a memory-bound
 * pass over a matrix that is small next to the product) and calling the built-in kernel without
 * transposes is exact, since only the data layout changes.
 */
export function wasmBatchMatMulConfig(builtinKernel: tf.KernelFunc): tf.KernelConfig {
  const builtin = typedKernel<tf.BatchMatMulInputs, tf.BatchMatMulAttrs>(builtinKernel);
  const kernelFunc = (
    args: WasmKernelArgs<tf.BatchMatMulInputs, tf.BatchMatMulAttrs>,
  ): tf.TensorInfo => {
    const { backend, attrs } = args;
    const a = args.inputs.a as tf.TensorInfo;
    const b = args.inputs.b as tf.TensorInfo;
    const single =
      a.shape.slice(0, -2).every((d) => d === 1) && b.shape.slice(0, -2).every((d) => d === 1);
    if (!single || !(attrs.transposeA || attrs.transposeB) || a.dtype !== 'float32') {
      return builtin(args);
    }
    const aPlain = attrs.transposeA ? swapLastTwo(backend, a) : a;
    const bPlain = attrs.transposeB ? swapLastTwo(backend, b) : b;
    const out = builtin({
      inputs: { a: aPlain, b: bPlain },
      backend,
      attrs: { transposeA: false, transposeB: false },
    });
    if (aPlain !== a) release(backend, aPlain);
    if (bPlain !== b) release(backend, bPlain);
    return out;
  };
  return wasmKernelConfig(tf.BatchMatMul, kernelFunc);
}

/** A rank-2 [r, c] copy of a (batch-1) matrix with its last two axes swapped. */
function swapLastTwo(backend: BackendWasm, m: tf.TensorInfo): tf.TensorInfo {
  const rows = m.shape[m.shape.length - 2];
  const cols = m.shape[m.shape.length - 1];
  const flat = { dataId: m.dataId, shape: [rows, cols], dtype: m.dtype };
  return transpose(backend, flat, [1, 0]);
}
