/**
 * Puts the workers' wall clocks onto the coordinator's, so that the ranks' spans line up on
 * one timeline. A worker on the coordinator's host shares its clock: offset 0, exactly.
 * For one elsewhere, every StepMetrics carries the worker's clock when it was sent, and the
 * coordinator notes when it had the step's metrics of every rank: collected − sent = offset +
 * delay, so the smallest difference seen so far is the estimate. It errs by the shortest
 * delay seen (the network's one-way latency plus how long the rank's message waited for the
 * slowest rank's, which finish the same all-reduce at nearly the same time), and only ever
 * gets better.
 */
export class ClockOffsets {
  private readonly offsets = new Map<number, number>();
  private readonly local = new Set<number>();

  /** `rank` runs on the coordinator's host. */
  sameHost(rank: number): void {
    this.local.add(rank);
    this.offsets.set(rank, 0);
  }

  /** A message of `rank` sent at `sentMs` (its clock) was in hand at `collectedMs` (ours). */
  observe(rank: number, sentMs: number, collectedMs: number): void {
    if (!(sentMs > 0) || this.local.has(rank)) return;
    const candidate = collectedMs - sentMs;
    const known = this.offsets.get(rank);
    if (known === undefined || candidate < known) this.offsets.set(rank, candidate);
  }

  /** `rank`'s time `ms` on the coordinator's clock. */
  toCoordinator(rank: number, ms: number): number {
    return ms + (this.offsets.get(rank) ?? 0);
  }
}
