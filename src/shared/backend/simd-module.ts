import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { simdKernelsWat } from './simd-kernels-wat.js';
import { emscriptenModule } from './wasm-kernel-calls.js';
import { compileWat, instantiateWasm, isWasmMemory } from './wat-assembler.js';
import { winogradWat } from './winograd-wat.js';

/**
 * The exported functions of winograd-wat.ts and simd-kernels-wat.ts; every argument is an i32
 * (pointers are byte offsets into the wasm backend's heap).
 */
export interface SimdKernels {
  wino_in(...args: number[]): void;
  wino_out(...args: number[]): void;
  wino_filter(...args: number[]): void;
  wino_dy(...args: number[]): void;
  wino_wout(...args: number[]): void;
  gemm_tn_acc(...args: number[]): void;
  column_sum(...args: number[]): void;
  max_pool_grad(...args: number[]): void;
}

let kernels: SimdKernels | undefined;

/**
 * Assembles the SIMD kernels (wabt, tens of ms) and instantiates them on the wasm backend's own
 * memory, so that they read and write tensors in place. Call once after the wasm backend is
 * initialised; later calls return the same instance.
 */
export async function loadSimdKernels(backend: BackendWasm): Promise<SimdKernels> {
  if (kernels !== undefined) return kernels;
  const memory = emscriptenModule(backend).asm?.memory;
  if (!isWasmMemory(memory)) {
    throw new Error('the tfjs wasm module does not expose its memory (asm.memory)');
  }
  const wat = `(module\n(import "env" "memory" (memory 1))\n${winogradWat()}\n${simdKernelsWat()})`;
  const module = await compileWat('tfjs-ddp-simd.wat', wat);
  kernels = (await instantiateWasm(module, { env: { memory } })) as SimdKernels;
  return kernels;
}

/** The kernels if loadSimdKernels has run, else undefined (callers then fall back). */
export function simdKernels(): SimdKernels | undefined {
  return kernels;
}
