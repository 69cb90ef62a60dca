import { connect } from 'node:net';

/** HOST:PORT or [v6]:PORT, split; undefined when `address` is neither. */
export function splitAddress(address: string): { host: string; port: number } | undefined {
  const match = /^\[?([^\]]+?)\]?:(\d+)$/.exec(address);
  return match ? { host: match[1], port: Number(match[2]) } : undefined;
}

/**
 * Tries a plain TCP connection to `address` (HOST:PORT or [v6]:PORT) and closes it at once.
 * Resolves with undefined when something accepts it, else with why not in words ("nothing
 * listens on X (ECONNREFUSED)", "X does not answer ..."). A process's listening socket accepts
 * even while its event loop is blocked (the kernel completes the handshake), so an answer
 * means the process is alive, however busy. Never throws.
 */
export function probeTcp(address: string, timeoutMs: number): Promise<string | undefined> {
  const target = splitAddress(address);
  if (!target) return Promise.resolve(`"${address}" is not HOST:PORT`);
  return new Promise((resolve) => {
    const socket = connect(target);
    const done = (cause: string | undefined) => {
      socket.destroy();
      resolve(cause);
    };
    socket.setTimeout(timeoutMs, () =>
      done(`${address} does not answer (no TCP connection within ${timeoutMs} ms)`),
    );
    socket.once('connect', () => done(undefined));
    socket.once('error', (error: NodeJS.ErrnoException) =>
      done(
        error.code === 'ECONNREFUSED'
          ? `nothing listens on ${address} (ECONNREFUSED)`
          : `${address}: ${error.code ?? error.message}`,
      ),
    );
  });
}
