/** The median of a non-empty list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** One size of an all-reduce benchmark, as nccl-tests reports it. */
export interface BandwidthRow {
  bytes: number;
  /** Median over the timed iterations of the slowest rank's time. */
  ms: number;
  /** bytes / time. */
  algbwMBps: number;
  /** algbw × 2(N−1)/N: the rate each rank's link runs at in a bandwidth-optimal all-reduce. */
  busbwMBps: number;
  /** busbw / the raw TCP reference of the same run. */
  fractionOfTcp: number;
}

/**
 * The nccl-tests figures for one size. `timesMs[r][i]` is rank r's time of
 * iteration i; an iteration lasts until its slowest rank is done. MB = 10^6 bytes.
 */
export function bandwidthRow(
  bytes: number,
  timesMs: readonly (readonly number[])[],
  tcpReferenceMBps: number,
): BandwidthRow {
  const n = timesMs.length;
  const iterations = timesMs[0].map((_, i) => Math.max(...timesMs.map((ranks) => ranks[i])));
  const ms = median(iterations);
  const algbwMBps = bytes / (ms / 1000) / 1e6;
  const busbwMBps = (algbwMBps * 2 * (n - 1)) / n;
  return { bytes, ms, algbwMBps, busbwMBps, fractionOfTcp: busbwMBps / tcpReferenceMBps };
}
