import { signalExitCode } from '../errors.js';
import { log } from '../logging/logger.js';

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;
/** How long the cleanups of a second signal may take before the process exits anyway. */
const FORCE_CLEANUP_MS = 2000;
/** How long a coordinator or worker whose part is over waits for its connections to close. */
const LINGER_MS = 3000;

export interface GracefulStop {
  /** Aborted by the first SIGINT or SIGTERM; its reason is the signal's name. */
  readonly signal: AbortSignal;
  /** Runs `cleanup` (e.g. killing child processes) before a second signal exits the process. */
  onForce(cleanup: () => Promise<void> | void): void;
  /** Stops listening: signals get their default behaviour again. */
  dispose(): void;
}

export interface GracefulStopOptions {
  /**
   * Ignore SIGINT: a worker started by `train --workers` shares the launcher's terminal, whose
   * Ctrl-C reaches the whole process group; the launcher stops the run in order instead.
   */
  ignoreSigint?: boolean;
}

/**
 * The one way a tfjs-ddp process reacts to SIGINT and SIGTERM, in every phase: the first signal
 * logs `<SIGNAL>: <what> (again to quit now)` once, at INFO, and aborts `signal`, which every
 * wait of the process observes (joins, connects, steps); a second one runs the onForce cleanups
 * (at most 2 s) and exits with the signal's code (130 or 143).
 */
export function gracefulStop(what: string, opts: GracefulStopOptions = {}): GracefulStop {
  const controller = new AbortController();
  const cleanups: (() => Promise<void> | void)[] = [];
  const onSignal = (signal: NodeJS.Signals) => {
    if (signal === 'SIGINT' && opts.ignoreSigint) return;
    if (!controller.signal.aborted) {
      log().info(`${signal}: ${what} (again to quit now)`);
      controller.abort(signal);
      return;
    }
    log().info(`${signal} again: quitting now`);
    const deadline = new Promise((resolve) => setTimeout(resolve, FORCE_CLEANUP_MS).unref());
    const cleaned = Promise.allSettled(cleanups.map(async (cleanup) => cleanup()));
    void Promise.race([cleaned, deadline]).then(() => process.exit(signalExitCode(signal)));
  };
  for (const name of SIGNALS) process.on(name, onSignal);
  return {
    signal: controller.signal,
    onForce: (cleanup) => cleanups.push(cleanup),
    dispose: () => {
      for (const name of SIGNALS) process.off(name, onSignal);
    },
  };
}

/**
 * Called when a coordinator's or a worker's part of the run is over: a connection that lingers
 * (a stalled peer that was dropped never closes its stream) must not keep the process up. The
 * timer does not itself hold the process: one with nothing left open exits at once.
 */
export function exitAfterLinger(): void {
  setTimeout(() => process.exit(), LINGER_MS).unref();
}
