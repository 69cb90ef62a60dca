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
 * buckets of whole parameters: a bucket closes once it holds at least
 * `firstBucketBytes` (the first) or `bucketBytes` (the others) of float32, so a
 * parameter larger than that fills a bucket alone. Every rank computes the same
 * plan from the same layout.
 */
export function planBuckets(
  parameterSizes: readonly number[],
  firstBucketBytes = DEFAULT_FIRST_BUCKET_BYTES,
  bucketBytes = DEFAULT_BUCKET_BYTES,
): Bucket[] {
  const buckets: Bucket[] = [];
  let start = 0;
  let firstParameter = 0;
  let end = 0;
  parameterSizes.forEach((size, p) => {
    end += size;
    const cap = buckets.length === 0 ? firstBucketBytes : bucketBytes;
    const last = p === parameterSizes.length - 1;
    if ((end - start) * 4 >= cap || last) {
      buckets.push({ index: buckets.length, start, end, firstParameter, endParameter: p + 1 });
      start = end;
      firstParameter = p + 1;
    }
  });
  return buckets;
}
