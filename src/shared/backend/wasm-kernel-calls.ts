import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';

/**
 * Helpers for kernels that compose other wasm kernels. They work on TensorInfos, below the
 * engine: nothing here is tracked by tf.memory() or recorded on a gradient tape, so every
 * intermediate must be released with `release` by the kernel that made it.
 */

type Attrs = tf.NamedAttrMap;

/** What tfjs passes a wasm kernel, typed by the kernel's inputs and attributes. */
export interface WasmKernelArgs<I, A> {
  inputs: I;
  backend: BackendWasm;
  attrs: A;
}

/** A wasm kernel with typed inputs and attributes that returns one tensor. */
export type WasmKernelFunc<I, A> = (args: WasmKernelArgs<I, A>) => tf.TensorInfo;

/**
 * The config that registers a typed wasm kernel. tfjs' KernelFunc takes untyped inputs and
 * attributes (and may return several tensors): the one cast between the two is here.
 */
export function wasmKernelConfig<I, A>(
  kernelName: string,
  kernelFunc: WasmKernelFunc<I, A>,
): tf.KernelConfig {
  return { kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc };
}

/** A registered kernel (e.g. the built-in one a config replaces), called with typed arguments. */
export function typedKernel<I, A>(kernel: tf.KernelFunc): WasmKernelFunc<I, A> {
  return (args) => kernel(args as unknown as Parameters<tf.KernelFunc>[0]) as tf.TensorInfo;
}

/** The parts of the Emscripten module the kernels use, which BackendWasm's type leaves out. */
interface EmscriptenModule {
  HEAPU8: Uint8Array;
  HEAPF32: Float32Array;
  cwrap(name: string, returns: string | null, args: string[]): unknown;
  asm?: { memory?: object };
}

export function emscriptenModule(backend: BackendWasm): EmscriptenModule {
  return backend.wasm as unknown as EmscriptenModule;
}

/** Runs the wasm kernel registered under `name` (as registered when this is called). */
export function callKernel(
  backend: BackendWasm,
  name: string,
  inputs: tf.NamedTensorInfoMap,
  attrs: Attrs = {},
): tf.TensorInfo {
  const config = tf.getKernel(name, 'wasm');
  if (config === undefined) throw new Error(`wasm kernel ${name} is not registered`);
  return config.kernelFunc({ inputs, attrs, backend }) as tf.TensorInfo;
}

export function release(backend: BackendWasm, ...infos: tf.TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

export function transpose(backend: BackendWasm, x: tf.TensorInfo, perm: number[]): tf.TensorInfo {
  return callKernel(backend, tf.Transpose, { x }, { perm });
}

/**
 * Forward NHWC convolution on the backend's XNNPACK path, with explicit paddings
 * [top, bottom, left, right] (all ≥ 0).
 */
export function conv2d(
  backend: BackendWasm,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  strides: [number, number],
  dilations: [number, number],
  pads: [number, number, number, number],
): tf.TensorInfo {
  const [top, bottom, left, right] = pads;
  const pad: tf.backend_util.ExplicitPadding = [
    [0, 0],
    [top, bottom],
    [left, right],
    [0, 0],
  ];
  const attrs = { strides, dilations, pad, dataFormat: 'NHWC' } as unknown as Attrs;
  return callKernel(backend, tf.Conv2D, { x, filter }, attrs);
}

/** A float32 view of a tensor's data on the wasm heap; take it after the last allocation. */
export function heapF32(backend: BackendWasm, info: tf.TensorInfo): Float32Array {
  return backend.typedArrayFromHeap(info) as Float32Array;
}

/** The whole wasm heap as floats (index = byte offset / 4); take it after the last allocation. */
export function heapAllF32(backend: BackendWasm): Float32Array {
  return emscriptenModule(backend).HEAPF32;
}

/** The whole wasm heap as bytes; take it after the last allocation. */
export function heapAllU8(backend: BackendWasm): Uint8Array {
  return emscriptenModule(backend).HEAPU8;
}
