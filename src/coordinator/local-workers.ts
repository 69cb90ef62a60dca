import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../shared/logging/logger.js';
import { GRADIENT_PROCESS_NODE_FLAGS } from '../shared/transport/grpc-settings.js';

/** One worker process to start on this machine. */
export interface LocalWorkerSpec {
  rank: number;
  /** Arguments after the CLI entry point, e.g. ['worker', '--coordinator', '127.0.0.1:7070']. */
  args: string[];
  /** Extra environment (CUDA_VISIBLE_DEVICES, ...), merged over this process's. */
  env?: Record<string, string>;
}

/** A worker process that exited before it was asked to stop. */
export class WorkerProcessError extends Error {
  constructor(
    readonly rank: number,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    /** The last error the worker logged, if any: usually why it exited. */
    readonly lastError?: string,
  ) {
    super(
      `worker ${rank} exited unexpectedly (${signal ? `signal ${signal}` : `exit code ${exitCode}`})` +
        (lastError ? `: ${lastError}` : '; see its log lines above'),
    );
    this.name = 'WorkerProcessError';
  }
}

const PARENT_WATCH_ENV = 'TFJS_DDP_EXIT_WITH_PARENT';

/**
 * The worker processes of a local run, like torchrun --nproc_per_node: each child's
 * log lines are re-emitted through our logger tagged with its rank, a child that dies is
 * started again while restarts are left, the first child to fail beyond them stops all the
 * others, and no child outlives us. Children get a stdin pipe
 * and exit when it closes (see exitWithParent), so even a SIGKILL of this process
 * leaves no orphans.
 */
export class LocalWorkers {
  /** Resolves when every child has exited cleanly; rejects with the first WorkerProcessError. */
  readonly done: Promise<void>;
  private readonly children = new Map<number, ChildProcess>();
  private stopping = false;

  /** Restarts done so far, of `maxRestarts`, over all ranks. */
  private restarts = 0;

  /**
   * `maxRestarts`: how many times in all a worker that died is started again (with the same
   * arguments: it rejoins the running job), like torchrun's agent; beyond that, a death fails.
   */
  constructor(
    specs: readonly LocalWorkerSpec[],
    private readonly log: Logger,
    entryPoint: string = process.argv[1],
    private readonly maxRestarts = 0,
  ) {
    const exits = specs.map((spec) => this.supervise(spec, entryPoint));
    this.done = Promise.all(exits).then(() => undefined);
    // Callers await `done` later; until then a rejection must not count as unhandled.
    this.done.catch(() => {});
  }

  /** Pids of the children still running (for tests and diagnostics). */
  pids(): number[] {
    return [...this.children.values()].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
  }

  /** Asks every child to stop (SIGTERM), then kills those still alive after `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    const alive = [...this.children.values()];
    for (const child of alive) child.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const child of alive) if (child.exitCode === null) child.kill('SIGKILL');
    }, graceMs);
    await Promise.all(alive.map((c) => (c.exitCode === null ? onceExited(c) : undefined)));
    clearTimeout(timer);
  }

  /** Runs the worker `spec`, starting it again after a failure while restarts are left. */
  private async supervise(spec: LocalWorkerSpec, entryPoint: string): Promise<void> {
    for (;;) {
      try {
        await this.startOne(spec, entryPoint);
        return;
      } catch (error) {
        if (this.stopping || this.restarts >= this.maxRestarts) {
          if (this.maxRestarts > 0 && error instanceof Error && !this.stopping) {
            error.message += `; no restart left (--max-restarts ${this.maxRestarts})`;
          }
          void this.stop();
          throw error;
        }
        this.restarts++;
        this.log.warn(
          { rank: spec.rank },
          `${(error as Error).message}; restarting it (restart ${this.restarts} of --max-restarts ${this.maxRestarts})`,
        );
      }
    }
  }

  private startOne(spec: LocalWorkerSpec, entryPoint: string): Promise<void> {
    const child = spawn(
      process.execPath,
      [...GRADIENT_PROCESS_NODE_FLAGS, entryPoint, ...spec.args],
      {
        env: { ...process.env, LOG_FORMAT: 'json', ...spec.env, [PARENT_WATCH_ENV]: '1' },
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    this.children.set(spec.rank, child);
    const log = this.log.child({ rank: spec.rank });
    let lastError: string | undefined;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream! }).on('line', (line) => {
        lastError = relayLine(log, line) ?? lastError;
      });
    }
    return new Promise<void>((resolve, reject) => {
      child.on('error', (err) => reject(err));
      child.on('exit', (code, signal) => {
        this.children.delete(spec.rank);
        if (code === 0 || this.stopping) return resolve();
        reject(new WorkerProcessError(spec.rank, code, signal, lastError));
      });
    });
  }
}

/** Whether this process was started by LocalWorkers (a worker of `train --workers`). */
export function launchedByParent(): boolean {
  return process.env[PARENT_WATCH_ENV] === '1';
}

/**
 * Called early by a worker process: if it was started by LocalWorkers, exit as soon as
 * the parent goes away (its end of our stdin pipe closes).
 */
export function exitWithParent(log: Logger): void {
  if (process.env[PARENT_WATCH_ENV] !== '1') return;
  process.stdin.on('end', () => {
    log.error('the launcher process is gone; stopping');
    process.exit(1);
  });
  process.stdin.resume();
}

function onceExited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

const LEVELS: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/**
 * Re-emits a child's pino JSON line at its own level; any other output is kept as text.
 * Returns the message of an error-level record.
 */
function relayLine(log: Logger, line: string): string | undefined {
  if (line.trim() === '') return undefined;
  let record: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(line);
    if (parsed && typeof parsed === 'object' && 'level' in parsed)
      record = parsed as Record<string, unknown>;
  } catch {
    // not JSON: plain output
  }
  if (!record) {
    log.info(line);
    return undefined;
  }
  const { level, msg, time: _time, pid: _pid, hostname: _host, rank: _rank, ...fields } = record;
  const method = LEVELS[Number(level)] ?? 'info';
  const text = typeof msg === 'string' ? msg : '';
  log[method](fields, text);
  return Number(level) >= 50 ? text : undefined;
}
