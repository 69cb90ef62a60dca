/** A run of whole parameters of the flat gradient, reduced as one operation. */
export interface Bucket {
  readonly index: number;
  /** Element range [start, end) in the flat gradient. */
  readonly start: number;
  readonly end: number;
  /** Parameter range [firstParameter, endParameter). */
  readonly firstParameter: number;
  readonly endParameter: number;
}

/** PyTorch DDP's defaults: a small first bucket so that communication starts early, then 25 MiB. */
export const DEFAULT_FIRST_BUCKET_BYTES = 1024 * 1024;
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

/**
 * Cuts parameters (element counts, in the fixed order of the flat gradient) into
 * buckets of whole parameters, from the LAST parameter to the first, as PyTorch DDP
 * does: the backward pass finishes the last layers' gradients first, so bucket 0 (the
 * small one) holds them and can leave while backward still runs for earlier layers.
 * A bucket closes once it holds at least `firstBucketBytes` (bucket 0) or
 * `bucketBytes` (the others) of float32, so a parameter larger than that fills a
 * bucket alone. Each bucket is still a contiguous range [start, end) of the flat
 * gradient; bucket i+1 ends where bucket i starts. Every rank computes the same plan
 * from the same layout and reduces the buckets in index order.
 */
export function planBuckets(
  parameterSizes: readonly number[],
  firstBucketBytes = DEFAULT_FIRST_BUCKET_BYTES,
  bucketBytes = DEFAULT_BUCKET_BYTES,
): Bucket[] {
  const buckets: Bucket[] = [];
  let end = parameterSizes.reduce((a, b) => a + b, 0);
  let endParameter = parameterSizes.length;
  let start = end;
  for (let p = parameterSizes.length - 1; p >= 0; p--) {
    start -= parameterSizes[p];
    const cap = buckets.length === 0 ? firstBucketBytes : bucketBytes;
    if ((end - start) * 4 >= cap || p === 0) {
      buckets.push({ index: buckets.length, start, end, firstParameter: p, endParameter });
      end = start;
      endParameter = p;
    }
  }
  return buckets;
}
