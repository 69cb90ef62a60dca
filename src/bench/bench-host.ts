/**
 * Where a benchmark's child process runs: a network namespace of an EmulatedNetwork
 * (none: this process's own) and the address it binds to and is reached at there.
 */
export interface BenchHost {
  netns?: string;
  address: string;
}

/** The host of every child when no network is emulated. */
export const LOOPBACK: BenchHost = { address: '127.0.0.1' };

/** How BenchChild tells a child its address (the hidden bench commands take no flags). */
export const BENCH_HOST_ENV = 'TFJS_DDP_BENCH_HOST';

/** In a bench child: the address to bind to and be reached at. */
export function benchAddress(): string {
  return process.env[BENCH_HOST_ENV] || LOOPBACK.address;
}
