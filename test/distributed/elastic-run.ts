// A distributed run whose processes the test controls one by one: `tfjs-ddp coordinator` and
// `tfjs-ddp worker` processes on loopback, started, killed and added while the run trains.
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MetricsRecord } from '../../src/shared/training/metrics-writer.js';
import { isAlive, startCli, waitUntil } from './cli-runs.js';
import { listeningPort } from './fake-worker.js';

export interface ElasticProcess {
  child: ChildProcessWithoutNullStreams;
  pid: number;
  /** Resolves with the exit code (null after a signal). */
  exited: Promise<number | null>;
  stderr(): string;
}

function track(child: ChildProcessWithoutNullStreams): ElasticProcess {
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => resolve(code)),
  );
  return { child, pid: child.pid as number, exited, stderr: () => stderr };
}

export class ElasticRun {
  readonly workers: ElasticProcess[] = [];

  private constructor(
    readonly coordinator: ElasticProcess,
    readonly port: number,
    readonly out: string,
    private readonly data: string,
  ) {}

  /** Starts `tfjs-ddp coordinator` with `flags` (its run folder `out`) and waits for its port. */
  static async start(out: string, data: string, flags: string[]): Promise<ElasticRun> {
    const child = startCli([
      'coordinator',
      '--port',
      '0',
      '--bind-host',
      '127.0.0.1',
      '--http-port',
      '0',
      '--out',
      out,
      '--json',
      ...flags,
    ]);
    const coordinator = track(child);
    const port = await listeningPort(child);
    return new ElasticRun(coordinator, port, out, data);
  }

  /** Starts one `tfjs-ddp worker` process for this run. */
  addWorker(extra: string[] = []): ElasticProcess {
    const worker = track(
      startCli([
        'worker',
        '--coordinator',
        `127.0.0.1:${this.port}`,
        '--bind-host',
        '127.0.0.1',
        '--advertise-host',
        '127.0.0.1',
        '--peer-port',
        '0',
        '--data',
        this.data,
        '--backend',
        'wasm',
        ...extra,
      ]),
    );
    this.workers.push(worker);
    return worker;
  }

  /** The lines of metrics.jsonl so far. */
  metrics(): MetricsRecord[] {
    const file = join(this.out, 'metrics.jsonl');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as MetricsRecord);
  }

  stepsDone(): number {
    return this.metrics().filter((m) => m.type === 'step').length;
  }

  membershipChanges() {
    return this.metrics().flatMap((m) => (m.type === 'membership' ? [m] : []));
  }

  async untilSteps(n: number, ms = 60_000): Promise<boolean> {
    return waitUntil(() => this.stepsDone() >= n, ms, 20);
  }

  /** Kills every process still alive (after a test). */
  killAll(): void {
    for (const p of [this.coordinator, ...this.workers]) {
      if (isAlive(p.pid)) {
        try {
          process.kill(p.pid, 'SIGCONT');
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }
}
