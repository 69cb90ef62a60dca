import { log } from '../shared/logging/logger.js';
import {
  type ChannelEvents,
  type Command,
  type ControlChannel,
  RunFailure,
} from './control-channel.js';

/** How long a worker's own failure report waits for a root cause (another worker lost) to arrive. */
const REPORT_GRACE_MS = 1500;
const WATCH_PERIOD_MS = 1000;

/**
 * The control channels of the running world, by rank, and the run's first failure. Every wait
 * of the coordinator goes through all(), which rejects as soon as the run fails; the run fails
 * when a worker disconnects, breaks the protocol, reports an error, or sends nothing for
 * `silenceTimeoutMs` (the step timeout: a step blocks a worker's event loop, so it may be
 * silent for as long as its longest step). The first failure wins; a worker's report of its own
 * failure waits briefly, because it is usually the echo of another worker's death, and the
 * death names the culprit.
 */
export class WorkerGroup implements ChannelEvents {
  readonly channels: ControlChannel[] = [];
  private failure: RunFailure | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (error: RunFailure) => void;
  private reportTimer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;

  constructor(private readonly silenceTimeoutMs: number) {
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => undefined);
  }

  get size(): number {
    return this.channels.length;
  }

  /** The run's failure, once it has one. */
  get error(): RunFailure | undefined {
    return this.failure;
  }

  add(channel: ControlChannel): void {
    this.channels[channel.rank] = channel;
  }

  /** Starts watching for silent workers. */
  watch(): void {
    let lastCheck = Date.now();
    this.watchTimer = setInterval(() => {
      const now = Date.now();
      // After this process was busy (a checkpoint, an export), messages that arrived meanwhile
      // are still unread: judge silence on the next round, once they have been.
      const late = now - lastCheck > 2 * WATCH_PERIOD_MS;
      lastCheck = now;
      if (late) return;
      for (const c of this.channels) {
        if (now - c.lastHeard > this.silenceTimeoutMs) {
          this.fail(
            new RunFailure(
              `${c.label} sent nothing for ${Math.round((now - c.lastHeard) / 1000)} s (the --step-timeout is ${this.silenceTimeoutMs / 1000} s) while ${c.activity}`,
            ),
          );
          return;
        }
      }
    }, WATCH_PERIOD_MS);
    this.watchTimer.unref();
  }

  /** fn applied to every channel, in parallel; rejects with the run's failure as soon as there is one. */
  all<T>(fn: (channel: ControlChannel) => Promise<T>): Promise<T[]> {
    if (this.failure) return Promise.reject(this.failure);
    const work = Promise.all(this.channels.map(fn));
    // Rejections after the run failed are the same failure.
    work.catch(() => undefined);
    return Promise.race([work, this.failed]);
  }

  /** Sends each rank its command (`commandFor` may give each its own). */
  send(commandFor: (channel: ControlChannel) => Command, activity?: string): Promise<void> {
    return this.all((c) => c.send(commandFor(c), activity)).then(() => undefined);
  }

  /** Fails the run now with `error` (the first failure wins). */
  fail(error: RunFailure): void {
    if (this.failure) return;
    this.failure = error;
    clearTimeout(this.reportTimer);
    for (const c of this.channels) c?.fail(error);
    this.rejectFailed(error);
  }

  lost(_channel: ControlChannel, error: RunFailure): void {
    this.fail(error);
  }

  broken(_channel: ControlChannel, error: RunFailure): void {
    this.fail(error);
  }

  reported(channel: ControlChannel, message: string): void {
    log().warn({ rank: channel.rank }, `${channel.label} failed: ${message}`);
    if (this.failure || this.reportTimer) return;
    this.reportTimer = setTimeout(
      () => this.fail(new RunFailure(`${channel.label} failed: ${message}`)),
      REPORT_GRACE_MS,
    );
  }

  /** Ends every stream with a StopCommand (`error` empty: the run completed) and stops watching. */
  stop(error: string): void {
    clearInterval(this.watchTimer);
    clearTimeout(this.reportTimer);
    for (const c of this.channels) c?.stop(error);
  }
}
