/**
 * Small builders for WebAssembly text (WAT) written from TypeScript: the SIMD kernels of
 * winograd-wat.ts and simd-kernels-wat.ts are generated from these, so that their repetitive
 * parts (16 tile positions, 4×8 register blocks) are loops here rather than pages of text.
 * Values are i32 byte addresses and counts, and v128 vectors of 4 float32.
 */

export const range = (n: number) => Array.from({ length: n }, (_, i) => i);
export const get = (name: string) => `(local.get $${name})`;
export const set = (name: string, value: string) => `(local.set $${name} ${value})`;
export const i32 = (n: number) => `(i32.const ${n})`;
export const add = (a: string, b: string) => `(i32.add ${a} ${b})`;
export const mul = (a: string, b: string) => `(i32.mul ${a} ${b})`;
export const fadd = (a: string, b: string) => `(f32x4.add ${a} ${b})`;
export const fsub = (a: string, b: string) => `(f32x4.sub ${a} ${b})`;
export const half = (a: string) => `(f32x4.mul ${a} (v128.const f32x4 0.5 0.5 0.5 0.5))`;
export const load = (addr: string) => `(v128.load ${addr})`;
export const store = (addr: string, value: string) => `(v128.store ${addr} ${value})`;
export const params = (names: string[]) => names.map((n) => `(param $${n} i32)`).join(' ');
export const locals = (names: string[], type: string) =>
  names.map((n) => `(local $${n} ${type})`).join(' ');

/** `while (v < limit) { body; v += step }`, from v's current value. */
export function walk(v: string, limit: string, body: string[], step = 1): string {
  return [
    `(block $${v}_end (loop $${v}_next`,
    `(br_if $${v}_end (i32.ge_u ${get(v)} ${limit}))`,
    ...body,
    set(v, add(get(v), i32(step))),
    `(br $${v}_next)))`,
  ].join('\n');
}

/** `for (v = 0; v < limit; v += step) body` */
export function loop(v: string, limit: string, body: string[], step = 1): string {
  return [set(v, i32(0)), walk(v, limit, body, step)].join('\n');
}

export const names = (prefix: string, rows: number, cols: number) =>
  range(rows).flatMap((r) => range(cols).map((c) => `${prefix}${r}${c}`));
