import { describe, expect, it } from 'vitest';
import { Encoding } from '../../src/gen/tfjs_ddp/v1/collective.js';
import { findNonFinite } from '../../src/shared/collectives/non-finite.js';
import {
  addPayload,
  decodePayload,
  encodePayload,
  fp16Bits,
  fp16ToF32Bits,
} from '../../src/shared/collectives/payload-codec.js';

const BF16 = Encoding.ENCODING_BF16_LE;
const F32 = Encoding.ENCODING_FLOAT32_LE;
const FP16 = Encoding.ENCODING_FP16_LE;

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

  it('rounds to the nearest fp16, ties to even, subnormals kept, overflow to infinity', () => {
    const fp16 = (values: number[]) =>
      Array.from(decodePayload(encodePayload(Float32Array.from(values), FP16), FP16));
    const ulp = 2 ** -10; // spacing of fp16 just above 1
    expect(fp16([1, 1 + ulp / 2, 1 + (3 * ulp) / 2, 1 + ulp * 0.75, -2.5])).toEqual([
      1,
      1, // tie: 1 has an even significand
      1 + 2 * ulp,
      1 + ulp,
      -2.5,
    ]);
    const tiny = 2 ** -24; // the smallest subnormal
    expect(
      fp16([tiny, tiny / 2, (3 * tiny) / 2, tiny * 0.51, 2 ** -14, 2 ** -14 - tiny / 4]),
    ).toEqual([tiny, 0, 2 * tiny, tiny, 2 ** -14, 2 ** -14]);
    expect(fp16([65504, 65519.99, 65520, 1e6, -Infinity])).toEqual([
      65504,
      65504,
      Infinity,
      Infinity,
      -Infinity,
    ]);
    expect(fp16([NaN])[0]).toBeNaN();
  });

  it('decodes every fp16 bit pattern to its IEEE value', () => {
    const asFloat = (bits: number) => new Float32Array(Uint32Array.of(bits).buffer)[0];
    for (let h = 0; h < 0x10000; h++) {
      const e = (h >> 10) & 31;
      const m = h & 1023;
      const sign = h & 0x8000 ? -1 : 1;
      const value = asFloat(fp16ToF32Bits(h));
      if (e === 31 && m !== 0) expect(value).toBeNaN();
      else {
        const expected =
          e === 31
            ? sign * Infinity
            : e === 0
              ? sign * m * 2 ** -24
              : sign * 2 ** (e - 15) * (1 + m / 1024);
        expect(Object.is(value, expected) || value === expected).toBe(true);
      }
      // Every finite fp16 value encodes back to itself.
      if (e !== 31) expect(fp16Bits(fp16ToF32Bits(h))).toBe(h);
    }
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
