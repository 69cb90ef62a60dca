import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { METRICS_FILE } from '../../shared/training/run-folder.js';
import {
  type ChaosProcess,
  type LogRecord,
  ProcessSet,
  processesMarked,
} from './chaos-processes.js';
import type { RunShape } from './run-shape.js';
import { distributedFlags, launcherFlags } from './run-shape.js';

/** One record of metrics.jsonl, as far as the chaos suite reads it. */
export interface MetricsRecord {
  type: string;
  step?: number;
  time?: string;
  [field: string]: unknown;
}

/** When the scenario disturbed the run, and how (the time to recover counts from here). */
export interface Fault {
  atMs: number;
  what: string;
}

/**
 * One chaos run in progress: a run folder, the processes a scenario starts into it (the real
 * CLI: a coordinator and its workers), and what the scenario did to them. A scenario drives it;
 * the suite then reads the outcome (see finishRun).
 */
export class ChaosRun {
  readonly processes: ProcessSet;
  readonly faults: Fault[] = [];
  /** What a scenario saw go wrong on the way (added to the run's failures). */
  readonly findings: string[] = [];
  coordinator: ChaosProcess | undefined;
  coordinatorPort = 0;
  private workerCount = 0;

  constructor(
    readonly shape: RunShape,
    readonly runDir: string,
    readonly marker: string,
    readonly random: () => number,
    cwd: string,
    /** When the run's deadline passes: every wait gives up then. */
    readonly deadlineMs: number,
  ) {
    this.processes = new ProcessSet(marker, cwd);
  }

  /** Starts the coordinator of the run's shape (plus `extra` flags) and waits until it listens. */
  async startCoordinator(extra: readonly string[] = []): Promise<ChaosProcess> {
    const coordinator = this.processes.start(`coordinator`, [
      'coordinator',
      ...distributedFlags(this.shape),
      '--out',
      this.runDir,
      '--port',
      String(this.coordinatorPort),
      ...extra,
    ]);
    this.coordinator = coordinator;
    const listening = await this.processes.waitFor(
      coordinator,
      (r) => typeof r.port === 'number' && /listening/.test(r.msg),
      this.remainingMs(),
    );
    if (!listening) throw new ScenarioError(`the coordinator did not listen`, coordinator);
    // A restarted coordinator takes the same port, as a Service would keep its address.
    this.coordinatorPort = listening.port as number;
    return coordinator;
  }

  /** Starts a worker that joins the coordinator (the CLI's `worker`, on loopback). */
  startWorker(extra: readonly string[] = []): ChaosProcess {
    return this.processes.start(`worker-${this.workerCount++}`, [
      'worker',
      '--coordinator',
      `127.0.0.1:${this.coordinatorPort}`,
      '--peer-port',
      '0',
      '--advertise-host',
      '127.0.0.1',
      '--bind-host',
      '127.0.0.1',
      '--backend',
      'wasm',
      ...extra,
    ]);
  }

  /**
   * Starts `train --workers N` of the run's shape (plus `extra`): the coordinator and its
   * workers in one launcher process, whose workers are its children.
   */
  startLauncher(extra: readonly string[] = []): ChaosProcess {
    this.coordinator = this.processes.start('train', [
      'train',
      ...launcherFlags(this.shape),
      '--out',
      this.runDir,
      ...extra,
    ]);
    return this.coordinator;
  }

  /** The coordinator and the run's `shape.workers` workers. */
  async startWorld(
    coordinatorFlags: readonly string[] = [],
    workerFlags: readonly string[] = [],
  ): Promise<ChaosProcess[]> {
    await this.startCoordinator(coordinatorFlags);
    return Array.from({ length: this.shape.workers }, () => this.startWorker(workerFlags));
  }

  /** The rank `worker` was admitted as (from its log), once it has joined. */
  async rankOf(worker: ChaosProcess): Promise<number | undefined> {
    const joined = await this.processes.waitFor(
      worker,
      (r) => typeof r.rank === 'number' && /^joined /.test(r.msg),
      this.remainingMs(),
    );
    return joined?.rank as number | undefined;
  }

  /** Where the other workers reach `worker`'s ring server (the coordinator logs it at admission). */
  async peerAddressOf(worker: ChaosProcess): Promise<string | undefined> {
    const rank = await this.rankOf(worker);
    if (rank === undefined || !this.coordinator) return undefined;
    const admitted = await this.processes.waitFor(
      this.coordinator,
      (r) => r.rank === rank && / joined as rank /.test(r.msg),
      this.remainingMs(),
    );
    return admitted && /\bat (\S+) joined as rank /.exec(admitted.msg)?.[1];
  }

  /** Records a fault at this moment. */
  fault(what: string): void {
    this.faults.push({ atMs: Date.now(), what });
  }

  /** The records of metrics.jsonl so far. */
  metrics(): Promise<MetricsRecord[]> {
    return readMetrics(this.runDir);
  }

  /**
   * Waits until metrics.jsonl holds step `step` (polling: it is what the coordinator writes once
   * the step is complete on every rank); false if the coordinator exits or the deadline passes.
   */
  async waitForStep(step: number): Promise<boolean> {
    while (Date.now() < this.deadlineMs) {
      const steps = (await this.metrics()).filter((r) => r.type === 'step');
      if (steps.some((r) => (r.step ?? 0) >= step)) return true;
      if (this.coordinator?.exited()) return false;
      await sleep(25);
    }
    return false;
  }

  /** A uniformly drawn whole number in [low, high]. */
  draw(low: number, high: number): number {
    return low + Math.floor(this.random() * (high - low + 1));
  }

  remainingMs(): number {
    return Math.max(0, this.deadlineMs - Date.now());
  }

  /**
   * Waits, up to the deadline, for the coordinator to exit (the one started last, once the
   * scenario is done starting them); true if it did. Workers are not waited for here: one that
   * outlives its coordinator is an orphan, not a hang.
   */
  async coordinatorExit(): Promise<boolean> {
    const coordinator = this.coordinator;
    if (!coordinator) return true;
    return Promise.race([
      coordinator.exit.then(() => true),
      sleep(this.remainingMs()).then(() => false),
    ]);
  }

  /** Pids of the run's processes still alive (by the marker), whoever started them. */
  alive(): Promise<number[]> {
    return processesMarked(this.marker);
  }
}

/** A scenario could not do what it meant to (the run never reached the state it needs). */
export class ScenarioError extends Error {
  constructor(message: string, proc?: ChaosProcess) {
    super(proc ? `${message}; ${proc.name} said:\n${proc.tail()}` : message);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The last error record (level ≥ 50) a process logged: the cause it gives for exiting. */
export function causeOf(proc: ChaosProcess): string | undefined {
  const errors: LogRecord[] = proc.records.filter((r) => r.level >= 50);
  return errors.at(-1)?.msg;
}

/** The records of `runDir`'s metrics.jsonl, without a line being written. */
export async function readMetrics(runDir: string): Promise<MetricsRecord[]> {
  const file = join(runDir, METRICS_FILE);
  if (!existsSync(file)) return [];
  const records: MetricsRecord[] = [];
  for (const line of (await readFile(file, 'utf8')).split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      records.push(JSON.parse(line) as MetricsRecord);
    } catch {
      // The line being written.
    }
  }
  return records;
}
