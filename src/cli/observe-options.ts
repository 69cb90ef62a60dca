import type { Command } from 'commander';
import type { ObserveSettings } from '../coordinator/observe/run-observers.js';
import { parseTraceSteps } from '../coordinator/observe/trace-writer.js';
import { UserError } from '../shared/errors.js';
import { envOption, wholeNumber } from './distributed-options.js';

/** The flags of seeing a run, as commander hands them over. */
export interface ObserveFlags {
  httpPort: string;
  httpToken?: string;
  trace?: boolean;
  traceSteps?: string;
}

export const DEFAULT_HTTP_PORT = 7080;

/** Adds --http-port, --http-token, --trace and --trace-steps (train and coordinator). */
export function addObserveOptions(command: Command): Command {
  return command
    .addOption(
      envOption(
        '--http-port <port>',
        'serve the live dashboard and Prometheus /metrics on this port (0: off)',
      ).default(String(DEFAULT_HTTP_PORT)),
    )
    .addOption(
      envOption(
        '--http-token <str>',
        'token the dashboard and /metrics ask for (default: the join token, if any)',
      ),
    )
    .addOption(envOption('--trace', 'write trace.json (Chrome trace events) into the run folder'))
    .addOption(
      envOption(
        '--trace-steps <a:b>',
        'with --trace, record steps A to B only (default: 1:1000; A: for A on)',
      ),
    );
}

/** Validates the flags; `host` is where the server listens, `joinToken` guards it by default. */
export function parseObserveFlags(
  flags: ObserveFlags,
  host: string,
  joinToken?: string,
): ObserveSettings {
  const port = wholeNumber('--http-port', flags.httpPort, 0);
  if (port > 65535) throw new UserError(`--http-port: expected a port up to 65535 (got ${port})`);
  const token = flags.httpToken ?? joinToken;
  return {
    httpPort: port,
    httpHost: host,
    ...(token ? { httpToken: token } : {}),
    ...(flags.trace || flags.traceSteps !== undefined
      ? { trace: parseTraceSteps(flags.traceSteps) }
      : {}),
  };
}
