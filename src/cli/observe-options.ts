import type { ObserveSettings } from '../coordinator/observe/run-observers.js';
import { parseTraceSteps } from '../coordinator/observe/trace-writer.js';
import { UserError } from '../shared/errors.js';

/** The flags of seeing a run (OBSERVE_FLAGS), as readFlags returns them. */
export interface ObserveFlags {
  httpPort: number;
  httpToken?: string;
  trace?: boolean;
  traceSteps?: string;
}

/**
 * What the flags mean: the server on `host` (0: none), guarded by --http-token or else
 * `joinToken`; the trace when --trace or --trace-steps is given.
 */
export function observeSettings(
  flags: ObserveFlags,
  host: string,
  joinToken?: string,
): ObserveSettings {
  if (flags.httpPort > 65535) {
    throw new UserError(`--http-port: expected a port up to 65535 (got ${flags.httpPort})`);
  }
  const token = flags.httpToken ?? joinToken;
  return {
    httpPort: flags.httpPort,
    httpHost: host,
    ...(token ? { httpToken: token } : {}),
    ...(flags.trace || flags.traceSteps !== undefined
      ? { trace: parseTraceSteps(flags.traceSteps) }
      : {}),
  };
}
