/**
 * WebAssembly (text format, SIMD) for the transforms of Winograd's F(2×2, 3×3) convolution,
 * run on the tfjs wasm heap (simd-module.ts assembles them with the backend's memory). All pointers are byte
 * offsets into that heap; all tensors are float32, channels last, with channel counts that are
 * multiples of 4 (one v128 holds 4 channels). Loops over tiles are scalar, loops over channels
 * are 4 channels at a time.
 *
 * With Bᵀ, G, Aᵀ the F(2×2, 3×3) matrices (Lavin & Gray 2016),
 *   y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A for each 4×4 input tile d (stride 2) and 2×2 output tile,
 *   ∂L/∂g = Gᵀ[Σ_tiles (A ∂y Aᵀ) ⊙ (Bᵀ d B)]G,
 * where ⊙ runs over the 16 tile positions and is, across channels, one matrix product per
 * position (done by XNNPACK, see wasm-winograd.ts). Exported functions:
 *   wino_in(x, zero, out, N, H, W, C, pt, pl, tH, tW, T): x [N,H,W,C] → Bᵀ d B as [16, T, C]
 *   wino_out(m, bias, relu, y, N, oH, oW, K, tH, tW):     [16, N·tH·tW, K] → y [N,oH,oW,K]
 *   wino_filter(g, u, C, K):                             g [3,3,C,K] → G g Gᵀ as [16, C, K]
 *   wino_dy(dy, zero, out, N, oH, oW, K, tH, tW, T):      dy [N,oH,oW,K] → A dy Aᵀ as [16, T, K]
 *   wino_wout(m, out, C, K):                             [16, C, K] → Gᵀ m G as [3,3,C,K]
 * Tile (ti, tj) covers output rows 2ti…2ti+1 and input rows 2ti−pt…2ti−pt+3; tiles are numbered
 * t = (n·tH + ti)·tW + tj < N·tH·tW ≤ T, and T (the planes' length) leaves the rest untouched.
 * `zero` points at ≥ C (or K) zero floats, read in place of pixels outside the image. wino_out
 * adds `bias` (a [K] pointer, 0 for none) and applies ReLU when `relu` is 1.
 */

import {
  add,
  fadd,
  fsub,
  get,
  half,
  i32,
  load,
  locals,
  loop,
  mul,
  names,
  params,
  range,
  set,
  store,
} from './wat-builder.js';

/** Byte address of pixel (n, y, x) of an [N, H, W, C] tensor, or `zero` when outside it. */
const pixelFunc = `(func $px ${params(['base', 'zero', 'n', 'y', 'x', 'H', 'W', 'pixelBytes'])} (result i32)
  (if (result i32) (i32.and (i32.lt_u ${get('y')} ${get('H')}) (i32.lt_u ${get('x')} ${get('W')}))
    (then ${add(get('base'), mul(add(mul(add(mul(get('n'), get('H')), get('y')), get('W')), get('x')), get('pixelBytes')))})
    (else ${get('zero')})))`;

/** Loops over tiles: n, ti, tj, with t the running tile index. */
function tileLoops(body: string[]): string {
  return [
    set('t', i32(0)),
    loop('n', get('N'), [
      loop('ti', get('tH'), [loop('tj', get('tW'), [...body, set('t', add(get('t'), i32(1)))])]),
    ]),
  ].join('\n');
}

const pixel = (
  base: string,
  zero: string,
  y: string,
  x: string,
  h: string,
  w: string,
  bytes: string,
) => `(call $px ${get(base)} ${get(zero)} ${get('n')} ${y} ${x} ${get(h)} ${get(w)} ${get(bytes)})`;

/** 1-D input transform Bᵀd of 4 values. */
const bt = (d: string[]) => [
  fsub(d[0], d[2]),
  fadd(d[1], d[2]),
  fsub(d[2], d[1]),
  fsub(d[1], d[3]),
];
/** 1-D output transform Aᵀm of 4 values. */
const at = (m: string[]) => [fadd(fadd(m[0], m[1]), m[2]), fsub(fsub(m[1], m[2]), m[3])];
/** 1-D filter transform G g of 3 values. */
const gt = (g: string[]) => [
  g[0],
  half(fadd(fadd(g[0], g[1]), g[2])),
  half(fadd(fsub(g[0], g[1]), g[2])),
  g[2],
];
/** 1-D gradient transform A dy of 2 values. */
const ag = (d: string[]) => [
  d[0],
  fadd(d[0], d[1]),
  fsub(d[0], d[1]),
  fsub(`(v128.const i64x2 0 0)`, d[1]),
];
/** 1-D filter-gradient transform Gᵀm of 4 values. */
const gtm = (m: string[]) => [
  fadd(m[0], half(fadd(m[1], m[2]))),
  half(fsub(m[1], m[2])),
  fadd(half(fadd(m[1], m[2])), m[3]),
];

/**
 * A separable 2-D transform of an rows×cols block held in locals `${src}${r}${c}`, first along
 * rows (f1 on each column), then along columns (f2 on each row); results in `${dst}${r}${c}`.
 */
function separable(
  src: string,
  tmp: string,
  dst: string,
  rows: number,
  cols: number,
  f1: (v: string[]) => string[],
  f2: (v: string[]) => string[],
): string[] {
  const out: string[] = [];
  let mid = 0;
  for (const c of range(cols)) {
    const col = f1(range(rows).map((r) => get(`${src}${r}${c}`)));
    mid = col.length;
    out.push(...col.map((v, r) => set(`${tmp}${r}${c}`, v)));
  }
  for (const r of range(mid)) {
    const row = f2(range(cols).map((c) => get(`${tmp}${r}${c}`)));
    out.push(...row.map((v, c) => set(`${dst}${r}${c}`, v)));
  }
  return out;
}

function winoIn(): string {
  const body = tileLoops([
    ...range(4).flatMap((r) =>
      range(4).map((q) =>
        set(
          `p${r}${q}`,
          pixel(
            'x',
            'zero',
            `(i32.sub ${add(mul(get('ti'), i32(2)), i32(r))} ${get('pt')})`,
            `(i32.sub ${add(mul(get('tj'), i32(2)), i32(q))} ${get('pl')})`,
            'H',
            'W',
            'cb',
          ),
        ),
      ),
    ),
    set('ob', add(get('out'), mul(get('t'), get('cb')))),
    loop(
      'o',
      get('cb'),
      [
        ...names('d', 4, 4).map((d) => set(d, load(add(get(`p${d.slice(1)}`), get('o'))))),
        ...separable('d', 'r', 'v', 4, 4, bt, bt),
        ...names('v', 4, 4).map((v, i) =>
          store(add(add(get('ob'), get('o')), mul(i32(i), get('plane'))), get(v)),
        ),
      ],
      16,
    ),
  ]);
  return `(func (export "wino_in") ${params(['x', 'zero', 'out', 'N', 'H', 'W', 'C', 'pt', 'pl', 'tH', 'tW', 'T'])}
  ${locals(['n', 'ti', 'tj', 't', 'o', 'ob', 'cb', 'plane', ...names('p', 4, 4)], 'i32')}
  ${locals([...names('d', 4, 4), ...names('r', 4, 4), ...names('v', 4, 4)], 'v128')}
  ${set('cb', mul(get('C'), i32(4)))}
  ${set('plane', mul(get('T'), get('cb')))}
  ${body})`;
}

function winoOut(): string {
  const row = (a: number) => add(mul(get('ti'), i32(2)), i32(a));
  const col = (b: number) => add(mul(get('tj'), i32(2)), i32(b));
  const outAddr = (a: number, b: number) =>
    add(
      add(
        get('y'),
        mul(add(mul(add(mul(get('n'), get('oH')), row(a)), get('oW')), col(b)), get('kb')),
      ),
      get('o'),
    );
  const finish = (
    v: string,
  ) => `(if ${get('bias')} (then ${set(v, fadd(get(v), load(add(get('bias'), get('o')))))}))
    (if ${get('relu')} (then ${set(v, `(f32x4.max ${get(v)} (v128.const i64x2 0 0))`)}))`;
  const body = tileLoops([
    set('mb', add(get('m'), mul(get('t'), get('kb')))),
    set('rowOk', `(i32.lt_u ${row(1)} ${get('oH')})`),
    set('colOk', `(i32.lt_u ${col(1)} ${get('oW')})`),
    loop(
      'o',
      get('kb'),
      [
        ...names('m', 4, 4).map((m, i) =>
          set(m, load(add(add(get('mb'), get('o')), mul(i32(i), get('plane'))))),
        ),
        ...separable('m', 's', 'y', 4, 4, at, at),
        ...names('y', 2, 2).map(finish),
        store(outAddr(0, 0), get('y00')),
        `(if ${get('colOk')} (then ${store(outAddr(0, 1), get('y01'))}))`,
        `(if ${get('rowOk')} (then ${store(outAddr(1, 0), get('y10'))}
          (if ${get('colOk')} (then ${store(outAddr(1, 1), get('y11'))}))))`,
      ],
      16,
    ),
  ]);
  return `(func (export "wino_out") ${params(['m', 'bias', 'relu', 'y', 'N', 'oH', 'oW', 'K', 'tH', 'tW'])}
  ${locals(['n', 'ti', 'tj', 't', 'o', 'mb', 'kb', 'plane', 'rowOk', 'colOk'], 'i32')}
  ${locals([...names('m', 4, 4), ...names('s', 2, 4), ...names('y', 2, 2)], 'v128')}
  ${set('kb', mul(get('K'), i32(4)))}
  ${set('plane', mul(mul(mul(get('N'), get('tH')), get('tW')), get('kb')))}
  ${body})`;
}

function winoFilter(): string {
  const body = loop('c', get('C'), [
    loop(
      'o',
      get('kb'),
      [
        ...names('g', 3, 3).map((g, i) =>
          set(
            g,
            load(
              add(mul(add(mul(i32(i), get('C')), get('c')), get('kb')), add(get('g'), get('o'))),
            ),
          ),
        ),
        ...separable('g', 'h', 'u', 3, 3, gt, gt),
        ...names('u', 4, 4).map((u, i) =>
          store(
            add(mul(add(mul(i32(i), get('C')), get('c')), get('kb')), add(get('u'), get('o'))),
            get(u),
          ),
        ),
      ],
      16,
    ),
  ]);
  return `(func (export "wino_filter") ${params(['g', 'u', 'C', 'K'])}
  ${locals(['c', 'o', 'kb'], 'i32')}
  ${locals([...names('g', 3, 3), ...names('h', 4, 3), ...names('u', 4, 4)], 'v128')}
  ${set('kb', mul(get('K'), i32(4)))}
  ${body})`;
}

function winoDy(): string {
  const body = tileLoops([
    ...range(2).flatMap((a) =>
      range(2).map((b) =>
        set(
          `p${a}${b}`,
          pixel(
            'dy',
            'zero',
            add(mul(get('ti'), i32(2)), i32(a)),
            add(mul(get('tj'), i32(2)), i32(b)),
            'oH',
            'oW',
            'kb',
          ),
        ),
      ),
    ),
    set('ob', add(get('out'), mul(get('t'), get('kb')))),
    loop(
      'o',
      get('kb'),
      [
        ...names('d', 2, 2).map((d) => set(d, load(add(get(`p${d.slice(1)}`), get('o'))))),
        ...separable('d', 'e', 'v', 2, 2, ag, ag),
        ...names('v', 4, 4).map((v, i) =>
          store(add(add(get('ob'), get('o')), mul(i32(i), get('plane'))), get(v)),
        ),
      ],
      16,
    ),
  ]);
  return `(func (export "wino_dy") ${params(['dy', 'zero', 'out', 'N', 'oH', 'oW', 'K', 'tH', 'tW', 'T'])}
  ${locals(['n', 'ti', 'tj', 't', 'o', 'ob', 'kb', 'plane', ...names('p', 2, 2)], 'i32')}
  ${locals([...names('d', 2, 2), ...names('e', 4, 2), ...names('v', 4, 4)], 'v128')}
  ${set('kb', mul(get('K'), i32(4)))}
  ${set('plane', mul(get('T'), get('kb')))}
  ${body})`;
}

function winoWout(): string {
  const body = loop('c', get('C'), [
    loop(
      'o',
      get('kb'),
      [
        ...names('m', 4, 4).map((m, i) =>
          set(
            m,
            load(
              add(mul(add(mul(i32(i), get('C')), get('c')), get('kb')), add(get('m'), get('o'))),
            ),
          ),
        ),
        ...separable('m', 'h', 'w', 4, 4, gtm, gtm),
        ...names('w', 3, 3).map((w, i) =>
          store(
            add(mul(add(mul(i32(i), get('C')), get('c')), get('kb')), add(get('out'), get('o'))),
            get(w),
          ),
        ),
      ],
      16,
    ),
  ]);
  return `(func (export "wino_wout") ${params(['m', 'out', 'C', 'K'])}
  ${locals(['c', 'o', 'kb'], 'i32')}
  ${locals([...names('m', 4, 4), ...names('h', 3, 4), ...names('w', 3, 3)], 'v128')}
  ${set('kb', mul(get('K'), i32(4)))}
  ${body})`;
}

/** The Winograd functions, for simd-module.ts to assemble. */
export function winogradWat(): string {
  return [pixelFunc, winoIn(), winoOut(), winoFilter(), winoDy(), winoWout()].join('\n');
}
