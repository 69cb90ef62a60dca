import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import { batchNormGradConfig } from './batch-norm-gradient.js';
import { meanGradConfig, sumGradConfig } from './reduce-gradients.js';
import { loadSimdKernels } from './simd-module.js';
import { wasmConv2DBackpropFilterConfig } from './wasm-conv2d-backprop-filter.js';
import { wasmConv2DBackpropInputConfig } from './wasm-conv2d-backprop-input.js';
import { wasmConv2DForwardConfigs } from './wasm-conv2d-forward.js';
import { typedKernel, type WasmKernelArgs, wasmKernelConfig } from './wasm-kernel-calls.js';
import { wasmBatchMatMulConfig } from './wasm-matmul.js';
import { wasmMaxPoolGradConfig } from './wasm-max-pool-grad.js';
import { wasmReduceConfigs } from './wasm-reduce.js';
import { wasmTileConfig } from './wasm-tile.js';

let registered = false;

/**
 * Registers the kernels that training needs on the wasm backend and that
 * @tensorflow/tfjs-backend-wasm 4.22 lacks or runs slowly (each file says why and what it
 * gains), and leaner gradients for BatchNorm, Sum and Mean. Call it after the wasm backend is
 * initialised: the built-in kernels kept as fallbacks must have been set up. Idempotent.
 *
 * The gradients are registered globally (gradients are not per backend); they compute the same
 * values as tfjs-core's, so other backends are unaffected but for speed.
 */
export async function registerWasmTrainingKernels(): Promise<void> {
  if (registered) return;
  registered = true;
  await loadSimdKernels(tf.findBackend('wasm') as BackendWasm);
  const builtin = (name: string): tf.KernelFunc => {
    const config = tf.getKernel(name, 'wasm');
    if (config === undefined) throw new Error(`the wasm backend has no ${name} kernel`);
    return config.kernelFunc;
  };
  const configs = [
    ...wasmConv2DForwardConfigs({ conv2d: builtin(tf.Conv2D), fused: builtin(tf.FusedConv2D) }),
    wasmConv2DBackpropFilterConfig,
    wasmConv2DBackpropInputConfig(builtin(tf.Conv2DBackpropInput)),
    wasmBatchMatMulConfig(builtin(tf.BatchMatMul)),
    wasmMaxPoolGradConfig(builtin(tf.MaxPoolGrad)),
    wasmTileConfig(builtin(tf.Tile)),
    ...wasmReduceConfigs({ sum: builtin(tf.Sum), mean: builtin(tf.Mean) }),
    shareDataConfig(tf.Identity, builtin(tf.Identity)),
    shareDataConfig(tf.Cast, builtin(tf.Cast)),
  ];
  for (const config of configs) {
    // Unregister first: replacing a kernel in place makes tfjs print a warning.
    if (tf.getKernel(config.kernelName, 'wasm') !== undefined) {
      tf.unregisterKernel(config.kernelName, 'wasm');
    }
    tf.registerKernel(config);
  }
  for (const config of [batchNormGradConfig, sumGradConfig, meanGradConfig]) {
    tf.registerGradient(config);
  }
}

/**
 * Identity, and Cast to the same dtype, as a shared reference to the input's data (as the cpu
 * backend does) instead of a copy: tensors are immutable and the data is reference-counted.
 * Gradients call them on every activation (ReLU's, BatchNorm's, the tape's clones).
 */
function shareDataConfig(kernelName: string, builtinKernel: tf.KernelFunc): tf.KernelConfig {
  type Inputs = { x: tf.TensorInfo };
  type Attrs = { dtype?: tf.DataType };
  const builtin = typedKernel<Inputs, Attrs>(builtinKernel);
  return wasmKernelConfig(kernelName, (args: WasmKernelArgs<Inputs, Attrs>) => {
    const { x } = args.inputs;
    const dtype = args.attrs?.dtype ?? x.dtype;
    if (dtype !== x.dtype || x.dtype === 'string') return builtin(args);
    args.backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  });
}
