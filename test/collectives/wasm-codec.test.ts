import { beforeAll, describe, expect, it } from 'vitest';
import { bf16Bits, fp16Bits, fp16ToF32Bits } from '../../src/shared/collectives/payload-codec.js';
import { loadWasmCodec, type WasmCodec } from '../../src/shared/collectives/wasm-codec.js';

/** Float32 bit patterns that cover every rounding path: edges, then random bits of all exponents. */
function testBits(): Uint32Array {
  const edges = [
    0, 0x80000000, 1, 0x7fffff, 0x800000, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7f800001,
    0x7fc00000, 0xffffffff, 0x3f800000, 0x3f801000, 0x3f803000, 0x3f800fff, 0x477fe000, 0x477fefff,
    0x477ff000, 0x477fffff, 0x47800000, 0x38800000, 0x387fffff, 0x387ff000, 0x33800000, 0x33000000,
    0x33000001, 0x33c00000, 0x3f808000, 0x3f818000, 0x3f80ffff,
  ];
  const random = new Uint32Array(200_003);
  let state = 12345;
  for (let i = 0; i < random.length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    // Exponents near the fp16 range are where the paths meet: bias half the draws there.
    random[i] = i % 2 === 0 ? state : (state & 0x807fffff) | ((100 + (i % 50)) << 23);
  }
  const out = new Uint32Array(edges.length + random.length);
  out.set(edges);
  out.set(random, edges.length);
  return out;
}

const asFloats = (bits: Uint32Array) => new Float32Array(bits.buffer, bits.byteOffset, bits.length);
const bitsOf = (values: Float32Array) =>
  new Uint32Array(values.buffer, values.byteOffset, values.length);

describe('SIMD wasm codec against the JavaScript reference (bit for bit)', () => {
  let codec: WasmCodec;
  beforeAll(async () => {
    codec = await loadWasmCodec();
  });

  for (const [name, round] of [
    ['bf16', bf16Bits],
    ['fp16', fp16Bits],
  ] as const) {
    it(`encodes float32 to ${name}`, () => {
      const bits = testBits();
      const encoded = new Uint16Array(codec.encode(asFloats(bits), name).buffer);
      const wrong = bits.findIndex((x, i) => encoded[i] !== round(x));
      expect(wrong === -1 ? 'all equal' : `0x${bits[wrong].toString(16)}`).toBe('all equal');
    });
  }

  for (const [name, widen] of [
    ['bf16', (h: number) => (h << 16) >>> 0],
    ['fp16', fp16ToF32Bits],
  ] as const) {
    it(`decodes and adds every ${name} pattern`, () => {
      // Odd length: the kernels pad to 8 lanes, and the padding must never be copied out.
      const halves = Uint16Array.from({ length: 0x10001 }, (_, i) => (i * 40503) & 0xffff);
      const payload = new Uint8Array(halves.buffer);
      const decoded = new Float32Array(halves.length);
      codec.decodeInto(decoded, payload, name);
      const expected = Uint32Array.from(halves, widen);
      expect(Array.from(bitsOf(decoded))).toEqual(Array.from(expected));

      const target = Float32Array.from({ length: halves.length }, (_, i) => Math.sin(i) * 100);
      const reference = target.slice();
      const wide = asFloats(expected);
      for (let i = 0; i < reference.length; i++) reference[i] += wide[i];
      codec.addInto(target, payload, name);
      // NaN payloads may differ in their bits between engines' additions: compare as values.
      expect(Array.from(target)).toEqual(Array.from(reference));
    });
  }

  it('adds float32 payloads, also from unaligned buffers, and leaves the rest alone', () => {
    const n = 1003;
    const source = Float32Array.from({ length: n }, (_, i) => Math.cos(i) * 1e-3);
    const unaligned = new Uint8Array(n * 4 + 1).subarray(1);
    unaligned.set(new Uint8Array(source.buffer));
    const whole = Float32Array.from({ length: n + 5 }, (_, i) => i);
    const target = whole.subarray(2, 2 + n);
    const reference = target.slice();
    for (let i = 0; i < n; i++) reference[i] += source[i];
    codec.addInto(target, unaligned, undefined);
    expect(Array.from(target)).toEqual(Array.from(reference));
    expect([whole[0], whole[1], whole[n + 2], whole[n + 4]]).toEqual([0, 1, n + 2, n + 4]);
  });

  it('grows its memory for chunks larger than any before', () => {
    const big = Float32Array.from({ length: 3_000_001 }, (_, i) => i % 256);
    const bytes = codec.encode(big, 'bf16');
    const back = new Float32Array(big.length);
    codec.decodeInto(back, bytes, 'bf16');
    expect(Array.from(back.subarray(2_999_990))).toEqual(Array.from(big.subarray(2_999_990)));
  });
});
