import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import type * as tf from '@tensorflow/tfjs-core';
import { type SimdKernels, simdKernels } from './simd-module.js';
import { emscriptenModule, release, transpose } from './wasm-kernel-calls.js';

/**
 * 3×3 stride-1 convolutions and their filter gradient by Winograd's F(2×2, 3×3): 16 matrix
 * products per layer (one per tile position, by XNNPACK's fully-connected operator) on
 * transformed tiles, instead of the direct convolution: 16/36 of the multiplications. The
 * backend's XNNPACK already runs near the machine's 128-bit SIMD peak, so this is what is left
 * to gain on the convolutions that dominate VGG and ResNet training. The transforms are
 * winograd-wat.ts. Results agree with direct convolution to ~1e-6 relative (F(2×2, 3×3) is
 * the numerically benign size).
 *
 * All functions take and return TensorInfos below the engine: the caller owns the result.
 */

/** Whether the fast path applies: the transforms move 4 channels at a time. */
export function winogradApplies(
  kh: number,
  kw: number,
  strides: [number, number],
  inChannels: number,
  outChannels: number,
): boolean {
  return (
    kh === 3 &&
    kw === 3 &&
    strides[0] === 1 &&
    strides[1] === 1 &&
    inChannels % 4 === 0 &&
    outChannels % 4 === 0 &&
    inChannels >= MIN_CHANNELS &&
    outChannels >= MIN_CHANNELS &&
    simdKernels() !== undefined
  );
}

/** Below this the transforms cost more than the products save. */
const MIN_CHANNELS = 16;

/**
 * y = conv(x, filter) (+ bias, then ReLU when asked), x [N,H,W,C], filter [3,3,C,K], with
 * paddings pt/pl above/left and an output of oH×oW.
 */
export function winogradConv(
  backend: BackendWasm,
  x: tf.TensorInfo,
  filter: tf.TensorInfo,
  pads: { top: number; left: number; outH: number; outW: number },
  bias?: tf.TensorInfo,
  relu = false,
): tf.TensorInfo {
  const wino = required();
  const [n, h, w, c] = x.shape;
  const k = filter.shape[3];
  const tH = Math.ceil(pads.outH / 2);
  const tW = Math.ceil(pads.outW / 2);
  const tiles = n * tH * tW;
  const u = backend.makeOutput([16, c, k], 'float32');
  wino.wino_filter(ptr(backend, filter), ptr(backend, u), c, k);
  const zero = zeros(backend, c);
  const v = backend.makeOutput([16, tiles, c], 'float32');
  wino.wino_in(
    ptr(backend, x),
    ptr(backend, zero),
    ptr(backend, v),
    n,
    h,
    w,
    c,
    pads.top,
    pads.left,
    tH,
    tW,
    tiles,
  );
  const m = backend.makeOutput([16, tiles, k], 'float32');
  for (let p = 0; p < 16; p++) {
    gemm(backend, [v, p, tiles, c], [u, p, c, k], [m, p, tiles, k]);
  }
  release(backend, u, v, zero);
  const y = backend.makeOutput([n, pads.outH, pads.outW, k], 'float32');
  const biasPtr = bias === undefined ? 0 : ptr(backend, bias);
  wino.wino_out(
    ptr(backend, m),
    biasPtr,
    relu ? 1 : 0,
    ptr(backend, y),
    n,
    pads.outH,
    pads.outW,
    k,
    tH,
    tW,
  );
  release(backend, m);
  return y;
}

/**
 * The filter gradient [3,3,C,K] of y = conv(x, W) (stride 1, paddings pt/pl) given x [N,H,W,C]
 * and dy [N,oH,oW,K].
 */
export function winogradFilterGrad(
  backend: BackendWasm,
  x: tf.TensorInfo,
  dy: tf.TensorInfo,
  pads: { top: number; left: number },
): tf.TensorInfo {
  const wino = required();
  const [n, h, w, c] = x.shape;
  const [, outH, outW, k] = dy.shape;
  const tH = Math.ceil(outH / 2);
  const tW = Math.ceil(outW / 2);
  const tiles = n * tH * tW;
  const zero = zeros(backend, Math.max(c, k));
  const v = backend.makeOutput([16, tiles, c], 'float32');
  wino.wino_in(
    ptr(backend, x),
    ptr(backend, zero),
    ptr(backend, v),
    n,
    h,
    w,
    c,
    pads.top,
    pads.left,
    tH,
    tW,
    tiles,
  );
  const g = backend.makeOutput([16, tiles, k], 'float32');
  wino.wino_dy(
    ptr(backend, dy),
    ptr(backend, zero),
    ptr(backend, g),
    n,
    outH,
    outW,
    k,
    tH,
    tW,
    tiles,
  );
  release(backend, zero);
  const m = backend.makeOutput([16, c, k], 'float32');
  if (k % 8 === 0) {
    // Both operands are large: no packing, no transpose (see gemm_tn_acc in winograd-wat.ts).
    (backend.typedArrayFromHeap(m) as Float32Array).fill(0);
    const [a, b, out] = [v, g, m].map((t) => ptr(backend, t));
    for (let p = 0; p < 16; p++) {
      wino.gemm_tn_acc(
        a + p * tiles * c * 4,
        b + p * tiles * k * 4,
        out + p * c * k * 4,
        c,
        k,
        tiles,
      );
    }
  } else {
    const vt = transpose(backend, v, [0, 2, 1]);
    for (let p = 0; p < 16; p++) {
      gemm(backend, [vt, p, c, tiles], [g, p, tiles, k], [m, p, c, k]);
    }
    release(backend, vt);
  }
  release(backend, v, g);
  const dw = backend.makeOutput([3, 3, c, k], 'float32');
  wino.wino_wout(ptr(backend, m), ptr(backend, dw), c, k);
  release(backend, m);
  return dw;
}

function required(): SimdKernels {
  const wino = simdKernels();
  if (wino === undefined) throw new Error('the Winograd transforms are not loaded');
  return wino;
}

function ptr(backend: BackendWasm, info: tf.TensorInfo): number {
  return backend.dataIdMap.get(info.dataId)!.memoryOffset;
}

function zeros(backend: BackendWasm, count: number): tf.TensorInfo {
  const info = backend.makeOutput([count], 'float32');
  (backend.typedArrayFromHeap(info) as Float32Array).fill(0);
  return info;
}

/** [tensor, plane index, rows, cols]: plane p of a [planes, rows, cols] tensor. */
type Plane = [tf.TensorInfo, number, number, number];

type RawMatMul = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: number,
  transposeB: number,
  outId: number,
) => void;
let rawMatMul: RawMatMul | undefined;

/**
 * out = a·b on XNNPACK's fully-connected operator, for planes of larger tensors: each plane is
 * registered as a tensor of its own that aliases the parent's memory (no copy), and unregistered
 * afterwards without freeing (the parent owns the memory). Unregistering also drops the XNNPACK
 * operator cached for `b`.
 */
function gemm(backend: BackendWasm, a: Plane, b: Plane, out: Plane): void {
  rawMatMul ??= emscriptenModule(backend).cwrap('BatchMatMul', null, [
    'number',
    'array',
    'number',
    'number',
    'array',
    'number',
    'number',
    'number',
    'number',
  ]) as RawMatMul;
  const views = [a, b, out].map(([info, p, rows, cols]) => {
    const offset = ptr(backend, info) + p * rows * cols * 4;
    return backend.makeOutput([1, rows, cols], 'float32', offset);
  });
  const shapeBytes = (v: tf.TensorInfo) => new Uint8Array(new Int32Array(v.shape).buffer);
  const id = (v: tf.TensorInfo) => backend.dataIdMap.get(v.dataId)!.id;
  const [va, vb, vo] = views;
  rawMatMul(id(va), shapeBytes(va), 3, id(vb), shapeBytes(vb), 3, 0, 0, id(vo));
  for (const v of views) {
    backend.wasm.tfjs.disposeData(id(v));
    backend.dataIdMap.delete(v.dataId);
  }
}
