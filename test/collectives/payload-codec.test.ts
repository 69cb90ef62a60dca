import { describe, expect, it } from 'vitest';
import { Encoding } from '../../src/gen/tfjs_ddp/v1/collective.js';
import { findNonFinite } from '../../src/shared/collectives/non-finite.js';
import {
  addPayload,
  decodePayload,
  encodePayload,
  roundToBf16,
} from '../../src/shared/collectives/payload-codec.js';

const BF16 = Encoding.ENCODING_BF16_LE;
const F32 = Encoding.ENCODING_FLOAT32_LE;

function bf16(values: number[]): number[] {
  return Array.from(decodePayload(encodePayload(Float32Array.from(values), BF16), BF16));
}

describe('payload codec', () => {
  it('rounds to the nearest bf16, ties to even', () => {
    const ulp = 2 ** -7; // spacing of bf16 just above 1
    expect(bf16([1, 1 + ulp / 4, 1 + ulp / 2, 1 + (3 * ulp) / 2, 1 + ulp * 0.75])).toEqual([
      1,
      1,
      1, // tie: 1 has an even significand
      1 + 2 * ulp, // tie between 1+ulp (odd) and 1+2ulp (even)
      1 + ulp,
    ]);
    // 1e-40 is subnormal: float32 bits 0x000116c2 round to bf16 0x0001.
    const subnormal = new Float32Array(new Uint32Array([0x0001_0000]).buffer)[0];
    expect(bf16([-3.140625, 65504, 1e-40])).toEqual([-3.140625, 65536, subnormal]);
  });

  it('keeps infinities and NaN, and overflows the largest floats to infinity', () => {
    const [inf, minusInf, nan, huge] = bf16([Infinity, -Infinity, NaN, 3.4e38]);
    expect([inf, minusInf, huge]).toEqual([Infinity, -Infinity, Infinity]);
    expect(nan).toBeNaN();
  });

  it('rounds in place exactly as the wire does', () => {
    const values = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 1e3);
    const wire = bf16(Array.from(values));
    roundToBf16(values);
    expect(Array.from(values)).toEqual(wire);
  });

  it('encodes float32 as little-endian bytes and decodes them from unaligned buffers', () => {
    const values = Float32Array.of(1.5, -2, 3.25);
    const bytes = encodePayload(values, F32);
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0, 0, 0xc0, 0x3f]);
    const unaligned = new Uint8Array(13).subarray(1);
    unaligned.set(bytes);
    const target = Float32Array.of(1, 1, 1);
    addPayload(target, unaligned, F32);
    expect(Array.from(target)).toEqual([2.5, -1, 4.25]);
    const halves = new Uint8Array(7).subarray(1);
    halves.set(encodePayload(values, BF16));
    expect(Array.from(decodePayload(halves, BF16))).toEqual([1.5, -2, 3.25]);
  });

  it('copies the values it encodes, so the caller may change them afterwards', () => {
    const values = Float32Array.of(1, 2);
    const bytes = encodePayload(values, F32);
    values[0] = 9;
    expect(Array.from(decodePayload(bytes, F32))).toEqual([1, 2]);
  });
});

describe('findNonFinite', () => {
  it('finds the first NaN or infinity, or -1', () => {
    expect(findNonFinite(Float32Array.of(0, -1, 3.4e38))).toBe(-1);
    expect(findNonFinite(Float32Array.of(0, Infinity, NaN))).toBe(1);
    expect(findNonFinite(Float32Array.of(0, 1, -Infinity))).toBe(2);
    expect(findNonFinite(Float32Array.of(NaN))).toBe(0);
    expect(findNonFinite(new Float32Array(0))).toBe(-1);
  });
});
