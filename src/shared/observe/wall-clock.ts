import { performance } from 'node:perf_hooks';

let anchor: number | undefined;

/**
 * The system's wall clock in ms since the epoch, with performance.now()'s resolution: the one
 * clock the coordinator's and the workers' timeline spans share. performance.timeOrigin is
 * not good enough for that: it is taken once at start-up, and a process preempted then
 * (a loaded machine) starts several ms off. Here the anchor is taken when Date.now() ticks
 * (a wait of at most 1 ms, once per process), so on one host all processes agree to a few µs.
 */
export function wallClockMs(): number {
  if (anchor === undefined) {
    const before = Date.now();
    let tick = Date.now();
    while (tick === before) tick = Date.now();
    anchor = tick - performance.now();
  }
  return anchor + performance.now();
}

/** The wall-clock time (see wallClockMs) of an earlier performance.now() reading. */
export function wallClockAt(performanceMs: number): number {
  return wallClockMs() - (performance.now() - performanceMs);
}
