import { lookup } from 'node:dns/promises';
import { connect } from 'node:net';

/** How long the TCP probe of unreachableCause waits for an answer. */
const PROBE_TIMEOUT_MS = 2000;

/**
 * Why a gRPC channel to `address` (host:port or [v6]:port) does not connect, in words for the
 * user: grpc-js only says that it failed before its deadline. Looks the name up, then tries a
 * plain TCP connection: "the name X does not resolve (ENOTFOUND)", "nothing listens on X
 * (ECONNREFUSED)", ... Never throws.
 */
export async function unreachableCause(address: string): Promise<string> {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  if (!match) return `"${address}" is not HOST:PORT`;
  const [, host, port] = match;
  try {
    await lookup(host);
  } catch (error) {
    return `the name ${host} does not resolve (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
  }
  return new Promise((resolve) => {
    const socket = connect({ host, port: Number(port) });
    const done = (cause: string) => {
      socket.destroy();
      resolve(cause);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () =>
      done(`${address} does not answer (no TCP connection within ${PROBE_TIMEOUT_MS} ms)`),
    );
    socket.once('connect', () =>
      done(`${address} accepts TCP connections but not this gRPC channel (TLS on one side only?)`),
    );
    socket.once('error', (error: NodeJS.ErrnoException) =>
      done(
        error.code === 'ECONNREFUSED'
          ? `nothing listens on ${address} (ECONNREFUSED)`
          : `${address}: ${error.code ?? error.message}`,
      ),
    );
  });
}
