/**
 * How PowerSGD's matrices are laid out here, and the one step that stays in JavaScript. A weight
 * of shape [d0, …, dk−1] is the row-major matrix A of R = d0·…·dk−2 rows and C = dk−1 columns
 * (the output units last: a dense kernel [in, out], a conv kernel [kh, kw, in, out]). PyTorch's
 * PowerSGD works on M = the weight as [out, rest] (a conv kernel [out, in, kh, kw] viewed as
 * [out, in·kh·kw]), which is Aᵀ up to the order of the rest: so here P is C×r and Q is R×r,
 * exactly as in PyTorch, with P = M·Q = Aᵀ·Q and Q = Mᵀ·P = A·P, and M ≈ P·Qᵀ, i.e. A ≈ Q·Pᵀ.
 * P is kept transposed, as Pᵀ [r×C], so that the products (power-sgd-wat.ts) run along A's
 * contiguous rows; Q is R×r (as the checkpoint stores it).
 */

/**
 * Makes the r rows of pt[r×n] (the columns of P) orthonormal, in place, by Gram-Schmidt
 * (PyTorch's `_orthogonalize` for small ranks; its QR for larger ranks spans the same columns).
 * A row that vanishes stays zero instead of dividing by zero (PyTorch adds an epsilon for that).
 * Runs in float64 on r·C values, too few to be worth a kernel, and is deterministic: every rank
 * gets the same bits from the same input.
 */
export function orthonormalizeRows(pt: Float32Array, rank: number, n: number): void {
  const m = Float64Array.from(pt);
  for (let i = 0; i < rank; i++) {
    const row = m.subarray(i * n, (i + 1) * n);
    let norm = 0;
    for (let c = 0; c < n; c++) norm += row[c] ** 2;
    norm = Math.sqrt(norm);
    if (norm > 0) for (let c = 0; c < n; c++) row[c] /= norm;
    for (let k = i + 1; k < rank; k++) {
      const other = m.subarray(k * n, (k + 1) * n);
      let dot = 0;
      for (let c = 0; c < n; c++) dot += row[c] * other[c];
      for (let c = 0; c < n; c++) other[c] -= dot * row[c];
    }
  }
  pt.set(m);
}
