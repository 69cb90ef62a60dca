import { endianness } from 'node:os';
import { Encoding } from '../../gen/tfjs_ddp/v1/collective.js';

// Payloads are little-endian; typed arrays use the host's byte order.
if (endianness() !== 'LE') throw new Error('tfjs-ddp needs a little-endian host');

/** Encodes `values` for the wire into a fresh buffer (the caller may change `values` afterwards). */
export function encodePayload(values: Float32Array, encoding: Encoding): Uint8Array {
  if (encoding === Encoding.ENCODING_BF16_LE) {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    const out = new Uint16Array(values.length);
    for (let i = 0; i < bits.length; i++) out[i] = bf16Bits(bits[i]);
    return new Uint8Array(out.buffer);
  }
  return new Uint8Array(
    values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength),
  );
}

/**
 * `values` as the payload of a chunk handed to a ChunkTransport, which copies it
 * on send(): float32 is a view of `values` (no copy), bf16 a fresh buffer.
 */
export function sendPayload(values: Float32Array, encoding: Encoding): Uint8Array {
  return encoding === Encoding.ENCODING_BF16_LE
    ? encodePayload(values, encoding)
    : new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** `target[i] += decoded payload[i]`, in float32. */
export function addPayload(target: Float32Array, payload: Uint8Array, encoding: Encoding): void {
  const values = decodePayload(payload, encoding);
  for (let i = 0; i < values.length; i++) target[i] += values[i];
}

/** `target[i] = decoded payload[i]`. */
export function copyPayload(target: Float32Array, payload: Uint8Array, encoding: Encoding): void {
  target.set(decodePayload(payload, encoding));
}

/**
 * The payload's values as float32 (a view when the bytes are aligned float32,
 * else a copy). Copies go through `new Uint8Array(payload)`: on a Node Buffer,
 * slice() is a view.
 */
export function decodePayload(payload: Uint8Array, encoding: Encoding): Float32Array {
  if (encoding === Encoding.ENCODING_BF16_LE) {
    const count = payload.byteLength / 2;
    const halves =
      payload.byteOffset % 2 === 0
        ? new Uint16Array(payload.buffer, payload.byteOffset, count)
        : new Uint16Array(new Uint8Array(payload).buffer);
    const bits = new Uint32Array(count);
    for (let i = 0; i < count; i++) bits[i] = halves[i] << 16;
    return new Float32Array(bits.buffer);
  }
  const count = payload.byteLength / 4;
  return payload.byteOffset % 4 === 0
    ? new Float32Array(payload.buffer, payload.byteOffset, count)
    : new Float32Array(new Uint8Array(payload).buffer);
}

/**
 * Rounds every value to the nearest bf16 (ties to even), in place, so that the
 * rank that owns a sum holds exactly what the others decode from the wire.
 */
export function roundToBf16(values: Float32Array): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) bits[i] = bf16Bits(bits[i]) << 16;
}

/** The bf16 bit pattern nearest to the float32 with bits `x` (NaN stays a quiet NaN). */
function bf16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x0040;
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even; an
  // overflow past the largest finite bf16 lands on infinity, as it should.
  return (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
}
