import { format } from 'node:util';
import { setLogger } from '@grpc/grpc-js';
import { log } from './logger.js';

/**
 * Sends grpc-js's own log lines (`E No address added out of total 1 resolved`, ...) to our
 * logger at DEBUG: every failure they describe already reaches the user as one clear line of
 * ours. Someone debugging grpc-js itself (GRPC_VERBOSITY or GRPC_TRACE set) keeps its output.
 */
export function routeGrpcLogs(): void {
  if (process.env.GRPC_VERBOSITY || process.env.GRPC_NODE_VERBOSITY || process.env.GRPC_TRACE) {
    return;
  }
  const debug = (message?: unknown, ...params: unknown[]) =>
    log().debug({ source: 'grpc-js' }, format(message, ...params));
  setLogger({ error: debug, info: debug, debug });
}
