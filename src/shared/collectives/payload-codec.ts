import { endianness } from 'node:os';
import { Encoding } from '../../gen/tfjs_ddp/v1/collective.js';
import { type HalfEncoding, wasmCodec } from './wasm-codec.js';

// Payloads are little-endian; typed arrays use the host's byte order.
if (endianness() !== 'LE') throw new Error('tfjs-ddp needs a little-endian host');

/**
 * The chunk payloads of the collectives: float32, bf16 or fp16 values. Each function runs the
 * SIMD kernels of wasm-codec.ts once they are loaded, else the JavaScript loops below, which
 * compute exactly the same bits (they are the kernels' reference in the tests).
 */

function halfOf(encoding: Encoding): HalfEncoding | undefined {
  if (encoding === Encoding.ENCODING_BF16_LE) return 'bf16';
  if (encoding === Encoding.ENCODING_FP16_LE) return 'fp16';
  return undefined;
}

/** Encodes `values` for the wire into a fresh buffer (the caller may change `values` afterwards). */
export function encodePayload(values: Float32Array, encoding: Encoding): Uint8Array {
  const half = halfOf(encoding);
  if (half === undefined) {
    return new Uint8Array(
      values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength),
    );
  }
  const codec = wasmCodec();
  if (codec) return codec.encode(values, half);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  const round = half === 'bf16' ? bf16Bits : fp16Bits;
  for (let i = 0; i < bits.length; i++) out[i] = round(bits[i]);
  return new Uint8Array(out.buffer);
}

/**
 * `values` as the payload of a chunk handed to a ChunkTransport, which copies it
 * on send(): float32 is a view of `values` (no copy), bf16 and fp16 a fresh buffer.
 */
export function sendPayload(values: Float32Array, encoding: Encoding): Uint8Array {
  return halfOf(encoding) !== undefined
    ? encodePayload(values, encoding)
    : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** `target[i] += decoded payload[i]`, in float32. */
export function addPayload(target: Float32Array, payload: Uint8Array, encoding: Encoding): void {
  const codec = wasmCodec();
  if (codec) {
    codec.addInto(target, payload, halfOf(encoding));
    return;
  }
  const values = decodePayload(payload, encoding);
  for (let i = 0; i < values.length; i++) target[i] += values[i];
}

/** `target[i] = decoded payload[i]`. */
export function copyPayload(target: Float32Array, payload: Uint8Array, encoding: Encoding): void {
  const half = halfOf(encoding);
  const codec = wasmCodec();
  if (codec && half !== undefined) codec.decodeInto(target, payload, half);
  else target.set(decodePayload(payload, encoding));
}

/**
 * The payload's values as float32 (a view when the bytes are aligned float32,
 * else a copy). Copies go through `new Uint8Array(payload)`: on a Node Buffer,
 * slice() is a view.
 */
export function decodePayload(payload: Uint8Array, encoding: Encoding): Float32Array {
  const half = halfOf(encoding);
  if (half !== undefined) {
    const count = payload.byteLength / 2;
    const out = new Float32Array(count);
    const codec = wasmCodec();
    if (codec) {
      codec.decodeInto(out, payload, half);
      return out;
    }
    const halves =
      payload.byteOffset % 2 === 0
        ? new Uint16Array(payload.buffer, payload.byteOffset, count)
        : new Uint16Array(new Uint8Array(payload).buffer);
    const bits = new Uint32Array(out.buffer);
    if (half === 'bf16') for (let i = 0; i < count; i++) bits[i] = halves[i] << 16;
    else for (let i = 0; i < count; i++) bits[i] = fp16ToF32Bits(halves[i]);
    return out;
  }
  const count = payload.byteLength / 4;
  return payload.byteOffset % 4 === 0
    ? new Float32Array(payload.buffer, payload.byteOffset, count)
    : new Float32Array(new Uint8Array(payload).buffer);
}

/** The bf16 bit pattern nearest to the float32 with bits `x` (NaN stays a quiet NaN). */
export function bf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x0040;
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even; an
  // overflow past the largest finite bf16 lands on infinity, as it should.
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);

/**
 * The IEEE binary16 bit pattern nearest to the float32 with bits `x`, ties to even, subnormals
 * kept; from 65520 up (the tie above the largest finite 65504) infinity; NaN a quiet NaN.
 */
export function fp16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const a = x & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x47800000) return sign | 0x7c00;
  if (a < 0x38800000) {
    // A subnormal (or zero) result: |x| in units of 2⁻²⁴, rounded half to even (exact in float64).
    scratchBits[0] = a;
    const units = scratch[0] * 2 ** 24;
    let m = Math.floor(units);
    const rest = units - m;
    if (rest > 0.5 || (rest === 0.5 && (m & 1) === 1)) m += 1;
    return sign | m;
  }
  // Rebias the exponent (127 → 15) and round the 13 dropped bits as bf16Bits does.
  return sign | ((a - (112 << 23) + 0xfff + ((a >>> 13) & 1)) >>> 13);
}

/** The float32 bits of the binary16 value with bits `h`. */
export function fp16ToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) {
    scratch[0] = mantissa * 2 ** -24;
    return (sign | scratchBits[0]) >>> 0;
  }
  if (exponent === 31) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  return (sign | ((exponent + 112) << 23) | (mantissa << 13)) >>> 0;
}
