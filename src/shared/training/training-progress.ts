import cliProgress from 'cli-progress';
import { log } from '../logging/logger.js';

/** The figures shown after each step: running means over the current epoch. */
export interface ProgressFigures {
  /** Steps completed in the run. */
  step: number;
  epoch: number;
  loss: number;
  accuracy: number;
  imagesPerSec: number;
}

export interface ProgressOptions {
  totalSteps: number;
  stepsPerEpoch: number;
  /** Where the bar goes (stderr: stdout is for command output). */
  stream?: NodeJS.WriteStream;
  /** Seconds between log lines when the stream is not a terminal. */
  logEverySeconds?: number;
}

/**
 * Training progress for people. In a terminal: one progress bar per epoch (Keras-style: each
 * finished epoch's line stays, with its validation accuracy); otherwise (pipes, CI, Kubernetes)
 * a log line every `logEverySeconds` and one per evaluation.
 */
export class TrainingProgress {
  private bar: cliProgress.SingleBar | undefined;
  private readonly tty: boolean;
  private lastLog = 0;

  constructor(private readonly opts: ProgressOptions) {
    this.tty = (opts.stream ?? process.stderr).isTTY === true;
  }

  /** Call after every step. */
  update(f: ProgressFigures): void {
    if (!this.tty) {
      const now = Date.now();
      if (now - this.lastLog >= (this.opts.logEverySeconds ?? 10) * 1000) {
        this.lastLog = now;
        log().info(
          { step: f.step, of: this.opts.totalSteps, epoch: f.epoch, ...rounded(f) },
          `step ${f.step}/${this.opts.totalSteps} epoch ${f.epoch + 1}: loss ${f.loss.toFixed(4)}, ` +
            `accuracy ${(100 * f.accuracy).toFixed(1)}%, ${Math.round(f.imagesPerSec)} images/s`,
        );
      }
      return;
    }
    const { stepsPerEpoch, totalSteps } = this.opts;
    const epochStart = f.epoch * stepsPerEpoch;
    const payload = {
      epoch: `${f.epoch + 1}/${Math.ceil(totalSteps / stepsPerEpoch)}`,
      loss: f.loss.toFixed(4),
      acc: (100 * f.accuracy).toFixed(1),
      ips: Math.round(f.imagesPerSec),
      val: '',
    };
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: this.opts.stream ?? process.stderr,
          format:
            'epoch {epoch} [{bar}] {value}/{total} | loss {loss} acc {acc}% | {ips} img/s | ETA {eta_formatted}{val}',
          barsize: 24,
          hideCursor: true,
        },
        cliProgress.Presets.legacy,
      );
      const end = Math.min(epochStart + stepsPerEpoch, totalSteps);
      this.bar.start(end - epochStart, f.step - epochStart - 1, payload);
    }
    this.bar.update(f.step - epochStart, payload);
  }

  /** Call after each evaluation; in a terminal it closes the epoch's bar with the result. */
  evaluated(step: number, epoch: number, accuracy: number, loss: number): void {
    const text = `validation accuracy ${(100 * accuracy).toFixed(2)}%, loss ${loss.toFixed(4)}`;
    if (this.bar) {
      this.bar.update({ val: ` | val ${(100 * accuracy).toFixed(2)}%` });
      this.bar.stop();
      this.bar = undefined;
    } else {
      log().info({ step, epoch, valAccuracy: accuracy, valLoss: loss }, `step ${step}: ${text}`);
    }
  }

  /** Closes the bar (at the end, or when interrupted). */
  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

function rounded(f: ProgressFigures): Record<string, number> {
  return {
    loss: Number(f.loss.toFixed(5)),
    accuracy: Number(f.accuracy.toFixed(5)),
    imagesPerSec: Math.round(f.imagesPerSec),
  };
}
