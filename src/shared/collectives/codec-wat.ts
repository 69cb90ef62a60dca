/**
 * SIMD kernels (WebAssembly text, assembled by wasm-codec.ts) that encode gradient chunks for the
 * wire and add received chunks into an accumulator, 8 values per iteration: the JavaScript loops
 * of payload-codec.ts cost more CPU per byte than the bytes they save on a fast link. Pointers are
 * byte offsets into the module's own memory; n is a multiple of 8. Each kernel computes exactly
 * what its scalar twin in payload-codec.ts computes (tested bit for bit):
 *   encode_bf16(src, dst, n)  dst[i] = bf16(src[i])          src float32, dst 16-bit
 *   encode_fp16(src, dst, n)  dst[i] = fp16(src[i])
 *   decode_bf16(dst, src, n)  dst[i] = float32(src[i])
 *   decode_fp16(dst, src, n)
 *   add_f32(acc, src, n)      acc[i] += src[i]                 acc float32
 *   add_bf16(acc, src, n)     acc[i] += float32(src[i])
 *   add_fp16(acc, src, n)
 */

import { add, get, i32, load, locals, params, set, store } from '../backend/wat-builder.js';

const splat = (n: number) => `(i32x4.splat ${i32(n)})`;
const and = (a: string, b: string) => `(v128.and ${a} ${b})`;
const or = (a: string, b: string) => `(v128.or ${a} ${b})`;
const shr = (a: string, bits: number) => `(i32x4.shr_u ${a} ${i32(bits)})`;
const shl = (a: string, bits: number) => `(i32x4.shl ${a} ${i32(bits)})`;
const iadd = (a: string, b: string) => `(i32x4.add ${a} ${b})`;
const isub = (a: string, b: string) => `(i32x4.sub ${a} ${b})`;
const pick = (ifTrue: string, ifFalse: string, mask: string) =>
  `(v128.bitselect ${ifTrue} ${ifFalse} ${mask})`;

/**
 * bf16 bits of the float32 bits in `x` (one per i32 lane): round to nearest even by adding
 * 0x7fff plus the lowest kept bit, a NaN made quiet; overflow lands on infinity.
 */
function bf16Lanes(x: string): string {
  const nan = `(i32x4.gt_u ${and(x, splat(0x7fffffff))} ${splat(0x7f800000)})`;
  const rounded = shr(iadd(iadd(x, splat(0x7fff)), and(shr(x, 16), splat(1))), 16);
  return pick(or(shr(x, 16), splat(0x40)), rounded, nan);
}

/**
 * fp16 bits of the float32 bits in `x`, ties to even: normal results by rebiasing the exponent
 * and rounding the 13 dropped bits as bf16Lanes does; subnormal results (|x| < 2⁻¹⁴) by one
 * float32 addition of 0.5, whose ulp is 2⁻²⁴, the fp16 subnormal step; |x| ≥ 65536 gives
 * infinity (the rounding gives it from 65520 up), a NaN a quiet NaN.
 */
function fp16Lanes(x: string): string {
  const a = and(x, splat(0x7fffffff));
  const normal = shr(
    iadd(isub(a, splat(112 << 23)), iadd(splat(0xfff), and(shr(a, 13), splat(1)))),
    13,
  );
  const subnormal = isub(`(f32x4.add ${a} (v128.const f32x4 0.5 0.5 0.5 0.5))`, splat(0x3f000000));
  let bits = pick(subnormal, normal, `(i32x4.lt_u ${a} ${splat(0x38800000)})`);
  bits = pick(splat(0x7c00), bits, `(i32x4.ge_u ${a} ${splat(0x47800000)})`);
  bits = pick(splat(0x7e00), bits, `(i32x4.gt_u ${a} ${splat(0x7f800000)})`);
  return or(bits, shr(and(x, splat(0x80000000)), 16));
}

/** float32 bits of the bf16 bits in `h` (one per i32 lane, upper half zero). */
const bf16ToF32 = (h: string) => shl(h, 16);

/** float32 bits of the fp16 bits in `h`: rebias the exponent; subnormals as (1 + m/1024)·2⁻¹⁴ − 2⁻¹⁴. */
function fp16ToF32(h: string): string {
  const em = shl(and(h, splat(0x7fff)), 13);
  const exponent = and(h, splat(0x7c00));
  const subnormal = `(f32x4.sub ${iadd(em, splat(113 << 23))} ${splat(113 << 23)})`;
  let bits = pick(subnormal, iadd(em, splat(112 << 23)), `(i32x4.eq ${exponent} ${splat(0)})`);
  bits = pick(iadd(em, splat(224 << 23)), bits, `(i32x4.eq ${exponent} ${splat(0x7c00)})`);
  return or(bits, shl(and(h, splat(0x8000)), 16));
}

/** A loop over n values, 8 per iteration: `f32` and `u16` are the byte offsets of the two sides. */
function kernel(name: string, args: [string, string], body: string[]): string {
  return `(func (export "${name}") ${params([...args, 'n'])}
  ${locals(['i'], 'i32')}
  ${locals(['lo', 'hi', 'h'], 'v128')}
  (block $done (loop $next
    (br_if $done (i32.ge_u ${get('i')} ${get('n')}))
    ${body.join('\n    ')}
    ${set('i', add(get('i'), i32(8)))}
    (br $next))))`;
}

const f32At = (base: string, lane: number) =>
  add(get(base), add(`(i32.shl ${get('i')} ${i32(2)})`, i32(lane * 16)));
const u16At = (base: string) => add(get(base), `(i32.shl ${get('i')} ${i32(1)})`);

function encode(name: string, lanes: (x: string) => string): string {
  return kernel(
    name,
    ['src', 'dst'],
    [
      set('lo', lanes(load(f32At('src', 0)))),
      set('hi', lanes(load(f32At('src', 1)))),
      store(u16At('dst'), `(i16x8.narrow_i32x4_u ${get('lo')} ${get('hi')})`),
    ],
  );
}

/** Decodes 8 16-bit values at `src` into two float32 vectors, then stores or adds them at `dst`. */
function decode(name: string, toF32: (h: string) => string, accumulate: boolean): string {
  const put = (lane: number, value: string) =>
    store(
      f32At('dst', lane),
      accumulate ? `(f32x4.add ${load(f32At('dst', lane))} ${value})` : value,
    );
  return kernel(
    name,
    ['dst', 'src'],
    [
      set('h', load(u16At('src'))),
      put(0, toF32(`(i32x4.extend_low_i16x8_u ${get('h')})`)),
      put(1, toF32(`(i32x4.extend_high_i16x8_u ${get('h')})`)),
    ],
  );
}

function addF32(): string {
  const lane = (k: number) =>
    store(f32At('dst', k), `(f32x4.add ${load(f32At('dst', k))} ${load(f32At('src', k))})`);
  return kernel('add_f32', ['dst', 'src'], [lane(0), lane(1)]);
}

/** The module's functions (the caller wraps them in a module with a memory). */
export function codecWat(): string {
  return [
    encode('encode_bf16', bf16Lanes),
    encode('encode_fp16', fp16Lanes),
    decode('decode_bf16', bf16ToF32, false),
    decode('decode_fp16', fp16ToF32, false),
    decode('add_bf16', bf16ToF32, true),
    decode('add_fp16', fp16ToF32, true),
    addF32(),
  ].join('\n');
}
