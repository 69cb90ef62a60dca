/**
 * Puts the workers' wall clocks onto the coordinator's, so that the ranks' spans line up on
 * one timeline. Every StepMetrics carries the worker's clock when it was sent; the coordinator
 * notes when it arrived. arrival − sent = offset + one-way delay, so the smallest difference
 * seen so far is the offset plus the shortest delay: the estimate errs by at most that delay
 * (well under a millisecond on loopback, where all ranks share one clock anyway), and only
 * ever gets better. Unknown ranks get offset 0.
 */
export class ClockOffsets {
  private readonly offsets = new Map<number, number>();

  /** A message of `rank` sent at `sentMs` (its clock) arrived at `arrivedMs` (ours). */
  observe(rank: number, sentMs: number, arrivedMs: number): void {
    if (!(sentMs > 0)) return;
    const candidate = arrivedMs - sentMs;
    const known = this.offsets.get(rank);
    if (known === undefined || candidate < known) this.offsets.set(rank, candidate);
  }

  /** `rank`'s time `ms` on the coordinator's clock. */
  toCoordinator(rank: number, ms: number): number {
    return ms + (this.offsets.get(rank) ?? 0);
  }
}
