import { compileWat, instantiateWasm } from '../backend/wat-assembler.js';
import { codecWat } from './codec-wat.js';

/** 16-bit encodings the kernels know (float32 needs no encoding). */
export type HalfEncoding = 'bf16' | 'fp16';

interface CodecExports {
  memory: { buffer: ArrayBuffer; grow(pages: number): number };
  encode_bf16(src: number, dst: number, n: number): void;
  encode_fp16(src: number, dst: number, n: number): void;
  decode_bf16(dst: number, src: number, n: number): void;
  decode_fp16(dst: number, src: number, n: number): void;
  add_bf16(acc: number, src: number, n: number): void;
  add_fp16(acc: number, src: number, n: number): void;
  add_f32(acc: number, src: number, n: number): void;
}

const PAGE = 65536;

/**
 * The SIMD kernels of codec-wat.ts on a memory of their own, which holds two regions: the
 * float32 side at 0 and the other operand at `capacity`. Every call copies its operands in and
 * its result out (memcpy speed); the kernel does the per-value work. Values are padded to a
 * multiple of 8 inside the regions, and the padding is never copied out. Not reentrant: calls are
 * synchronous, so one instance serves a whole process.
 */
export class WasmCodec {
  private capacity = 0;

  constructor(private readonly kernels: CodecExports) {}

  /** `values` as 16-bit `encoding`, into a fresh buffer. */
  encode(values: Float32Array, encoding: HalfEncoding): Uint8Array {
    const n = this.reserve(values.length);
    this.f32(values.length).set(values);
    const run = encoding === 'bf16' ? this.kernels.encode_bf16 : this.kernels.encode_fp16;
    run(0, this.capacity, n);
    return new Uint8Array(this.kernels.memory.buffer, this.capacity, values.length * 2).slice();
  }

  /** `target[i] = decoded payload[i]` (the payload holds target.length 16-bit values). */
  decodeInto(target: Float32Array, payload: Uint8Array, encoding: HalfEncoding): void {
    const n = this.reserve(target.length);
    this.bytes(payload.byteLength).set(payload);
    const run = encoding === 'bf16' ? this.kernels.decode_bf16 : this.kernels.decode_fp16;
    run(0, this.capacity, n);
    target.set(this.f32(target.length));
  }

  /** `target[i] += decoded payload[i]`; encoding undefined: the payload is float32. */
  addInto(target: Float32Array, payload: Uint8Array, encoding: HalfEncoding | undefined): void {
    const n = this.reserve(target.length);
    this.f32(target.length).set(target);
    this.bytes(payload.byteLength).set(payload);
    const k = this.kernels;
    const run = encoding === 'bf16' ? k.add_bf16 : encoding === 'fp16' ? k.add_fp16 : k.add_f32;
    run(0, this.capacity, n);
    target.set(this.f32(target.length));
  }

  /** Makes room for `count` float32 values (rounded up to 8) in each region; returns the count. */
  private reserve(count: number): number {
    const n = Math.ceil(count / 8) * 8;
    if (n * 4 > this.capacity) {
      const capacity = Math.ceil((n * 4) / PAGE) * PAGE;
      const missing = 2 * capacity - this.kernels.memory.buffer.byteLength;
      if (missing > 0) this.kernels.memory.grow(missing / PAGE);
      this.capacity = capacity;
    }
    return n;
  }

  private f32(count: number): Float32Array {
    return new Float32Array(this.kernels.memory.buffer, 0, count);
  }

  private bytes(count: number): Uint8Array {
    return new Uint8Array(this.kernels.memory.buffer, this.capacity, count);
  }
}

let codec: WasmCodec | undefined;
let loading: Promise<WasmCodec> | undefined;

/**
 * Assembles and instantiates the kernels (wabt, tens of ms) once per process. The collectives
 * call it when they are built; until it has resolved, payload-codec.ts runs its JavaScript loops,
 * which compute the same bits.
 */
export function loadWasmCodec(): Promise<WasmCodec> {
  loading ??= (async () => {
    const wat = `(module\n(memory (export "memory") 1)\n${codecWat()})`;
    const module = await compileWat('tfjs-ddp-codec.wat', wat);
    codec = new WasmCodec((await instantiateWasm(module)) as CodecExports);
    return codec;
  })();
  return loading;
}

/** The kernels once loadWasmCodec has resolved, else undefined. */
export function wasmCodec(): WasmCodec | undefined {
  return codec;
}
