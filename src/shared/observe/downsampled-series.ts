/** A point of a series: a position (the step) and numeric values. */
export type SeriesPoint = { step: number } & Record<string, number>;

/**
 * A series of at most `capacity` points, however long the run: when it is full, the older half
 * is thinned by merging neighbouring points (their mean, positioned at the later step), so the
 * recent past stays at full resolution and memory stays bounded. Amortised O(1) per point.
 */
export class DownsampledSeries<P extends SeriesPoint> {
  private points: P[] = [];

  constructor(private readonly capacity = 600) {
    if (capacity < 4) throw new Error('a downsampled series needs room for at least 4 points');
  }

  push(point: P): void {
    this.points.push(point);
    if (this.points.length >= this.capacity) this.thin();
  }

  /** The points, oldest first (a copy). */
  values(): P[] {
    return [...this.points];
  }

  get length(): number {
    return this.points.length;
  }

  private thin(): void {
    const half = Math.floor(this.points.length / 2);
    const merged: P[] = [];
    for (let i = 0; i + 1 < half; i += 2) merged.push(mean(this.points[i], this.points[i + 1]));
    if (half % 2 === 1) merged.push(this.points[half - 1]);
    this.points = [...merged, ...this.points.slice(half)];
  }
}

function mean<P extends SeriesPoint>(a: P, b: P): P {
  const out: Record<string, number> = {};
  for (const key of Object.keys(b)) out[key] = key === 'step' ? b.step : (a[key] + b[key]) / 2;
  return out as P;
}
