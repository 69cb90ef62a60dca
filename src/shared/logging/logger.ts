import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * The process-wide logger. Logs go to stderr so that `--json` output on stdout
 * stays machine-readable. In a terminal they are pretty-printed; otherwise
 * (pipes, CI, Kubernetes) they are one JSON object per line.
 * LOG_LEVEL overrides the level; LOG_FORMAT=json|pretty overrides the format.
 */
export function createLogger(bindings: Record<string, unknown> = {}): Logger {
  const level = process.env.LOG_LEVEL ?? 'info';
  const format = process.env.LOG_FORMAT ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const destination =
    format === 'pretty'
      ? pretty({
          destination: 2,
          colorize: process.stderr.isTTY,
          sync: true,
          // One line per event, its fields inline; a worker's lines start with its rank.
          singleLine: true,
          messageFormat: (record, key) =>
            record.rank === undefined
              ? String(record[key])
              : `rank ${record.rank} | ${record[key]}`,
          ignore: 'pid,hostname,rank',
        })
      : pino.destination({ dest: 2, sync: true });
  return pino({ level, base: bindings }, destination);
}

let root: Logger | undefined;

/** The root logger, created on first use. */
export function log(): Logger {
  root ??= createLogger();
  return root;
}

/** Adds `bindings` to every later record of this process (a worker's rank, once it joined). */
export function bindToLog(bindings: Record<string, unknown>): void {
  root = log().child(bindings);
}
