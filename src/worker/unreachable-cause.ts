import { lookup } from 'node:dns/promises';
import { probeTcp, splitAddress } from '../shared/transport/tcp-probe.js';

/** How long the TCP probe of unreachableCause waits for an answer. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * Why a gRPC channel to `address` (host:port or [v6]:port) does not connect, in words for the
 * user: grpc-js only says that it failed before its deadline. Looks the name up, then tries a
 * plain TCP connection: "the name X does not resolve (ENOTFOUND)", "nothing listens on X
 * (ECONNREFUSED)", ... Never throws.
 */
export async function unreachableCause(address: string): Promise<string> {
  const target = splitAddress(address);
  if (!target) return `"${address}" is not HOST:PORT`;
  try {
    await lookup(target.host);
  } catch (error) {
    return `the name ${target.host} does not resolve (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
  return (
    (await probeTcp(address, PROBE_TIMEOUT_MS)) ??
    `${address} accepts TCP connections but not this gRPC channel (TLS on one side only?)`
  );
}
