import cliProgress from 'cli-progress';
import { log } from '../logging/logger.js';

export interface DownloadProgress {
  /** Called as bytes arrive; `total` is undefined when the server sent no length. */
  update(received: number, total: number | undefined): void;
  /** Ends the display (call once, on success or failure). */
  stop(): void;
}

const LOG_INTERVAL_MS = 5000;
const MIB = 1024 * 1024;

/**
 * Shows a download's progress: a bar on stderr when it is a terminal, otherwise a log
 * line at most every 5 s (so CI and Kubernetes logs show it is alive without flooding).
 */
export function downloadProgress(what: string): DownloadProgress {
  return process.stderr.isTTY ? barProgress(what) : logProgress(what);
}

function barProgress(what: string): DownloadProgress {
  const bar = new cliProgress.SingleBar(
    {
      format: `${what} [{bar}] {percentage}% | {received}/{size} MiB | {speed} MiB/s | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const started = Date.now();
  let running = false;
  return {
    update(received, total) {
      const payload = {
        received: (received / MIB).toFixed(1),
        size: total === undefined ? '?' : (total / MIB).toFixed(1),
        speed: (received / MIB / Math.max((Date.now() - started) / 1000, 0.001)).toFixed(1),
      };
      if (!running) {
        bar.start(total ?? 0, received, payload);
        running = true;
      } else {
        if (total !== undefined) bar.setTotal(total);
        bar.update(received, payload);
      }
    },
    stop() {
      if (running) bar.stop();
    },
  };
}

function logProgress(what: string): DownloadProgress {
  const started = Date.now();
  let lastLog = started;
  let last = { received: 0, total: undefined as number | undefined };
  const report = () => {
    const { received, total } = last;
    const seconds = (Date.now() - started) / 1000;
    log().info(
      {
        receivedBytes: received,
        totalBytes: total,
        mibPerSecond: Number((received / MIB / Math.max(seconds, 0.001)).toFixed(2)),
      },
      `${what}: ${(received / MIB).toFixed(1)}` +
        (total === undefined
          ? ' MiB'
          : ` of ${(total / MIB).toFixed(1)} MiB (${Math.floor((100 * received) / total)}%)`),
    );
  };
  return {
    update(received, total) {
      last = { received, total };
      if (Date.now() - lastLog >= LOG_INTERVAL_MS) {
        lastLog = Date.now();
        report();
      }
    },
    stop() {
      if (last.received > 0) report();
    },
  };
}
