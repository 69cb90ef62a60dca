/**
 * SIMD kernels (WebAssembly text) for the wasm backend's training path that are not Winograd
 * transforms but run on the same module (simd-module.ts): the filter gradient's products, column
 * sums and the max-pool gradient. Pointers are byte offsets into the tfjs heap.
 *   gemm_tn_acc(a, b, out, M, N, T):                    out[M,N] += a[T,M]ᵀ·b[T,N]
 *   column_sum(x, out, R, cols):                        out[cols] = Σ_r x[R, cols]
 *   max_pool_grad(x, y, dy, dx, N, H, W, C, oH, oW, kh, kw, sh, sw, pt, pl)
 */

import {
  add,
  fadd,
  get,
  i32,
  load,
  locals,
  loop,
  mul,
  params,
  range,
  set,
  store,
} from './wat-builder.js';

/**
 * out[M, N] += Aᵀ·B for A [T, M] and B [T, N], row-major, M % 4 = 0, N % 8 = 0: the filter
 * gradient's per-position products Vᵀ·Ĝ, whose operands are both large (T is the tile count), so
 * that XNNPACK's fully-connected operator would spend more time packing its "weights" than
 * multiplying; and both come as the transforms write them, with no transpose. A 4×8 register
 * block: per t, one load of A[t, i…i+3] whose lanes are splatted in turn, times two B vectors,
 * over chunks of 256 values of t so that the chunks of A and B stay in cache across blocks.
 */
function gemmTnAcc(): string {
  const acc = range(4).flatMap((r) => [`acc${r}0`, `acc${r}1`]);
  const lane = (r: number) => {
    const bytes = range(16).map((k) => r * 4 + (k % 4));
    return `(i8x16.shuffle ${bytes.join(' ')} ${get('avec')} ${get('avec')})`;
  };
  const fma = (accName: string, b: string) =>
    set(accName, fadd(get(accName), `(f32x4.mul ${get('av')} ${b})`));
  const inner = [
    set('avec', load(get('pa'))),
    set('bv0', load(get('pb'))),
    set('bv1', load(add(get('pb'), i32(16)))),
    ...range(4).flatMap((r) => [
      set('av', lane(r)),
      fma(`acc${r}0`, get('bv0')),
      fma(`acc${r}1`, get('bv1')),
    ]),
    set('pa', add(get('pa'), get('mb'))),
    set('pb', add(get('pb'), get('nb'))),
  ];
  const block = [
    ...acc.map((a) => set(a, '(v128.const i64x2 0 0)')),
    set('pa', add(add(get('a'), mul(get('t0'), get('mb'))), mul(get('i'), i32(4)))),
    set('pb', add(add(get('b'), mul(get('t0'), get('nb'))), get('j'))),
    set('pend', add(get('pb'), mul(get('tn'), get('nb')))),
    `(block $t_end (loop $t_next (br_if $t_end (i32.ge_u ${get('pb')} ${get('pend')}))`,
    ...inner,
    '(br $t_next)))',
    ...range(4).flatMap((r) => {
      const o = add(add(get('out'), mul(add(get('i'), i32(r)), get('nb'))), get('j'));
      return [
        store(o, fadd(load(o), get(`acc${r}0`))),
        store(add(o, i32(16)), fadd(load(add(o, i32(16))), get(`acc${r}1`))),
      ];
    }),
  ];
  const body = [
    set('t0', i32(0)),
    '(block $chunk_end (loop $chunk_next',
    `(br_if $chunk_end (i32.ge_u ${get('t0')} ${get('T')}))`,
    set(
      'tn',
      `(select ${i32(256)} (i32.sub ${get('T')} ${get('t0')}) (i32.lt_u ${i32(256)} (i32.sub ${get('T')} ${get('t0')})))`,
    ),
    loop('i', get('M'), [loop('j', get('nb'), block, 32)], 4),
    set('t0', add(get('t0'), i32(256))),
    '(br $chunk_next)))',
  ];
  return `(func (export "gemm_tn_acc") ${params(['a', 'b', 'out', 'M', 'N', 'T'])}
  ${locals(['t0', 'tn', 'i', 'j', 'mb', 'nb', 'pa', 'pb', 'pend'], 'i32')}
  ${locals([...acc, 'av', 'avec', 'bv0', 'bv1'], 'v128')}
  ${set('mb', mul(get('M'), i32(4)))}
  ${set('nb', mul(get('N'), i32(4)))}
  ${body.join('\n')})`;
}

/**
 * out[c] = Σ_r x[r, c] for x [R, cols], cols % 4 = 0: per-channel sums over N·H·W (BatchNorm
 * statistics and gradients, bias gradients). Rows are summed in blocks of 128 in registers and
 * the block sums added to `out`, which keeps float32 rounding error near √(R)·ε rather than R·ε.
 */
function columnSum(): string {
  const body = [
    loop('c', get('cb'), [store(add(get('out'), get('c')), '(v128.const i64x2 0 0)')], 16),
    set('r0', i32(0)),
    '(block $chunk_end (loop $chunk_next',
    `(br_if $chunk_end (i32.ge_u ${get('r0')} ${get('R')}))`,
    set(
      'rn',
      `(select ${i32(128)} (i32.sub ${get('R')} ${get('r0')}) (i32.lt_u ${i32(128)} (i32.sub ${get('R')} ${get('r0')})))`,
    ),
    loop(
      'c',
      get('cb'),
      [
        set('acc', '(v128.const i64x2 0 0)'),
        set('p', add(add(get('x'), mul(get('r0'), get('cb'))), get('c'))),
        set('pend', add(get('p'), mul(get('rn'), get('cb')))),
        `(block $r_end (loop $r_next (br_if $r_end (i32.ge_u ${get('p')} ${get('pend')}))`,
        set('acc', fadd(get('acc'), load(get('p')))),
        set('p', add(get('p'), get('cb'))),
        '(br $r_next)))',
        store(add(get('out'), get('c')), fadd(load(add(get('out'), get('c'))), get('acc'))),
      ],
      16,
    ),
    set('r0', add(get('r0'), i32(128))),
    '(br $chunk_next)))',
  ];
  return `(func (export "column_sum") ${params(['x', 'out', 'R', 'cols'])}
  ${locals(['c', 'cb', 'r0', 'rn', 'p', 'pend'], 'i32')}
  ${locals(['acc'], 'v128')}
  ${set('cb', mul(get('cols'), i32(4)))}
  ${body.join('\n')})`;
}

/**
 * MaxPoolGrad for any window, stride and padding: each window's gradient is added to its first
 * maximum in row-major order (as tfjs' reference kernels do), found by comparing its inputs with
 * the pool's output; windows outside the image are skipped. 4 channels at a time, then the
 * remaining channels one by one. dx must be zeroed beforehand (overlapping windows add up).
 */
function maxPoolGrad(): string {
  const tap = add(get('px'), get('o'));
  const target = add(get('dx'), `(i32.sub ${tap} ${get('x')})`);
  const vector = [
    set('yv', load(add(get('py'), get('o')))),
    set('gv', load(add(get('pg'), get('o')))),
    set('taken', '(v128.const i64x2 0 0)'),
    windowLoop([
      set('e', `(v128.andnot (f32x4.eq ${load(tap)} ${get('yv')}) ${get('taken')})`),
      set('taken', `(v128.or ${get('taken')} ${get('e')})`),
      store(target, fadd(load(target), `(v128.and ${get('gv')} ${get('e')})`)),
    ]),
  ];
  const scalar = [
    set('ys', `(f32.load ${add(get('py'), get('o'))})`),
    set('gs', `(f32.load ${add(get('pg'), get('o'))})`),
    set('done', i32(0)),
    windowLoop([
      `(if (i32.and (f32.eq (f32.load ${tap}) ${get('ys')}) (i32.eqz ${get('done')})) (then`,
      set('done', i32(1)),
      `(f32.store ${target} (f32.add (f32.load ${target}) ${get('gs')}))))`,
    ]),
  ];
  const body = [
    loop('n', get('N'), [
      loop('i', get('oH'), [
        loop('j', get('oW'), [
          set(
            'py',
            add(
              get('y'),
              mul(
                add(mul(add(mul(get('n'), get('oH')), get('i')), get('oW')), get('j')),
                get('cb'),
              ),
            ),
          ),
          set('pg', add(get('g'), `(i32.sub ${get('py')} ${get('y')})`)),
          loop('o', get('vb'), vector, 16),
          set('o', get('vb')),
          `(block $s_end (loop $s_next (br_if $s_end (i32.ge_u ${get('o')} ${get('cb')}))`,
          ...scalar,
          set('o', add(get('o'), i32(4))),
          '(br $s_next)))',
        ]),
      ]),
    ]),
  ];
  return `(func (export "max_pool_grad") ${params(['x', 'y', 'g', 'dx', 'N', 'H', 'W', 'C', 'oH', 'oW', 'kh', 'kw', 'sh', 'sw', 'pt', 'pl'])}
  ${locals(['n', 'i', 'j', 'o', 'a', 'b', 'ih', 'iw', 'cb', 'vb', 'px', 'py', 'pg', 'done'], 'i32')}
  ${locals(['yv', 'gv', 'e', 'taken'], 'v128')}
  ${locals(['ys', 'gs'], 'f32')}
  ${set('cb', mul(get('C'), i32(4)))}
  ${set('vb', mul(`(i32.and ${get('C')} (i32.const -4))`, i32(4)))}
  ${body.join('\n')})`;
}

/** Runs `body` for each tap (a, b) of window (i, j) inside the image, with px its pixel's address. */
function windowLoop(body: string[]): string {
  return loop('a', get('kh'), [
    set('ih', `(i32.sub ${add(mul(get('i'), get('sh')), get('a'))} ${get('pt')})`),
    `(if (i32.lt_u ${get('ih')} ${get('H')}) (then`,
    loop('b', get('kw'), [
      set('iw', `(i32.sub ${add(mul(get('j'), get('sw')), get('b'))} ${get('pl')})`),
      `(if (i32.lt_u ${get('iw')} ${get('W')}) (then`,
      set(
        'px',
        add(
          get('x'),
          mul(add(mul(add(mul(get('n'), get('H')), get('ih')), get('W')), get('iw')), get('cb')),
        ),
      ),
      ...body,
      '))',
    ]),
    '))',
  ]);
}

/** The kernels, for simd-module.ts to assemble. */
export function simdKernelsWat(): string {
  return [gemmTnAcc(), columnSum(), maxPoolGrad()].join('\n');
}
