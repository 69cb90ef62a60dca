import { performance } from 'node:perf_hooks';
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
  /** Steps done before this process started (a resumed run): not part of its speed. */
  startStep?: number;
  /** Where the bar goes (stderr: stdout is for command output). */
  stream?: NodeJS.WriteStream;
  /** Seconds between log lines when the stream is not a terminal. */
  logEverySeconds?: number;
}

/**
 * The bar's line: at most 76 columns with realistic figures ("ep 10/90 [##########] loss
 * 2.3026 acc 99.9% 20000 img/s ETA 12h03m val 99.9%"), so that an 80-column terminal, which
 * cuts longer lines at the right, keeps the ETA and the validation accuracy.
 */
const BAR_FORMAT = 'ep {epoch} [{bar}] loss {loss} acc {acc}% {ips} img/s ETA {eta}{val}';

/**
 * Training progress for people. In a terminal: one progress bar per epoch (Keras-style: each
 * finished epoch's line stays, with its validation accuracy); otherwise (pipes, CI, Kubernetes)
 * a log line every `logEverySeconds` and one per evaluation. The ETA is the whole run's, at
 * the pace of this process so far (evaluations and checkpoints included).
 */
export class TrainingProgress {
  private bar: cliProgress.SingleBar | undefined;
  private readonly tty: boolean;
  private lastLog = 0;
  private readonly started = performance.now();
  /** The latest validation accuracy, shown on every later bar. */
  private val = '';

  constructor(private readonly opts: ProgressOptions) {
    this.tty = (opts.stream ?? process.stderr).isTTY === true;
  }

  /** Seconds left in the run at the pace so far, after `step` steps. */
  eta(step: number): number {
    const done = step - (this.opts.startStep ?? 0);
    if (done <= 0) return Number.NaN;
    const perStep = (performance.now() - this.started) / 1000 / done;
    return perStep * (this.opts.totalSteps - step);
  }

  /** Call after every step. */
  update(f: ProgressFigures): void {
    if (!this.tty) {
      const now = Date.now();
      if (now - this.lastLog >= (this.opts.logEverySeconds ?? 10) * 1000) {
        this.lastLog = now;
        log().info(
          {
            step: f.step,
            of: this.opts.totalSteps,
            epoch: f.epoch,
            ...rounded(f),
            etaSeconds: Math.round(this.eta(f.step)),
          },
          `step ${f.step}/${this.opts.totalSteps} epoch ${f.epoch + 1}: loss ${f.loss.toFixed(4)}, ` +
            `accuracy ${(100 * f.accuracy).toFixed(1)}%, ${Math.round(f.imagesPerSec)} images/s, ` +
            `ETA ${formatDuration(this.eta(f.step))}`,
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
      eta: formatDuration(this.eta(f.step)),
      val: this.val,
    };
    if (!this.bar) {
      this.bar = new cliProgress.SingleBar(
        {
          stream: this.opts.stream ?? process.stderr,
          format: BAR_FORMAT,
          barsize: 10,
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
    this.val = ` val ${(100 * accuracy).toFixed(1)}%`;
    if (this.bar) {
      this.bar.update({ val: this.val });
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

/** "42s", "12m03s", "3h07m"; "?" before the pace is known. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
}
