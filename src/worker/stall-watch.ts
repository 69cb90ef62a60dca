/** How often the watch looks at the clock. */
const TICK_MS = 1000;

/**
 * How long this process's event loop has stood still since the watch started: stopped
 * (SIGSTOP), starved of CPU, or blocked by a step. A worker that stood still past the step
 * timeout has been dropped by its coordinator (it sent nothing meanwhile), so a connection
 * that ends then is no sign of a coordinator gone.
 */
export class StallWatch {
  private last = Date.now();
  private longest = 0;
  private readonly timer = setInterval(() => this.look(), TICK_MS).unref();

  /** The longest stall so far in ms, the one in progress included (it may just have ended). */
  get longestMs(): number {
    this.look();
    return this.longest;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private look(): void {
    const now = Date.now();
    this.longest = Math.max(this.longest, now - this.last - TICK_MS);
    this.last = now;
  }
}
