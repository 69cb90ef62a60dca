import * as tf from '@tensorflow/tfjs-core';
import {
  typedKernel,
  type WasmKernelArgs,
  type WasmKernelFunc,
  wasmKernelConfig,
} from './wasm-kernel-calls.js';
import { winogradApplies, winogradConv } from './wasm-winograd.js';

/**
 * Conv2D and FusedConv2D for wasm: 3×3 stride-1 convolutions (with a bias and a linear or ReLU
 * activation when fused) go to Winograd (wasm-winograd.ts), everything else to the built-in
 * XNNPACK kernels, with 'same' padding spelled out: the built-in kernels return zeros for
 * 'same' with a stride larger than the kernel (XNNPACK's TensorFlow-SAME mode), explicit
 * paddings are right.
 */
export function wasmConv2DForwardConfigs(builtin: {
  conv2d: tf.KernelFunc;
  fused: tf.KernelFunc;
}): tf.KernelConfig[] {
  const builtinConv2d = typedKernel<unknown, tf.Conv2DAttrs>(builtin.conv2d);
  const builtinFused = typedKernel<unknown, tf.Conv2DAttrs>(builtin.fused);
  const conv2d = (args: WasmKernelArgs<tf.Conv2DInputs, tf.Conv2DAttrs>): tf.TensorInfo =>
    forward(
      args,
      builtinConv2d,
      args.inputs.x as tf.TensorInfo,
      args.inputs.filter as tf.TensorInfo,
    );

  const fused = (
    args: WasmKernelArgs<tf.FusedConv2DInputs, tf.FusedConv2DAttrs>,
  ): tf.TensorInfo => {
    const { inputs, attrs } = args;
    const activation = attrs.activation ?? 'linear';
    const plain =
      (activation === 'linear' || activation === 'relu') &&
      (inputs.bias === undefined || inputs.bias.shape.length === 1);
    const winograd = plain ? { bias: inputs.bias, relu: activation === 'relu' } : undefined;
    return forward(args, builtinFused, inputs.x, inputs.filter, winograd);
  };

  return [wasmKernelConfig(tf.Conv2D, conv2d), wasmKernelConfig(tf.FusedConv2D, fused)];
}

function forward(
  args: WasmKernelArgs<unknown, tf.Conv2DAttrs>,
  builtin: WasmKernelFunc<unknown, tf.Conv2DAttrs>,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  winograd: { bias?: tf.TensorInfo; relu: boolean } | undefined = { relu: false },
): tf.TensorInfo {
  const { attrs, backend } = args;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    attrs.strides,
    attrs.dilations ?? 1,
    attrs.pad,
    attrs.dimRoundingMode,
  );
  const nhwc = (attrs.dataFormat ?? 'NHWC') === 'NHWC' && x.dtype === 'float32';
  const undilated = info.dilationHeight === 1 && info.dilationWidth === 1;
  const strides: [number, number] = [info.strideHeight, info.strideWidth];
  if (
    winograd !== undefined &&
    nhwc &&
    undilated &&
    winogradApplies(info.filterHeight, info.filterWidth, strides, info.inChannels, info.outChannels)
  ) {
    const { top, left } = info.padInfo;
    const size = { top, left, outH: info.outHeight, outW: info.outWidth };
    return winogradConv(backend, x, filter, size, winograd.bias, winograd.relu);
  }
  const { top, bottom, left, right } = info.padInfo;
  const pad: tf.Conv2DAttrs['pad'] =
    attrs.pad === 'same'
      ? [
          [0, 0],
          [top, bottom],
          [left, right],
          [0, 0],
        ]
      : attrs.pad;
  const explicit = { ...args, attrs: { ...attrs, pad } };
  return builtin(explicit);
}
