import * as tf from '@tensorflow/tfjs-core';
import { simdKernels } from './simd-module.js';
import { typedKernel, type WasmKernelArgs, wasmKernelConfig } from './wasm-kernel-calls.js';

/**
 * MaxPoolGrad for wasm by a SIMD kernel (max_pool_grad in winograd-wat.ts): a quarter of the
 * built-in kernel's time on 2×2 pools, and right where the built-in kernel is not: it loses the
 * gradient of windows that reach into 'same' padding below or right (e.g. 3×3/2 pools on
 * 8×6 inputs, as in resnet34k), and breaks ties differently from the reference kernels.
 */
export function wasmMaxPoolGradConfig(builtinKernel: tf.KernelFunc): tf.KernelConfig {
  const builtin = typedKernel<tf.MaxPoolGradInputs, tf.MaxPoolGradAttrs>(builtinKernel);
  const kernelFunc = (
    args: WasmKernelArgs<tf.MaxPoolGradInputs, tf.MaxPoolGradAttrs>,
  ): tf.TensorInfo => {
    const { backend, attrs } = args;
    const x = args.inputs.input as tf.TensorInfo;
    const y = args.inputs.output as tf.TensorInfo;
    const dy = args.inputs.dy as tf.TensorInfo;
    const simd = simdKernels();
    if (simd === undefined || x.dtype !== 'float32') {
      return builtin(args);
    }
    const info = tf.backend_util.computePool2DInfo(
      x.shape as [number, number, number, number],
      attrs.filterSize,
      attrs.strides,
      1,
      attrs.pad,
      attrs.dimRoundingMode,
    );
    const [n, h, w, c] = x.shape;
    const dx = backend.makeOutput(x.shape, 'float32');
    (backend.typedArrayFromHeap(dx) as Float32Array).fill(0);
    const at = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    simd.max_pool_grad(
      at(x),
      at(y),
      at(dy),
      at(dx),
      n,
      h,
      w,
      c,
      info.outHeight,
      info.outWidth,
      info.filterHeight,
      info.filterWidth,
      info.strideHeight,
      info.strideWidth,
      info.padInfo.top,
      info.padInfo.left,
    );
    return dx;
  };
  return wasmKernelConfig(tf.MaxPoolGrad, kernelFunc);
}
