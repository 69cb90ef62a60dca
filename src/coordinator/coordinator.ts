import { hostname } from 'node:os';
import { StarReductionService } from '../shared/collectives/star-reduction-service.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import { fingerprintCifarFolder } from '../shared/data/data-fingerprint.js';
import { GenerationCredential } from '../shared/distributed/call-authenticator.js';
import { encodeRunSettings } from '../shared/distributed/run-settings.js';
import type { Security } from '../shared/distributed/security.js';
import { DEFAULT_PART_BYTES } from '../shared/distributed/state-parts.js';
import { Interrupted, UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import type { Checkpoint } from '../shared/training/checkpoint.js';
import { type RunningGrpcServer, startGrpcServer } from '../shared/transport/grpc-server.js';
import { DEFAULT_GRPC_SETTINGS, PROTOCOL_VERSION } from '../shared/transport/grpc-settings.js';
import { type ChannelEvents, type ControlCall, ControlChannel } from './control-channel.js';
import { coordinatorAuthenticator, warnIfOpen } from './coordinator-authenticator.js';
import { CoordinatorService } from './coordinator-service.js';
import type { DistributedSettings } from './distributed-config.js';
import { type Admission, Membership } from './membership.js';
import type { ElasticLimits } from './membership-change.js';
import { nowMs, type WorkerStateName } from './observe/run-events.js';
import { type ObserveSettings, RunObservers } from './observe/run-observers.js';
import { type PreparedRun, prepareRun } from './prepared-run.js';
import { restartPoint } from './restart-point.js';
import { RunFailure } from './run-failure.js';
import { type TrainSummary, trainWorld } from './train-world.js';
import { WorkerGroup } from './worker-group.js';

export interface CoordinatorOptions extends DistributedSettings {
  /** The run's configuration; `batchSize` is the global batch G. */
  config: TrainConfig;
  worldSize: number;
  /** The run folder of a resumed run; absent: `out`, or a new folder under runs/. */
  runDir?: string;
  out?: string;
  resumeFrom?: Checkpoint;
  host: string;
  /** 0: any free port (see Coordinator.port). */
  port: number;
  security: Security;
  /** Once aborted, the run stops after the current step with a checkpoint. */
  signal?: AbortSignal;
  /** The dashboard, /metrics and the trace; absent: none of them. */
  observe?: ObserveSettings;
}

/** What the run shares between start-up, the world and the end. */
interface CoordinatorState {
  run: PreparedRun;
  opts: CoordinatorOptions;
  membership: Membership;
  reduction: StarReductionService;
  generationCredential: GenerationCredential;
  server: RunningGrpcServer;
  observers: RunObservers;
  limits: ElasticLimits;
}

/**
 * The coordinator of one distributed run: start() loads the data, builds the model (for the
 * fingerprints, checkpoints and the export), and starts the gRPC server (CoordinatorService,
 * the star ReductionService, health, reflection); run() admits `worldSize` workers within
 * the join timeout, trains (see trainWorld) and stops them. abort() fails the run from
 * outside (the launcher, when a worker process dies).
 */
export class Coordinator implements ChannelEvents {
  private readonly channels = new Map<number, ControlChannel>();
  private readonly group: WorkerGroup;
  private worldFormed: (() => void) | undefined;
  private worldFailed: ((error: Error) => void) | undefined;
  private started = false;

  private constructor(private readonly s: CoordinatorState) {
    this.group = new WorkerGroup({
      silenceTimeoutMs: s.opts.stepTimeoutMs,
      allReduce: s.opts.allReduce,
      reduction: s.reduction,
      generationCredential: s.generationCredential,
      limits: s.limits,
      release: (channel) => {
        s.membership.leave(channel.rank);
        if (this.channels.get(channel.rank) === channel) this.channels.delete(channel.rank);
      },
    });
  }

  /** The port the server listens on. */
  get port(): number {
    return this.s.server.port;
  }

  static async start(opts: CoordinatorOptions): Promise<Coordinator> {
    const { config, resumeFrom } = opts;
    const run = await prepareRun(opts);
    const { data, plan, architecture, startStep, runDir } = run;
    const settings = encodeRunSettings({
      train: config,
      architecture,
      trainCount: data.train.count,
      valCount: data.val.count,
      totalSteps: plan.totalSteps,
      startStep,
      resume: resumeFrom !== undefined,
      allReduce: opts.allReduce,
      compression: opts.compression,
      firstBucketBytes: opts.firstBucketBytes,
      bucketBytes: opts.bucketBytes,
      overlap: opts.overlap,
      chunkBytes: 1024 * 1024,
      stepTimeoutMs: opts.stepTimeoutMs,
      heartbeatIntervalMs: Math.min(5000, opts.stepTimeoutMs / 4),
      fingerprintEvery: opts.fingerprintEvery,
      maxMessageBytes: DEFAULT_GRPC_SETTINGS.maxMessageBytes,
      dataFrom: opts.dataFrom,
    });
    const limits = elasticLimits(opts);
    const membership = new Membership({
      worldSize: opts.worldSize,
      maxWorkers: limits.maxWorkers,
      protocolVersion: PROTOCOL_VERSION,
      modelName: config.model,
      architecture,
      // Workers that read their own copy must prove it is the same (their Join carries its fingerprint).
      data:
        opts.dataFrom === 'local' && data.dataDir !== undefined
          ? await fingerprintCifarFolder(data.dataDir)
          : undefined,
    });
    // Below the workers' deadline: the reduction point knows which rank is missing, so it speaks first.
    const reduction = new StarReductionService({
      timeoutMs: Math.round(opts.stepTimeoutMs * 0.9),
      helloTimeoutMs: opts.stepTimeoutMs,
    });
    let coordinator: Coordinator | undefined;
    const service = new CoordinatorService({
      membership,
      worldSize: opts.worldSize,
      runConfig: settings,
      data,
      checkpoint: resumeFrom && { weights: resumeFrom.weights, optimizer: resumeFrom.optimizer },
      // A worker opens its Control stream right after its Join: a step's deadline is plenty.
      helloTimeoutMs: Math.min(opts.stepTimeoutMs, opts.joinTimeoutMs, 60_000),
      writeTimeoutMs: opts.stepTimeoutMs,
      partBytes: DEFAULT_PART_BYTES,
      onAttach: (admission, call) => coordinator?.attach(admission, call),
      onExpired: (_admission, why) => coordinator?.expired(why),
    });
    const generationCredential = new GenerationCredential();
    const server = await startGrpcServer({
      host: opts.host,
      port: opts.port,
      services: [service, reduction],
      // A worker's event loop is blocked during its step and cannot answer pings meanwhile.
      settings: { keepaliveTimeoutMs: opts.stepTimeoutMs },
      credentials: opts.security.server,
      authenticator: coordinatorAuthenticator({
        joinToken: opts.security.token,
        membership,
        generationCredential,
      }),
    });
    warnIfOpen(opts.security, opts.host, server.port);
    const observers = await RunObservers.start(
      opts.observe ?? { httpPort: 0, httpHost: opts.host },
    );
    if (observers.url) log().info({ dashboard: observers.url }, `dashboard: ${observers.url}`);
    coordinator = new Coordinator({
      run,
      opts,
      membership,
      reduction,
      generationCredential,
      server,
      observers,
      limits,
    });
    log().info(
      { port: server.port, worldSize: opts.worldSize, runDir: runDir ?? 'runs/' },
      `coordinator listening on ${opts.host}:${server.port}${opts.security.tls ? ' (TLS)' : ''}; waiting for ${opts.worldSize} worker${opts.worldSize > 1 ? 's' : ''} to join`,
    );
    return coordinator;
  }

  /**
   * Admits the world, trains it and stops it. Resolves with the summary once the model is
   * exported and every worker was told to stop; rejects with RunFailure (a worker lost,
   * stalled or diverged), UserError (bad input), or TrainingInterrupted after a signal
   * (checkpoint written).
   */
  async run(): Promise<TrainSummary> {
    const { membership, reduction, server, opts, run, observers } = this.s;
    let graceMs = 2000;
    let outcome: 'completed' | 'interrupted' | 'failed' = 'failed';
    let message: string | undefined;
    try {
      await this.formWorld();
      const summary = await trainWorld(
        {
          config: opts.config,
          prepared: run,
          resumeFrom: opts.resumeFrom,
          restart: restartPoint(membership.admissions, opts.resumeFrom?.step, run.plan.totalSteps),
          checkpointEvery: opts.checkpointEvery,
          fingerprintEvery: opts.fingerprintEvery,
          allReduce: { mode: opts.allReduce, compression: opts.compression },
          signal: opts.signal,
          observers,
        },
        this.group,
      );
      outcome = 'completed';
      this.group.stop('');
      await Promise.race([
        Promise.all(this.group.channels.map((c) => c.closed)),
        new Promise((resolve) => setTimeout(resolve, 10_000).unref()),
      ]);
      return summary;
    } catch (error) {
      if (opts.signal?.aborted || error instanceof Interrupted) outcome = 'interrupted';
      // An interrupted run ends in order (its checkpoint is written): the workers stop as after
      // a completed run, and the interruption is reported once, by the caller.
      message = error instanceof Interrupted ? '' : (error as Error).message;
      if (error instanceof RunFailure) this.group.fail(error);
      // Said now: stopping may take a moment (a stalled worker never closes its streams).
      if (message) log().warn(`stopping every worker: ${message}`);
      graceMs = 300;
      this.group.stop(message);
      for (const c of this.channels.values()) c.stop(message);
      throw error;
    } finally {
      observers.events.emit({ type: 'run-ended', time: nowMs(), outcome, message });
      await observers.close();
      membership.stop();
      reduction.stop('the run is over');
      run.model.dispose();
      await server.shutdown(graceMs);
    }
  }

  /**
   * Fails the run with `reason` (the first failure wins). The launcher calls it when a worker
   * process dies past its restarts; when this coordinator has already seen that loss (the
   * worker's stream ended first), its own account, which says what the worker was doing, is
   * the one told.
   */
  abort(reason: string): void {
    const error = new RunFailure(reason);
    if (this.started) this.group.fail(this.group.lossInProgress ?? error);
    else this.worldFailed?.(error);
  }

  lost(channel: ControlChannel, error: RunFailure): void {
    this.workerEvent(channel.rank, 'left', error.message);
    if (this.started) this.group.lost(channel, error);
    else this.leave(channel, error.message);
  }

  reported(channel: ControlChannel, message: string): void {
    this.workerEvent(channel.rank, 'failed', message);
    if (this.started) this.group.reported(channel, message);
    else this.leave(channel, `failed: ${message}`);
  }

  generationFailed(channel: ControlChannel, message: string): void {
    if (this.started) this.group.generationFailed(channel, message);
  }

  leaving(channel: ControlChannel, reason: string): void {
    if (this.started) this.group.leaving(channel, reason);
    // Before training a worker that leaves just goes: its stream's end frees its rank.
    else channel.stop('');
  }

  broken(channel: ControlChannel, error: RunFailure): void {
    if (this.started) {
      this.group.broken(channel, error);
      return;
    }
    channel.stop(error.message);
    this.leave(channel, error.message);
  }

  /** A worker joined but died before opening its Control stream (see CoordinatorService). */
  expired(why: string): void {
    if (this.started) this.group.lostBeforeAdmission(why);
  }

  heard(channel: ControlChannel, activity: string): void {
    this.workerEvent(channel.rank, 'training', activity);
  }

  private workerEvent(rank: number, state: WorkerStateName, activity?: string): void {
    this.s.observers.events.emit({ type: 'worker', time: nowMs(), rank, state, activity });
  }

  private attach(admission: Admission, call: ControlCall): void {
    const channel = new ControlChannel(admission, call, this.s.opts.stepTimeoutMs, this);
    const device = admission.device;
    if (device?.hostname === hostname()) this.s.observers.clocks.sameHost(admission.rank);
    this.s.observers.events.emit({
      type: 'worker',
      time: nowMs(),
      rank: admission.rank,
      state: 'joined',
      host: device?.hostname,
      device: device?.device,
      backend: device?.backend,
    });
    this.channels.set(admission.rank, channel);
    if (this.started) this.group.arrived(channel);
    else if (this.s.membership.complete) this.worldFormed?.();
  }

  private leave(channel: ControlChannel, why: string): void {
    if (this.s.membership.leave(channel.rank) === 'freed') {
      this.channels.delete(channel.rank);
      log().warn(`${why}; rank ${channel.rank} is free again`);
    }
  }

  /** Waits for every rank to join and open its control stream, then fixes the world. */
  private async formWorld(): Promise<void> {
    const { opts, membership } = this.s;
    const timeoutS = opts.joinTimeoutMs / 1000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const joined = membership.admissions.filter((a) => a.attached);
        reject(
          new RunFailure(
            `only ${joined.length} of ${opts.worldSize} workers joined within the --join-timeout of ${timeoutS} s` +
              (joined.length > 0
                ? ` (joined: ${joined.map((a) => `rank ${a.rank} ${a.workerId}`).join(', ')})`
                : ''),
          ),
        );
      }, opts.joinTimeoutMs);
      // Settles like the other outcomes: a join timer left behind would keep the process up.
      const onSignal = () => {
        settle();
        const signal = String(opts.signal?.reason);
        reject(new Interrupted(`interrupted by ${signal} before training started`, signal));
      };
      opts.signal?.addEventListener('abort', onSignal, { once: true });
      const settle = () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onSignal);
      };
      if (opts.signal?.aborted) onSignal();
      this.worldFormed = () => {
        settle();
        resolve();
      };
      this.worldFailed = (error) => {
        settle();
        reject(error);
      };
      if (membership.complete) this.worldFormed();
    });
    for (const admission of membership.start()) {
      this.group.add(this.channels.get(admission.rank) as ControlChannel);
    }
    this.started = true;
    this.group.watch();
  }
}

/** The run's elastic limits; --min-workers and --max-workers default to the world size. */
function elasticLimits(opts: CoordinatorOptions): ElasticLimits {
  const min = opts.minWorkers ?? opts.worldSize;
  const max = opts.maxWorkers ?? Math.max(opts.worldSize, min);
  if (min > opts.worldSize || max < opts.worldSize) {
    throw new UserError(
      `--min-workers ${min} ≤ world size ${opts.worldSize} ≤ --max-workers ${max} does not hold`,
    );
  }
  return {
    minWorkers: min,
    maxWorkers: max,
    maxRestarts: opts.maxRestarts,
    rejoinTimeoutMs: opts.rejoinTimeoutMs,
  };
}
