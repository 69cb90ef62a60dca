/**
 * SIMD kernels (WebAssembly text, assembled by wasm-power-sgd.ts) for the per-value work of
 * PowerSGD (power-sgd-hook.ts): its products cost seconds of CPU per step as JavaScript loops.
 * A is a parameter's gradient as a row-major R×C matrix (R = rows, C = cols); P is kept
 * TRANSPOSED, as Pᵀ [r×C], so that every product runs along the rows of A, which are contiguous:
 * 4 columns per SIMD operation, then the last C mod 4 columns one by one with the same float32
 * operations. Q is R×r. Pointers are byte offsets into the module's memory (any 4-byte
 * alignment); counts are values.
 *   add_into(dst, src, n)                         dst[i] += src[i]
 *   project_columns(a, rows, cols, q, rank, pt)   Pᵀ[j, c] = Σ_x A[x, c]·Q[x, j]    (P = Aᵀ·Q)
 *   project_rows(a, rows, cols, pt, rank, q)      Q[x, j] = Σ_c A[x, c]·Pᵀ[j, c]    (Q = A·P)
 *   expand_error(q, pt, rows, cols, rank, a, error, n)
 *                                                 M = A; A = Q·Pᵀ; error = M − A/n
 * Sums are accumulated in float32 (the JavaScript loops used float64), in an order fixed by the
 * shapes alone: the same inputs give the same bits on every rank and in every run. project_rows
 * keeps 4 partial sums (one per lane) and adds them as (s0 + s1) + (s2 + s3), then the tail.
 */

import {
  add,
  get,
  i32,
  load,
  locals,
  loop,
  mul,
  params,
  set,
  store,
  walk,
} from '../backend/wat-builder.js';

const fmul = (a: string, b: string) => `(f32x4.mul ${a} ${b})`;
const fadd = (a: string, b: string) => `(f32x4.add ${a} ${b})`;
const f32Load = (addr: string) => `(f32.load ${addr})`;
const f32Store = (addr: string, value: string) => `(f32.store ${addr} ${value})`;
const lane = (v: string, k: number) => `(f32x4.extract_lane ${k} ${v})`;
const ZERO = '(v128.const i64x2 0 0)';

/**
 * Sets `vectorEnd` and `end` for a row of `cols` values starting at byte `start`: SIMD up to
 * vectorEnd (the largest multiple of 4 values), scalar from there to end.
 */
const rowBounds = (start: string) => [
  set('end', add(start, get('rowBytes'))),
  set('vectorEnd', add(start, `(i32.and ${get('rowBytes')} ${i32(-16)})`)),
];

function addInto(): string {
  return `(func (export "add_into") ${params(['dst', 'src', 'n'])}
  ${locals(['end', 'vectorEnd', 'rowBytes', 'd', 's'], 'i32')}
  ${set('rowBytes', mul(get('n'), i32(4)))}
  ${set('d', get('dst'))}
  ${set('s', get('src'))}
  ${rowBounds(get('dst')).join('\n')}
  ${walk('d', get('vectorEnd'), [store(get('d'), fadd(load(get('d')), load(get('s')))), set('s', add(get('s'), i32(16)))], 16)}
  ${walk('d', get('end'), [f32Store(get('d'), `(f32.add ${f32Load(get('d'))} ${f32Load(get('s'))})`), set('s', add(get('s'), i32(4)))], 4)})`;
}

/**
 * Pᵀ = (Aᵀ·Q)ᵀ: row x of A, times Q[x, j], added into row j of Pᵀ; Pᵀ (r·C values, 8 KiB for
 * C = 512, r = 4) stays in cache while A streams through once.
 */
function projectColumns(): string {
  const perRank = [
    set('qs', f32Load(add(get('q'), mul(add(mul(get('x'), get('rank')), get('j')), i32(4))))),
    set('qv', `(f32x4.splat ${get('qs')})`),
    set('d', add(get('pt'), mul(get('j'), get('rowBytes')))),
    set('s', get('row')),
    walk(
      's',
      get('vectorEnd'),
      [store(get('d'), fadd(load(get('d')), fmul(load(get('s')), get('qv')))), step('d', 16)],
      16,
    ),
    walk(
      's',
      get('end'),
      [
        f32Store(
          get('d'),
          `(f32.add ${f32Load(get('d'))} (f32.mul ${f32Load(get('s'))} ${get('qs')}))`,
        ),
        step('d', 4),
      ],
      4,
    ),
  ];
  return `(func (export "project_columns") ${params(['a', 'rows', 'cols', 'q', 'rank', 'pt'])}
  ${locals(['x', 'j', 'row', 'd', 's', 'end', 'vectorEnd', 'rowBytes'], 'i32')}
  ${locals(['qs'], 'f32')}
  ${locals(['qv'], 'v128')}
  ${set('rowBytes', mul(get('cols'), i32(4)))}
  ${set('d', get('pt'))}
  ${walk('d', add(get('pt'), mul(get('rank'), get('rowBytes'))), [f32Store(get('d'), '(f32.const 0)')], 4)}
  ${loop('x', get('rows'), [set('row', add(get('a'), mul(get('x'), get('rowBytes')))), ...rowBounds(get('row')), loop('j', get('rank'), perRank)])})`;
}

/** Q[x, j] = row x of A · row j of Pᵀ: two contiguous rows per dot product. */
function projectRows(): string {
  const perRank = [
    set('acc', ZERO),
    set('s', get('row')),
    set('d', add(get('pt'), mul(get('j'), get('rowBytes')))),
    walk(
      's',
      get('vectorEnd'),
      [set('acc', fadd(get('acc'), fmul(load(get('s')), load(get('d'))))), step('d', 16)],
      16,
    ),
    set(
      'sum',
      `(f32.add (f32.add ${lane(get('acc'), 0)} ${lane(get('acc'), 1)}) (f32.add ${lane(get('acc'), 2)} ${lane(get('acc'), 3)}))`,
    ),
    walk(
      's',
      get('end'),
      [
        set('sum', `(f32.add ${get('sum')} (f32.mul ${f32Load(get('s'))} ${f32Load(get('d'))}))`),
        step('d', 4),
      ],
      4,
    ),
    f32Store(add(get('q'), mul(add(mul(get('x'), get('rank')), get('j')), i32(4))), get('sum')),
  ];
  return `(func (export "project_rows") ${params(['a', 'rows', 'cols', 'pt', 'rank', 'q'])}
  ${locals(['x', 'j', 'row', 'd', 's', 'end', 'vectorEnd', 'rowBytes'], 'i32')}
  ${locals(['sum'], 'f32')}
  ${locals(['acc'], 'v128')}
  ${set('rowBytes', mul(get('cols'), i32(4)))}
  ${loop('x', get('rows'), [set('row', add(get('a'), mul(get('x'), get('rowBytes')))), ...rowBounds(get('row')), loop('j', get('rank'), perRank)])})`;
}

/**
 * Row x of A becomes Σ_j Q[x, j]·(row j of Pᵀ), and row x of the error M − A/n, where M is what
 * A held: one pass over A and the error, Pᵀ in cache. The sum over j starts from 0 and runs in
 * order j = 0, 1, …, for the SIMD columns and the last ones alike.
 */
function expandError(): string {
  const qAt = (j: string) => add(get('q'), mul(add(mul(get('x'), get('rank')), get(j)), i32(4)));
  const ptAt = () => add(get('p'), mul(get('j'), get('rowBytes')));
  const vector = [
    set('acc', ZERO),
    set('p', add(get('s'), get('shift'))),
    loop('j', get('rank'), [
      set('acc', fadd(get('acc'), fmul(`(v128.load32_splat ${qAt('j')})`, load(ptAt())))),
    ]),
    set('m', load(get('s'))),
    store(get('s'), get('acc')),
    store(get('e'), `(f32x4.sub ${get('m')} (f32x4.div ${get('acc')} ${get('nv')}))`),
    step('e', 16),
  ];
  const scalar = [
    set('sum', '(f32.const 0)'),
    set('p', add(get('s'), get('shift'))),
    loop('j', get('rank'), [
      set('sum', `(f32.add ${get('sum')} (f32.mul ${f32Load(qAt('j'))} ${f32Load(ptAt())}))`),
    ]),
    set('ms', f32Load(get('s'))),
    f32Store(get('s'), get('sum')),
    f32Store(get('e'), `(f32.sub ${get('ms')} (f32.div ${get('sum')} ${get('ns')}))`),
    step('e', 4),
  ];
  // s walks the row of A; p is the same column's place in Pᵀ's row 0 (pt + (s − row)).
  const perRow = [
    set('row', add(get('a'), mul(get('x'), get('rowBytes')))),
    ...rowBounds(get('row')),
    set('s', get('row')),
    set('e', add(get('error'), mul(get('x'), get('rowBytes')))),
    set('shift', `(i32.sub ${get('pt')} ${get('row')})`),
    walk('s', get('vectorEnd'), vector, 16),
    walk('s', get('end'), scalar, 4),
  ];
  return `(func (export "expand_error") ${params(['q', 'pt', 'rows', 'cols', 'rank', 'a', 'error', 'n'])}
  ${locals(['x', 'j', 'row', 's', 'e', 'p', 'shift', 'end', 'vectorEnd', 'rowBytes'], 'i32')}
  ${locals(['sum', 'ms', 'ns'], 'f32')}
  ${locals(['acc', 'm', 'nv'], 'v128')}
  ${set('rowBytes', mul(get('cols'), i32(4)))}
  ${set('ns', `(f32.convert_i32_u ${get('n')})`)}
  ${set('nv', `(f32x4.splat ${get('ns')})`)}
  ${loop('x', get('rows'), perRow)})`;
}

/** `pointer += bytes` */
function step(pointer: string, bytes: number): string {
  return set(pointer, add(get(pointer), i32(bytes)));
}

/** The module's functions (the caller wraps them in a module with a memory). */
export function powerSgdWat(): string {
  return [addInto(), projectColumns(), projectRows(), expandError()].join('\n');
}
