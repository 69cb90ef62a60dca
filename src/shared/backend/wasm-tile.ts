import * as tf from '@tensorflow/tfjs-core';
import {
  heapAllU8,
  typedKernel,
  type WasmKernelArgs,
  wasmKernelConfig,
} from './wasm-kernel-calls.js';

/**
 * Tile for wasm by block copies: each dimension's block is built once and then doubled in place
 * (copyWithin, memcpy speed) until it holds all its repetitions. The built-in kernel computes
 * every output index separately: 30–60 ms to broadcast one [1,1,1,64] vector over a ResNet
 * activation, which gradients of means, sums and BatchNorm do all the time.
 */
export function wasmTileConfig(builtinKernel: tf.KernelFunc): tf.KernelConfig {
  const builtin = typedKernel<tf.TileInputs, tf.TileAttrs>(builtinKernel);
  const kernelFunc = (args: WasmKernelArgs<tf.TileInputs, tf.TileAttrs>): tf.TensorInfo => {
    const { backend } = args;
    const x = args.inputs.x as tf.TensorInfo;
    const reps = args.attrs.reps;
    if (x.dtype === 'string' || reps.length !== x.shape.length) {
      return builtin(args);
    }
    const outShape = x.shape.map((d, i) => d * reps[i]);
    const out = backend.makeOutput(outShape, x.dtype);
    if (tf.util.sizeFromShape(outShape) === 0) return out;
    const bytes = tf.util.bytesPerElement(x.dtype);
    const heap = heapAllU8(backend);
    const offset = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId)!.memoryOffset;
    const srcStrides = strides(x.shape, bytes);
    const dstStrides = strides(outShape, bytes);
    const fill = (d: number, src: number, dst: number): void => {
      const rows = x.shape[d];
      if (d === x.shape.length - 1) {
        heap.copyWithin(dst, src, src + rows * bytes);
      } else {
        for (let i = 0; i < rows; i++)
          fill(d + 1, src + i * srcStrides[d], dst + i * dstStrides[d]);
      }
      repeat(heap, dst, rows * dstStrides[d], reps[d]);
    };
    if (x.shape.length === 0) {
      heap.copyWithin(offset(out), offset(x), offset(x) + bytes);
    } else {
      fill(0, offset(x), offset(out));
    }
    return out;
  };
  return wasmKernelConfig(tf.Tile, kernelFunc);
}

/** Byte strides of a row-major shape; the last dimension's is the element size. */
function strides(shape: number[], bytes: number): number[] {
  const out = new Array<number>(shape.length);
  let stride = bytes;
  for (let d = shape.length - 1; d >= 0; d--) {
    out[d] = stride;
    stride *= shape[d];
  }
  return out;
}

/** Repeats the `length` bytes at `start` `times` times in place, doubling the copied span. */
function repeat(heap: Uint8Array, start: number, length: number, times: number): void {
  const total = length * times;
  for (let done = length; done < total; ) {
    const n = Math.min(done, total - done);
    heap.copyWithin(start + done, start, start + n);
    done += n;
  }
}
