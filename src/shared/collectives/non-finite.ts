/**
 * Index of the first NaN or ±Infinity in `values`, or -1 when all are finite.
 *
 * Check the gradient after the all-reduce, not before: a non-finite value on any
 * rank reaches every rank's sum, so every rank sees it and skips the same step
 * (as a loss scaler would), and no rank leaves the others waiting in a collective.
 */
export function findNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    // v - v is 0 for every finite v and NaN for NaN and ±Infinity.
    if (v - v !== 0) return i;
  }
  return -1;
}
