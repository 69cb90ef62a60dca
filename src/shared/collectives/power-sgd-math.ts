/**
 * The matrix products of PowerSGD on a gradient as tfjs lays it out. A weight of shape
 * [d0, …, dk−1] is the row-major matrix A of R = d0·…·dk−2 rows and C = dk−1 columns (the output
 * units last: a dense kernel [in, out], a conv kernel [kh, kw, in, out]). PyTorch's PowerSGD works
 * on M = the weight as [out, rest] (a conv kernel [out, in, kh, kw] viewed as [out, in·kh·kw]),
 * which is Aᵀ up to the order of the rest: so here P = Mᵀ-side is C×r and Q is R×r, exactly as in
 * PyTorch, with P = M·Q = Aᵀ·Q and Q = Mᵀ·P = A·P, and M ≈ P·Qᵀ, i.e. A ≈ Q·Pᵀ.
 * All matrices are row-major Float32Arrays; sums are accumulated in float64.
 */

/** p[C×r] = Aᵀ·q for a[R×C], q[R×r]. */
export function projectColumns(
  a: Float32Array,
  rows: number,
  cols: number,
  q: Float32Array,
  rank: number,
  p: Float32Array,
): void {
  const acc = new Float64Array(cols * rank);
  for (let x = 0; x < rows; x++) {
    const aRow = x * cols;
    const qRow = x * rank;
    for (let c = 0; c < cols; c++) {
      const value = a[aRow + c];
      if (value === 0) continue;
      const out = c * rank;
      for (let j = 0; j < rank; j++) acc[out + j] += value * q[qRow + j];
    }
  }
  p.set(acc);
}

/** q[R×r] = A·p for a[R×C], p[C×r]. */
export function projectRows(
  a: Float32Array,
  rows: number,
  cols: number,
  p: Float32Array,
  rank: number,
  q: Float32Array,
): void {
  const acc = new Float64Array(rank);
  for (let x = 0; x < rows; x++) {
    acc.fill(0);
    const aRow = x * cols;
    for (let c = 0; c < cols; c++) {
      const value = a[aRow + c];
      const pRow = c * rank;
      for (let j = 0; j < rank; j++) acc[j] += value * p[pRow + j];
    }
    for (let j = 0; j < rank; j++) q[x * rank + j] = acc[j];
  }
}

/** a[R×C] = q·pᵀ for q[R×r], p[C×r]: the low-rank approximation, written over `a`. */
export function expand(
  q: Float32Array,
  p: Float32Array,
  rows: number,
  cols: number,
  rank: number,
  a: Float32Array,
): void {
  for (let x = 0; x < rows; x++) {
    const qRow = x * rank;
    for (let c = 0; c < cols; c++) {
      const pRow = c * rank;
      let sum = 0;
      for (let j = 0; j < rank; j++) sum += q[qRow + j] * p[pRow + j];
      a[x * cols + c] = sum;
    }
  }
}

/**
 * Makes the r columns of p[n×r] orthonormal, in place, by Gram-Schmidt (PyTorch's
 * `_orthogonalize` for small ranks; its QR for larger ranks spans the same columns). A column
 * that vanishes stays zero instead of dividing by zero (PyTorch adds an epsilon for that). Runs
 * in float64 and is deterministic: every rank gets the same bits from the same input.
 */
export function orthonormalizeColumns(p: Float32Array, n: number, rank: number): void {
  const m = Float64Array.from(p);
  for (let i = 0; i < rank; i++) {
    let norm = 0;
    for (let r = 0; r < n; r++) norm += m[r * rank + i] ** 2;
    norm = Math.sqrt(norm);
    if (norm > 0) for (let r = 0; r < n; r++) m[r * rank + i] /= norm;
    for (let k = i + 1; k < rank; k++) {
      let dot = 0;
      for (let r = 0; r < n; r++) dot += m[r * rank + i] * m[r * rank + k];
      for (let r = 0; r < n; r++) m[r * rank + k] -= dot * m[r * rank + i];
    }
  }
  p.set(m);
}
